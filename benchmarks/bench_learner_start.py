"""The learner before the first label (step 0) on a stand-in, per method's learner settings.

For one experiment it generates the stand-in set (width 128 by default) and runs the step-0
fit of `learner.fit_predict` (uniform posterior, no annotation) as the simulator does, for
each variant below and for both temperature solvers, over a few learner seeds. It prints
top-1 over all items, the fraction of items the learner alone makes confident (largest
probability above 1 - risk threshold = 0.9, what decides the finished set at step 0) and
the mean largest probability (the learner's confidence; compare it with its top-1).

Variants (all without semi-supervision, which cannot act before the first label):

* ``improved_lean``: 5 prototypes per class train, 5 validate; one model.
* ``lean_no_cv``: lean's split (prototypes train, a random subset validates), one model.
* ``lean``: 3-fold cross-validation over all prototypes (the paper's Lean): 3 models, each
  trained on about 6.7 prototypes per class, probabilities averaged.
* ``lean_cv2``: 2 folds: 2 models on 5 prototypes per class each (disjoint halves).

  python benchmarks/bench_learner_start.py --experiment=imagenet_split_1
  python benchmarks/bench_learner_start.py --experiment=imagenet_100_classes --variants=improved_lean,lean
"""

from __future__ import annotations

import argparse
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import common
from jaxanno import learner
from jaxanno.data import standin

VARIANTS = {
    "improved_lean": ("improved_lean", {}),
    "lean_no_cv": ("lean", {"learner.calibrate": "temperature"}),
    "lean": ("lean", {}),
    "lean_cv2": ("lean", {"learner.calibrate": "cv_2"}),
}
CONFIDENT = 0.9  # largest probability above 1 - risk threshold (0.1)


@functools.partial(jax.jit, static_argnums=0)
def _step0(static, params, features, labels, uniform, keys):
    def one(key):
        n = static.num_items
        out = learner.fit_predict(
            static, params, features, uniform, labels[n:], jnp.zeros(n, bool), learner.init_output(static), key
        )
        p = out.probs[:n]
        top = p.max(-1)
        return jnp.stack([(p.argmax(-1) == labels[:n]).mean(), (top > CONFIDENT).mean(), top.mean()])

    return jax.vmap(one)(keys)


def step0(static, params, features, labels, keys) -> np.ndarray:
    """(S, 3) top-1, confident fraction and mean largest probability of S step-0 fits.

    The uniform posterior comes in as an argument: built inside, XLA would constant-fold
    reductions over it for tens of seconds.
    """
    n, k = static.num_items, static.num_classes
    uniform = jnp.full((n, k), 1.0 / k, jnp.float32)
    static = dataclasses.replace(static, learner=dataclasses.replace(static.learner, semi_supervised="none"))
    return np.asarray(_step0(static, params, features, labels, uniform, keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="imagenet_split_1")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--solvers", default="reference,exact")
    ap.add_argument("--learner-seeds", type=int, default=3)
    args = ap.parse_args()
    keys = jax.vmap(jax.random.key)(jnp.arange(args.learner_seeds, dtype=jnp.uint32))
    features = labels = None
    print(f"{args.experiment}, width {args.width}, {args.learner_seeds} learner seeds (mean ± std):")
    for name in args.variants.split(","):
        method, overrides = VARIANTS[name]
        for solver in args.solvers.split(","):
            cfg, static, params = common.method_static(
                args.experiment, method, args.width, {**overrides, "learner.temperature_solver": solver}
            )
            if features is None:
                wnids = cfg.wnids.split()
                counts = standin.class_counts(args.experiment, len(wnids), cfg.n_data_per_class)
                noise = standin.CALIBRATION.get((args.experiment, args.width), standin.DEFAULT_NOISE)
                x, y, _ = standin.generate(wnids, counts, cfg.n_prototype_per_class, args.width, 0, noise)
                features, labels = jnp.asarray(x), jnp.asarray(y)
            r = 100 * step0(static, params, features, labels, keys)
            m, s = r.mean(0), r.std(0)
            print(
                f"  {name:14s} solver {solver:9s} top-1 {m[0]:.1f} ± {s[0]:.1f}  confident {m[1]:.1f}%  "
                f"mean largest probability {m[2]:.1f}%",
                flush=True,
            )


if __name__ == "__main__":
    main()
