"""How close the stand-in features come to the paper's learner accuracies (and the search
that calibrated them).

For every experiment and width it generates the stand-in set (`standin.generate`, the
calibrated noise of `standin.CALIBRATION`) and fits the reference learner of the paper's
method (efficient_annotation: MLP D-64-K, lr_ratio 1e-4, weight decay 1e-3, batch 1024,
300 epochs, temperature calibration) through `learner.fit_predict`, exactly as the
simulator does:

* zero labels: the step-0 fit (uniform posterior, no annotation: 5 of the 10 prototypes
  per class train, 5 validate); the score is the learner's top-1 / top-5 over all items,
  i.e. the step-0 'learner/all/top1' row;
* all labels: the fit when every item's posterior is its true class (all items train as
  confident pseudo-labels, the prototypes validate); top-1 over all items.

Each figure is the mean over `--data-seeds` stand-in draws x `--learner-seeds` fits.

  python benchmarks/bench_standin_calibration.py                    # the table, both widths
  python benchmarks/bench_standin_calibration.py --widths=128       # CPU default width only
  python benchmarks/bench_standin_calibration.py --search --experiments=imagenet_split_0

``--search`` re-runs the calibration: for each (experiment, width) it alternates two
bisections in log space (signal_std against the all-labels target, then nuisance_std
against the zero-label target) on one stand-in draw whose unit noise stays fixed (common
random numbers), and prints the evaluated point closest to both targets, to paste into
`standin.CALIBRATION`. The table was searched with

  python benchmarks/bench_standin_calibration.py --search --widths=128 --start=0.28,0.25 --learner-seeds=0,1,2
  python benchmarks/bench_standin_calibration.py --search --widths=2048 --steps=6 --spread=2 --learner-seeds=0,1,2

the second on an H200 with JAX_DEFAULT_MATMUL_PRECISION=highest, starting from the 128
entries with the nuisance std rescaled (`initial_noise`).

  python benchmarks/bench_standin_calibration.py --quick            # a small Vertebrate set, seconds
  python benchmarks/bench_standin_calibration.py --widths=128 --experiments=imagenet_split_0 \
      --geometry=lookalike --curve=20,60,200 --name=standin_calibration_lookalike

``--geometry=lookalike`` measures the 'lookalike' geometry (`jaxanno.data.lookalike.CALIBRATION`)
instead of the compact one; ``--curve`` adds the learner's top-1 when trained on the true
labels of that many items per class (a fixed random subset), i.e. the learning curve
between the two targets.

Results go to a temporary folder, `--out`, or with `--save` to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import common
from jaxanno import learner, metrics
from jaxanno.data import lookalike as lookalike_lib
from jaxanno.data import standin

EXPERIMENTS = tuple(f"imagenet_split_{i}" for i in range(6)) + ("imagenet_animal", "imagenet_100_classes")
WIDTHS = (128, 2048)
TOLERANCE = 0.03  # acceptance: every measured figure within 3 points of its target


class Target(NamedTuple):
    zero: float  # learner top-1 at zero labels (step 0)
    full: float  # learner top-1 trained on every item's true label
    why: str


# Zero-label targets are the paper's learner accuracies at 0 annotations. The paper gives a
# converged (all-labels) accuracy for ImageNet100 only (~89%); the others keep its error
# ratio: err_full = err_zero * (1 - 0.89) / (1 - 0.625), rounded to 0.5 point.
_ERR_RATIO = (1 - 0.89) / (1 - 0.625)


def _full(zero: float) -> float:
    return round(2 * 100 * (1 - (1 - zero) * _ERR_RATIO)) / 200


TARGETS: dict[str, Target] = {
    "imagenet_split_0": Target(0.46, _full(0.46), "paper: Dog"),
    "imagenet_split_1": Target(0.81, _full(0.81), "paper: Vertebrate"),
    "imagenet_split_2": Target(0.81, _full(0.81), "paper: Insect + Fungus"),
    "imagenet_split_3": Target(
        0.68,
        _full(0.68),
        "not in the paper: man-made objects like Commodity (split 4), "
        "and humans are as accurate on both (77% vs 78%), so Commodity's target",
    ),
    "imagenet_split_4": Target(0.68, _full(0.68), "paper: Commodity"),
    "imagenet_split_5": Target(
        0.81,
        _full(0.81),
        "not in the paper: the split humans find easiest (87%), so "
        "the target of the paper's coarse splits (Vertebrate, Insect + Fungus)",
    ),
    "imagenet_animal": Target(0.61, _full(0.61), "paper: Dog + Vertebrate"),
    "imagenet_100_classes": Target(0.625, 0.89, "paper: ImageNet100 (62.5% top-1, ~84% top-5; ~89% converged)"),
}


class Problem(NamedTuple):
    static: object
    params: object
    wnids: list[str]
    per_class: np.ndarray
    n_proto: int


QUICK = {"n_data_per_class": 40, "learner.max_epochs": 20}  # --quick: few items, short fits


def problem(experiment: str, width: int, overrides: Mapping[str, Any] | None = None) -> Problem:
    """Static / Params of the paper's method on an experiment's stand-in sizes."""
    cfg, static, params = common.method_static(experiment, "efficient_annotation", width, overrides)
    wnids = cfg.wnids.split()
    per_class = standin.class_counts(experiment, len(wnids), cfg.n_data_per_class)
    return Problem(static, params, wnids, per_class, cfg.n_prototype_per_class)


def _fit_scores(static, params, features, labels, key, posterior, annotated):
    """top-1 / top-5 over the items of one `fit_predict` call."""
    n = static.num_items
    state = learner.fit_predict(
        static, params, features, posterior, labels[n:], annotated, learner.init_output(static), key
    )
    rank = metrics.true_class_rank(state.probs[:n], labels[:n])
    return (rank < 1).mean(), (rank < 5).mean()


def _score_keys(static, params, features, labels, keys, uniform, truth):
    """(S,) zero-label top-1, top-5 and all-labels top-1 for S learner keys.

    The (N, K) uniform and one-hot posteriors come in as arguments: built inside, XLA
    would constant-fold reductions over them for tens of seconds.
    """
    n = static.num_items
    zero = jax.vmap(lambda key: _fit_scores(static, params, features, labels, key, uniform, jnp.zeros(n, bool)))(keys)
    full = jax.vmap(lambda key: _fit_scores(static, params, features, labels, key, truth, jnp.ones(n, bool)))(keys)
    return zero[0], zero[1], full[0]


_scores = jax.jit(_score_keys, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _scores_of_parts(static, params, mean_rows, z, basis, noise, labels, keys, uniform, truth):
    """`_scores` of the features composed on the device from a fixed draw (the search)."""
    features = standin.compose(mean_rows, z, basis, noise[0], noise[1])
    return _score_keys(static, params, features, labels, keys, uniform, truth)


def _posteriors(prob: Problem, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, k = prob.static.num_items, prob.static.num_classes
    return np.full((n, k), 1.0 / k, np.float32), np.eye(k, dtype=np.float32)[labels[:n]]


def _lists(out) -> dict[str, list[float]]:
    z1, z5, f1 = (np.asarray(jax.device_get(o), np.float64).tolist() for o in out)
    return {"zero_top1": z1, "zero_top5": z5, "full_top1": f1}


def _keys(seeds: Sequence[int]) -> jax.Array:
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


@functools.partial(jax.jit, static_argnums=0)
def _subset_scores(static, params, features, labels, keys, posterior, annotated):
    """(S,) top-1 of fits trained on the items `annotated` (true labels in `posterior`)."""
    fit = lambda key: _fit_scores(static, params, features, labels, key, posterior, annotated)[0]  # noqa: E731
    return jax.vmap(fit)(keys)


def _first_per_class(labels: np.ndarray, per_class: int, seed: int = 7) -> np.ndarray:
    """(N,) mask of `per_class` items of each class, picked in a fixed random order."""
    order = np.random.default_rng(seed).permutation(labels.size)
    rank = np.empty(labels.size, np.int64)
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(members.size)
    return rank < per_class


def measure(
    prob: Problem,
    noise: tuple[float, float],
    data_seed: int,
    learner_seeds: Sequence[int],
    lookalike: lookalike_lib.Settings | None = None,
    curve: Sequence[int] = (),
) -> dict[str, list[float]]:
    """Zero-label top-1 / top-5 and all-labels top-1 of each fit on one stand-in draw, plus
    'curve_<n>' top-1 trained on n true labels per class for each n of `curve`."""
    features, labels, _ = standin.generate(
        prob.wnids, prob.per_class, prob.n_proto, prob.static.feature_dim, data_seed, noise, lookalikes=lookalike
    )
    features, device_labels, keys = jnp.asarray(features), jnp.asarray(labels), _keys(learner_seeds)
    uniform, truth = _posteriors(prob, labels)
    out = _lists(_scores(prob.static, prob.params, features, device_labels, keys, uniform, truth))
    n = prob.static.num_items
    for per_class in curve:
        mask = _first_per_class(labels[:n], per_class)
        posterior = np.where(mask[:, None], truth, uniform)
        top1 = _subset_scores(prob.static, prob.params, features, device_labels, keys, posterior, mask)
        out[f"curve_{per_class}"] = np.asarray(top1, np.float64).tolist()
    return out


def scorer(prob: Problem, data_seed: int, learner_seeds: Sequence[int]):
    """score(s, u) -> mean figures on one fixed stand-in draw (common random numbers).

    The unit noise is drawn once and kept on the device; each call only composes the
    features for its (s, u) and fits, so a search step costs one set of fits.
    """
    d = standin.draw(prob.wnids, prob.per_class, prob.n_proto, prob.static.feature_dim, data_seed)
    z = np.concatenate([block for _, _, block in standin.noise_blocks(d)])
    parts = [jax.device_put(a) for a in (d.means[d.labels], z, d.basis, d.labels)]
    del z
    keys, post = _keys(learner_seeds), [jax.device_put(a) for a in _posteriors(prob, d.labels)]

    def score(s: float, u: float) -> dict[str, float]:
        noise = jnp.asarray([s, u], jnp.float32)
        out = _scores_of_parts(prob.static, prob.params, parts[0], parts[1], parts[2], noise, parts[3], keys, *post)
        return {k: float(np.mean(v)) for k, v in _lists(out).items()}

    return score


def _bisect(f, lo: float, hi: float, target: float, steps: int) -> float:
    """Root of a decreasing f in [lo, hi], bisecting in log space (clamped to the bracket)."""
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def initial_noise(experiment: str, width: int) -> tuple[float, float]:
    """Search start: the table's entry, else the narrowest calibrated width's entry with the
    nuisance std rescaled to keep the total nuisance variance (D - K) u^2, else the default."""
    if (experiment, width) in standin.CALIBRATION:
        return standin.CALIBRATION[(experiment, width)]
    known = sorted(w for e, w in standin.CALIBRATION if e == experiment)
    if not known:
        return standin.DEFAULT_NOISE
    k = problem(experiment, known[0]).static.num_classes
    s, u = standin.CALIBRATION[(experiment, known[0])]
    return s, u * math.sqrt((known[0] - k) / max(width - k, 1))


def search(
    experiment: str,
    width: int,
    rounds: int,
    steps: int,
    learner_seeds: Sequence[int],
    start: tuple[float, float],
    spread: float,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[float, float]:
    """(signal_std, nuisance_std) meeting both targets on stand-in draw 0 (common numbers).

    Each round bisects s in [s / spread, s * spread] against the all-labels target, then u
    in [u / spread, u * spread] against the zero-label target.
    """
    prob, target = problem(experiment, width, overrides), TARGETS[experiment]
    cache: dict[tuple[float, float], dict[str, float]] = {}
    fixed = scorer(prob, 0, learner_seeds)

    def score(s: float, u: float) -> dict[str, float]:
        key = (round(s, 5), round(u, 5))
        if key not in cache:
            cache[key] = fixed(*key)
            c = cache[key]
            print(
                f"  {experiment} D={width} s={key[0]:.4f} u={key[1]:.4f}: zero {100 * c['zero_top1']:.1f} "
                f"full {100 * c['full_top1']:.1f}",
                flush=True,
            )
        return cache[key]

    s, u = start
    for _ in range(rounds):
        s = _bisect(lambda v: score(v, u)["full_top1"], s / spread, s * spread, target.full, steps)
        u = max(u, 1e-3)
        u = _bisect(lambda v: score(s, v)["zero_top1"], u / spread, u * spread, target.zero, steps)
    # The all-labels figure also moves with u (more nuisance -> larger inputs -> faster fits),
    # so the rounds need not settle: keep the evaluated point closest to both targets.
    return min(cache, key=lambda p: _miss(cache[p], target))


def _miss(figures: dict[str, float], target: Target) -> float:
    """Largest distance of the two figures from their targets."""
    return max(abs(figures["zero_top1"] - target.zero), abs(figures["full_top1"] - target.full))


def table(
    experiments: Sequence[str],
    widths: Sequence[int],
    data_seeds: Sequence[int],
    learner_seeds: Sequence[int],
    overrides: Mapping[str, Any] | None = None,
    geometry: str = "compact",
    curve: Sequence[int] = (),
) -> list[dict[str, object]]:
    rows = []
    for width in widths:
        for experiment in experiments:
            prob, target = problem(experiment, width, overrides), TARGETS[experiment]
            lookalike = lookalike_lib.settings(experiment, width) if geometry == "lookalike" else None
            noise = standin.noise_levels(experiment, width) if lookalike is None else tuple(lookalike[:2])
            t0 = time.perf_counter()
            runs = [measure(prob, noise, seed, learner_seeds, lookalike, curve) for seed in data_seeds]
            cols = {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}
            row = {
                "experiment": experiment,
                "width": width,
                "signal_std": noise[0],
                "nuisance_std": noise[1],
                "geometry": geometry,
                "lookalike": None if lookalike is None else _settings_dict(lookalike),
                "calibrated": (experiment, width) in standin.CALIBRATION,
                "target_zero_top1": target.zero,
                "target_full_top1": target.full,
                "target_source": target.why,
                "num_items": prob.static.num_items,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            for k, v in cols.items():
                row[k], row[k + "_std"] = float(v.mean()), float(v.std())
            row["within_tolerance"] = bool(
                abs(row["zero_top1"] - target.zero) <= TOLERANCE and abs(row["full_top1"] - target.full) <= TOLERANCE
            )
            print(_md_row(row), flush=True)
            rows.append(row)
    return rows


_MD_HEADER = (
    "| experiment | width | signal_std | nuisance_std | target 0 labels | measured 0 labels (top-5) "
    "| target all labels | measured all labels | within 3 pts |\n|---|---|---|---|---|---|---|---|---|"
)


def _settings_dict(given: lookalike_lib.Settings) -> dict[str, float]:
    """The look-alike settings of a table row, by name."""
    return {
        "signal_std": given.signal_std,
        "nuisance_std": given.nuisance_std,
        "fraction": given.fraction,
        "pull": given.pull,
        "offset": given.offset,
    }


def _header(with_curve: bool) -> str:
    """The table header, with a last 'learning curve' column for `--curve`."""
    if not with_curve:
        return _MD_HEADER
    head, rule = _MD_HEADER.split("\n")
    return f"{head} learning curve |\n{rule}---|"


def _md_row(r: dict[str, object]) -> str:
    pct = lambda key: f"{100 * r[key]:.1f}"  # noqa: E731
    curve = ", ".join(
        f"{key[6:]}/class {pct(key)} ± {pct(key + '_std')}"
        for key in r
        if key.startswith("curve_") and not key.endswith("_std")
    )
    return (
        f"| {r['experiment']} | {r['width']} | {r['signal_std']} | {r['nuisance_std']} | {pct('target_zero_top1')} "
        f"| {pct('zero_top1')} ± {pct('zero_top1_std')} ({pct('zero_top5')}) | {pct('target_full_top1')} "
        f"| {pct('full_top1')} ± {pct('full_top1_std')} | {'yes' if r['within_tolerance'] else 'NO'} |"
        + (f" {curve} |" if curve else "")
    )


def write(rows: list[dict[str, object]], args: argparse.Namespace, name: str, folder: str) -> None:
    env = common.environment()
    meta = {
        "environment": env,
        "data_seeds": args.data_seeds,
        "learner_seeds": args.learner_seeds,
        "date": time.strftime("%Y-%m-%d"),
    }
    lines = [
        "# Stand-in calibration (stand-in features, not ImageNet)",
        "",
        f"Learner top-1 over all items, in %: mean ± std over {len(args.data_seeds)} stand-in draws x "
        f"{len(args.learner_seeds)} fits. '0 labels' is the step-0 fit on 5 prototypes per class; "
        "'all labels' trains on every item's true label. Produced by "
        f"`python benchmarks/bench_standin_calibration.py{' --quick' if args.quick else ''}"
        f"{' --experiments=' + args.experiments if args.experiments != ','.join(EXPERIMENTS) else ''}"
        f"{' --widths=' + args.widths if args.widths != ','.join(map(str, WIDTHS)) else ''}"
        f"{' --geometry=' + args.geometry if args.geometry != 'compact' else ''}"
        f"{' --curve=' + ','.join(map(str, args.curve)) if args.curve else ''}`"
        + (
            "; the last column is the learner's top-1 trained on the true labels of n items per class."
            if args.curve
            else "."
        ),
        "",
        f"Environment: {common.env_line(env)}; {meta['date']}.",
        "",
        _header(bool(args.curve)),
        *(_md_row(r) for r in rows),
        "",
        "Targets:",
        "",
    ]
    for exp in dict.fromkeys(r["experiment"] for r in rows):
        ratio = " (ImageNet100's error ratio)" if exp != "imagenet_100_classes" else ""
        lines.append(f"- {exp}: {TARGETS[exp].why}; all-labels target {100 * TARGETS[exp].full:.1f}{ratio}")
    common.write_results(folder, name, {**meta, "rows": rows}, "\n".join(lines))


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiments", default=",".join(EXPERIMENTS))
    ap.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    ap.add_argument("--data-seeds", type=_ints, default=[0, 1, 2])
    ap.add_argument("--learner-seeds", type=_ints, default=[0, 1])
    ap.add_argument("--search", action="store_true", help="re-run the calibration search")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--start", default="", help="initial 'signal_std,nuisance_std' of the search")
    ap.add_argument("--spread", type=float, default=3.0, help="search bracket: start / spread .. start * spread")
    ap.add_argument("--quick", action="store_true", help="imagenet_split_1 at width 32, 40 items per class, 20 epochs")
    ap.add_argument("--name", default="standin_calibration", help="result file name")
    ap.add_argument("--geometry", default="compact", choices=standin.GEOMETRIES, help="stand-in geometry to measure")
    ap.add_argument("--curve", type=_ints, default=[], help="items per class of extra true-label fits")
    common.add_output_args(ap)
    args = ap.parse_args()
    experiments = [e for e in args.experiments.split(",") if e]
    widths = _ints(args.widths)
    overrides = None
    if args.quick:
        experiments, widths, overrides = ["imagenet_split_1"], [32], QUICK
        args.data_seeds, args.learner_seeds = [0], [0]
    if args.search and args.geometry != "compact":
        ap.error("--search calibrates the compact geometry only; --geometry=lookalike measures its table")
    out = common.output_dir(args)
    if args.search:
        found = {}
        for width in widths:
            for experiment in experiments:
                start = tuple(map(float, args.start.split(","))) if args.start else initial_noise(experiment, width)
                found[f"{experiment}|{width}"] = search(
                    experiment, width, args.rounds, args.steps, args.learner_seeds, start, args.spread, overrides
                )
                print(f'    ("{experiment}", {width}): {found[f"{experiment}|{width}"]},', flush=True)
                lines = [f"# Stand-in calibration search\n\n{common.env_line(common.environment())}\n"]
                lines += [f"- {key}: {value}" for key, value in found.items()]
                payload = {"environment": common.environment(), "found": found}
                common.write_results(out, f"{args.name}_search", payload, "\n".join(lines))
        return
    rows = table(experiments, widths, args.data_seeds, args.learner_seeds, overrides, args.geometry, args.curve)
    write(rows, args, args.name, out)


if __name__ == "__main__":
    main()
