"""EM speed: one iteration and a full solve, jaxanno vs crowd-kit's DawidSkene vs NumPy.

All three see identical annotation sets (RTE's real labels, and synthetic sets of the
Vertebrate and ImageNet100 sizes) in one run, so the ratios are measured side by side.
jaxanno is jitted; its compile time is reported apart (jax_compile_s, XLA compilation in
the untimed first call) and, with ``--seeds``, S independent annotation sets run vmapped
in one program.

Variants (`common.EM_VARIANTS`):
  classic    soft M-step, learned class prior, majority-vote start, no worker prior: the
             algorithm crowd-kit's DawidSkene runs (full solve: ELBO tolerance 1e-5, at
             most 100 iterations, as crowd-kit's defaults).
  reference  the paper's EM with a learner prior: hard M-step, the simulator's
             'predefined_homegeneous' worker prior (strength 10), random (N, K) learner
             log-probabilities in every E-step.

Per-iteration times of NumPy and crowd-kit are (t(3 iterations) - t(1 iteration)) / 2,
medians of repeated runs. On a GPU the iteration time is also compared with the bandwidth
floor: the bytes an iteration must move (slot codes and, for 'reference', the learner
log-prior read once; the (N, K) posterior it produces and the new counts written once)
over 4.2 TB/s.

  python benchmarks/bench_em_speed.py                       # CPU: all sizes, crowd-kit too
  python benchmarks/bench_em_speed.py --sizes=imagenet100 --seeds=1,64 --no-crowdkit
  python benchmarks/bench_em_speed.py --quick               # RTE only, seconds
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import common
from jaxanno import em, types

BASELINE_BUDGET_S = 3.0  # NumPy / crowd-kit repeats stop after about this long


# ---------------------------------------------------------------- jaxanno
def _iteration_fn(static: types.Static, params: types.Params):
    """One EM iteration from zero counts, vmapped over lanes: (posterior, counts)."""

    def one(ann, learner, prior):
        zero = jnp.zeros((static.num_workers, static.num_classes, static.num_classes), jnp.float32)
        log_prior = common.uniform_log_class_prior(static.num_classes)
        step = em.em_step(static, params, ann, prior, zero, log_prior, learner, jnp.uint32(7))
        return step.posterior, step.counts

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def _solve_fn(static: types.Static, params: types.Params):
    """A full solve (start counts, then the simulator's `em.run`), vmapped over lanes: (counts, iterations)."""

    def one(ann, learner, prior):
        zero = jnp.zeros((static.num_workers, static.num_classes, static.num_classes), jnp.float32)
        log_prior = common.uniform_log_class_prior(static.num_classes)
        counts, log_prior = em.initial_counts(static, ann, zero, log_prior, jax.random.key(0))
        res = em.run(static, params, ann, prior, counts, log_prior, learner, jax.random.key(1))
        return res.counts, res.iterations

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def floor_bytes(w: common.Workload, seeds: int, with_learner: bool) -> int:
    """Bytes one iteration must move: slot codes (+ learner) in, posterior and counts out."""
    n, a, k = w.num_items, w.max_annotations, w.num_classes
    table = 2 * w.num_workers * k * k * 4
    return seeds * (n * a * 8 + n * k * 4 + table + (n * k * 4 if with_learner else 0))


def bench_jaxanno(w: common.Workload, variant: str, seeds: int, repeats: int, full: bool) -> dict[str, Any]:
    v = common.EM_VARIANTS[variant]
    static, params = common.em_static(w, v.em), types.make_params(**v.params)
    ann, learner = common.relabelled_lanes(w, seeds, with_learner=v.with_learner)
    prior = common.predefined_prior(static, v.params["prior_strength"])
    iteration = _iteration_fn(static, params)
    t = common.time_call(lambda: iteration(ann, learner, prior), repeats=repeats)
    row = dict(size=w.name, variant=variant, seeds=seeds, jax_compile_s=t.compile_s, jax_iter_ms=1e3 * t.median_s)
    if full:
        solve = _solve_fn(static, params)
        ts = common.time_call(lambda: solve(ann, learner, prior), repeats=3, max_seconds=30.0)
        _, iters = solve(ann, learner, prior)
        row.update(jax_solve_s=ts.median_s, jax_solve_iters=int(np.max(iters)), jax_solve_compile_s=ts.compile_s)
    row["floor_bytes"] = floor_bytes(w, seeds, v.with_learner)
    if jax.default_backend() == "gpu":
        floor = row["floor_bytes"] / common.H200_BANDWIDTH
        row["floor_ms"] = 1e3 * floor
        row["x_floor"] = t.median_s / floor
    return row


# ---------------------------------------------------------------- numpy and crowd-kit
def numpy_classic(w: common.Workload, iters: int, tol: float = 1e-5) -> int:
    """Plain vectorised NumPy Dawid-Skene (crowd-kit's algorithm); returns iterations run."""
    valid = w.workers >= 0
    k, nw = w.num_classes, w.num_workers
    codes = np.where(valid, w.workers * k + w.labels, 0)
    votes = np.zeros((w.num_items, k))
    for a in range(w.max_annotations):
        np.add.at(votes, (np.arange(len(votes))[valid[:, a]], w.labels[valid[:, a], a]), 1.0)
    post = votes / votes.sum(1, keepdims=True)
    prior = post.mean(0)
    flat_codes, rows = codes[valid], np.nonzero(valid)[0]

    def m_step(post):
        counts = np.stack([np.bincount(flat_codes, weights=post[rows, y], minlength=nw * k) for y in range(k)], 1)
        counts = np.maximum(counts.reshape(nw, k, k), 1e-10)  # (worker, z, y)
        return counts / counts.sum(1, keepdims=True)

    errors = m_step(post)
    loss = -np.inf
    for i in range(iters):
        table = np.log(errors).reshape(nw * k, k)
        log_prior = np.log(np.maximum(prior, 1e-10))
        ll = log_prior + sum(np.where(valid[:, a, None], table[codes[:, a]], 0.0) for a in range(w.max_annotations))
        post = np.exp(ll - ll.max(1, keepdims=True))
        post /= post.sum(1, keepdims=True)
        prior = post.mean(0)
        errors = m_step(post)
        log_prior = np.log(np.maximum(prior, 1e-10))
        joint = (post * (ll - log_prior + valid.sum(1, keepdims=True) * log_prior)).sum()
        new_loss = (joint - (post * np.log(np.maximum(post, 1e-10))).sum()) / valid.sum()
        if new_loss - loss < tol:
            return i + 1
        loss = new_loss
    return iters


def _baseline(fn) -> float:
    """Median seconds of `fn()` (no warm-up: nothing compiles), within the baseline budget."""
    return common.time_call(fn, repeats=7, warmup=0, max_seconds=BASELINE_BUDGET_S).median_s


def bench_numpy(w: common.Workload, full: bool) -> dict[str, Any]:
    t1 = _baseline(lambda: numpy_classic(w, 1, tol=-np.inf))
    t3 = _baseline(lambda: numpy_classic(w, 3, tol=-np.inf))
    row: dict[str, Any] = dict(numpy_iter_ms=1e3 * max(t3 - t1, 0.0) / 2)
    if full:
        iters: list[int] = []
        t = common.time_call(lambda: iters.append(numpy_classic(w, 100)), repeats=1, warmup=0)
        row.update(numpy_solve_s=t.median_s, numpy_solve_iters=iters[-1])
    return row


def bench_crowdkit(w: common.Workload, full: bool) -> dict[str, Any]:
    from crowdkit.aggregation import DawidSkene

    warnings.filterwarnings("ignore")  # crowd-kit's pandas deprecation warnings
    t1 = _baseline(lambda: DawidSkene(n_iter=1, tol=-1.0).fit(w.frame))
    t3 = _baseline(lambda: DawidSkene(n_iter=3, tol=-1.0).fit(w.frame))
    row: dict[str, Any] = dict(crowdkit_iter_ms=1e3 * max(t3 - t1, 0.0) / 2)
    if full:
        fits: list = []
        t = common.time_call(lambda: fits.append(DawidSkene(n_iter=100, tol=1e-5).fit(w.frame)), repeats=1, warmup=0)
        row.update(crowdkit_solve_s=t.median_s, crowdkit_solve_iters=len(fits[-1].loss_history_))
    return row


# ---------------------------------------------------------------- main
COLUMNS = [
    "size", "variant", "seeds", "jax_compile_s", "jax_iter_ms", "numpy_iter_ms", "crowdkit_iter_ms", "x_vs_numpy",
    "x_vs_crowdkit", "jax_solve_s", "jax_solve_iters", "numpy_solve_s", "numpy_solve_iters", "crowdkit_solve_s",
    "crowdkit_solve_iters", "floor_ms", "x_floor",
]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="rte,vertebrate,imagenet100", help="rte, bluebirds, vertebrate, imagenet100")
    ap.add_argument("--seeds", default="1", help="comma list of lane counts for jaxanno")
    ap.add_argument("--crowdkit", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--numpy", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--full", action=argparse.BooleanOptionalAction, default=True, help="also full solves")
    ap.add_argument("--full_crowdkit_max_items", type=int, default=30000, help="skip slower crowd-kit solves")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="RTE only, 2 repeats: a seconds-long smoke run")
    ap.add_argument("--name", default=None, help="result file name (default em_speed_<backend>)")
    common.add_output_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.repeats = "rte", 2
    env = common.environment()
    print(common.env_line(env), flush=True)
    rows: list[dict[str, Any]] = []
    for size in args.sizes.split(","):
        w = common.workload(size)
        base: dict[str, Any] = {}
        if args.crowdkit:
            base.update(bench_crowdkit(w, args.full and w.num_items <= args.full_crowdkit_max_items))
        if args.numpy:
            base.update(bench_numpy(w, args.full))
        for seeds in map(int, args.seeds.split(",")):
            for variant in common.EM_VARIANTS:
                row = {**bench_jaxanno(w, variant, seeds, args.repeats, args.full and seeds == 1), **base}
                per_lane_ms = row["jax_iter_ms"] / seeds
                if row.get("crowdkit_iter_ms"):
                    row["x_vs_crowdkit"] = row["crowdkit_iter_ms"] / per_lane_ms
                if row.get("numpy_iter_ms"):
                    row["x_vs_numpy"] = row["numpy_iter_ms"] / per_lane_ms
                rows.append(row)
                print(common.rounded(row), flush=True)
    table = common.markdown_table(rows, COLUMNS)
    md = (
        f"# EM speed\n\n{common.env_line(env)}\n\nPer-iteration times are medians; x_vs_* compare one lane "
        f"(ms / seeds) with the single-threaded baselines on the same data in the same run. jax_compile_s: "
        f"XLA compilation of the iteration program (not in any time).\n\n{table}"
    )
    print("\n" + table)
    name = args.name or common.default_name("em_speed")
    common.write_results(common.output_dir(args), name, {"environment": env, "rows": rows}, md)


if __name__ == "__main__":
    main()
