"""EM speed: one iteration and a full solve, jaxanno vs crowd-kit's DawidSkene vs NumPy.

All three see identical annotation sets (RTE's real labels, and synthetic sets of the
Vertebrate and ImageNet100 sizes) in one run, so the ratios are measured side by side.
jaxanno is timed with ahead-of-time compilation (compile time reported apart) and, with
``--seeds``, as S independent annotation sets vmapped in one program.

Variants:
  classic    soft M-step, learned class prior, majority-vote start, no worker prior: the
             algorithm crowd-kit's DawidSkene runs (full solve: ELBO tolerance 1e-5, at
             most 100 iterations, as crowd-kit's defaults).
  reference  the paper's EM with a learner prior: hard M-step, Dirichlet prior, the
             learner's (N, K) log-probabilities in every E-step.

On a GPU the iteration time is also compared with the bandwidth floor: the bytes an
iteration must move (slot codes and, for 'reference', the learner log-prior read once;
the (N, K) posterior it produces and the new counts written once) over 4.2 TB/s.

  python benchmarks/bench_em_speed.py                       # CPU: all sizes, crowd-kit too
  python benchmarks/bench_em_speed.py --sizes=imagenet100 --seeds=1,64 --no-crowdkit
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import common
from jaxanno import config, em, types

CLASSIC = types.EMStatic(m_step="soft", criterion="elbo", class_prior="learned", init="majority_vote", max_em_steps=100)
REFERENCE = types.EMStatic(m_step="hard", criterion="soft", class_prior="uniform", init="prior", max_em_steps=10)


# ---------------------------------------------------------------- workloads
def real_workload(name: str = "rte") -> dict[str, Any]:
    """A real crowdsourced set of tests/data ('rte' or 'bluebirds') as fixed slots."""
    df = pd.read_csv(f"{common.ROOT}/tests/data/{name}_labels.csv")
    tasks, task_idx = np.unique(df["task"].to_numpy(), return_inverse=True)
    workers, worker_idx = np.unique(df["worker"].astype(str).to_numpy(), return_inverse=True)
    labels = df["label"].to_numpy().astype(np.int32)
    slot = df.groupby(task_idx).cumcount().to_numpy()
    a = int(slot.max()) + 1
    w_arr = np.full((len(tasks), a), -1, np.int32)
    l_arr = np.full((len(tasks), a), -1, np.int32)
    w_arr[task_idx, slot] = worker_idx
    l_arr[task_idx, slot] = labels
    return dict(
        name=name,
        frame=df,
        workers=w_arr,
        labels=l_arr,
        num_items=len(tasks),
        max_annotations=a,
        num_classes=2,
        num_workers=len(workers),
    )


def synthetic_workload(name: str) -> dict[str, Any]:
    size = common.SIZES[name]
    _, workers, labels = common.synthetic_annotations(**size)
    n, a = workers.shape
    frame = pd.DataFrame({"task": np.repeat(np.arange(n), a), "worker": workers.ravel(), "label": labels.ravel()})
    return dict(name=name, frame=frame, workers=workers, labels=labels, **size)


def _static(w: dict[str, Any], em_static: types.EMStatic) -> types.Static:
    em_static = dataclasses.replace(em_static, item_block=config.item_block(-1))
    return types.Static(
        num_items=w["num_items"],
        num_prototypes=0,
        num_classes=w["num_classes"],
        num_workers=w["num_workers"],
        feature_dim=1,
        max_annotations=w["max_annotations"],
        em=em_static,
    )


def _lanes(w: dict[str, Any], seeds: int, with_learner: bool):
    """S annotation sets: lane 0 is the shared set; other lanes relabel it with a random
    class permutation and worker shuffle (same difficulty, different bytes)."""
    n, k, nw = w["num_items"], w["num_classes"], w["num_workers"]
    workers, labels = jnp.asarray(w["workers"]), jnp.asarray(w["labels"])
    valid = workers >= 0

    def one(lane, key):
        k_cls, k_wrk, k_lrn = jax.random.split(key, 3)
        perm_c = jnp.where(lane == 0, jnp.arange(k), jax.random.permutation(k_cls, k))
        perm_w = jnp.where(lane == 0, jnp.arange(nw), jax.random.permutation(k_wrk, nw))
        ann = types.AnnotationState(
            worker=jnp.where(valid, perm_w[jnp.maximum(workers, 0)], -1),
            label=jnp.where(valid, perm_c[jnp.maximum(labels, 0)], -1),
            item_count=valid.sum(-1).astype(jnp.int32),
            worker_count=jnp.zeros(nw, jnp.int32),
        )
        learner = jax.nn.log_softmax(2.0 * jax.random.normal(k_lrn, (n, k)), -1) if with_learner else None
        return ann, learner

    keys = jax.random.split(jax.random.key(0), seeds)
    return common.block(jax.jit(jax.vmap(one))(jnp.arange(seeds), keys))


# ---------------------------------------------------------------- jaxanno
def _iteration_fn(static: types.Static, params: types.Params):
    def one(ann, learner, prior):
        zero = jnp.zeros((static.num_workers, static.num_classes, static.num_classes), jnp.float32)
        log_prior = jnp.full((static.num_classes,), -np.log(static.num_classes), jnp.float32)
        step = em.em_step(static, params, ann, prior, zero, log_prior, learner, jnp.uint32(7))
        return step.posterior, step.counts

    return jax.vmap(one, in_axes=(0, 0, None))


def _solve_fn(static: types.Static, params: types.Params):
    def one(ann, learner, prior):
        zero = jnp.zeros((static.num_workers, static.num_classes, static.num_classes), jnp.float32)
        log_prior = jnp.full((static.num_classes,), -np.log(static.num_classes), jnp.float32)
        counts, log_prior = em.initial_counts(static, ann, zero, log_prior, jax.random.key(0))
        res = em.run(static, params, ann, prior, counts, log_prior, learner, jax.random.key(1))
        return res.counts, res.iterations

    return jax.vmap(one, in_axes=(0, 0, None))


def _prior(w, strength: float):
    k, nw = w["num_classes"], w["num_workers"]
    base = np.full((k, k), 1.0 / k) + np.eye(k) * 2.0  # predefined_homegeneous
    return jnp.asarray(np.broadcast_to(base * strength, (nw, k, k)), jnp.float32)


def bench_jaxanno(w, variant: str, seeds: int, repeats: int, full: bool) -> dict[str, Any]:
    em_static = CLASSIC if variant == "classic" else REFERENCE
    static = _static(w, em_static)
    classic = variant == "classic"
    params = types.make_params(
        prior_strength=0.0 if classic else 10.0,
        log_epsilon=0.0 if classic else 1e-8,
        em_epsilon=1e-5 if classic else 1e-3,
    )
    ann, learner = _lanes(w, seeds, with_learner=not classic)
    prior = _prior(w, 0.0 if classic else 10.0)
    it, compile_it = common.aot(_iteration_fn(static, params), ann, learner, prior)
    row = dict(size=w["name"], variant=variant, seeds=seeds, jax_compile_s=compile_it)
    t = common.time_call(lambda: it(ann, learner, prior), repeats=repeats)
    row["jax_iter_ms"] = 1e3 * t["median_s"]
    if full:
        solve, compile_solve = common.aot(_solve_fn(static, params), ann, learner, prior)
        t0 = time.perf_counter()
        counts, iters = common.block(solve(ann, learner, prior))
        row.update(
            jax_solve_s=time.perf_counter() - t0, jax_solve_iters=int(np.max(iters)), jax_solve_compile_s=compile_solve
        )
    n, a, k = w["num_items"], w["max_annotations"], w["num_classes"]
    table = 2 * w["num_workers"] * k * k * 4
    per_lane = n * a * 8 + n * k * 4 + table + (0 if classic else n * k * 4)
    row["floor_bytes"] = seeds * per_lane
    if jax.default_backend() == "gpu":
        floor = row["floor_bytes"] / common.H200_BANDWIDTH
        row["floor_ms"] = 1e3 * floor
        row["x_floor"] = t["median_s"] / floor
    return row


# ---------------------------------------------------------------- numpy and crowd-kit
def numpy_classic(w, iters: int, tol: float = 1e-5):
    """Plain vectorised NumPy Dawid-Skene (crowd-kit's algorithm); returns iterations run."""
    workers, labels = w["workers"], w["labels"]
    valid = workers >= 0
    k, nw = w["num_classes"], w["num_workers"]
    codes = np.where(valid, workers * k + labels, 0)
    votes = np.zeros((w["num_items"], k))
    for a in range(workers.shape[1]):
        np.add.at(votes, (np.arange(len(votes))[valid[:, a]], labels[valid[:, a], a]), 1.0)
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
        ll = np.log(np.maximum(prior, 1e-10)) + sum(
            np.where(valid[:, a, None], table[codes[:, a]], 0.0) for a in range(workers.shape[1])
        )
        post = np.exp(ll - ll.max(1, keepdims=True))
        post /= post.sum(1, keepdims=True)
        prior = post.mean(0)
        errors = m_step(post)
        joint = (
            post
            * (ll - np.log(np.maximum(prior, 1e-10)) + valid.sum(1, keepdims=True) * np.log(np.maximum(prior, 1e-10)))
        ).sum()
        new_loss = (joint - (post * np.log(np.maximum(post, 1e-10))).sum()) / valid.sum()
        if new_loss - loss < tol:
            return i + 1
        loss = new_loss
    return iters


def bench_numpy(w, full: bool) -> dict[str, Any]:
    t1 = _wall(lambda: numpy_classic(w, 1, tol=-np.inf))
    t3 = _wall(lambda: numpy_classic(w, 3, tol=-np.inf))
    row = dict(numpy_iter_ms=1e3 * max(t3 - t1, 0.0) / 2)
    if full:
        t0 = time.perf_counter()
        row["numpy_solve_iters"] = numpy_classic(w, 100)
        row["numpy_solve_s"] = time.perf_counter() - t0
    return row


def bench_crowdkit(w, full: bool) -> dict[str, Any]:
    import warnings

    from crowdkit.aggregation import DawidSkene

    warnings.filterwarnings("ignore")
    frame = w["frame"]
    t1 = _wall(lambda: DawidSkene(n_iter=1, tol=-1.0).fit(frame))
    t3 = _wall(lambda: DawidSkene(n_iter=3, tol=-1.0).fit(frame))
    row = dict(crowdkit_iter_ms=1e3 * max(t3 - t1, 0.0) / 2)
    if full:
        t0 = time.perf_counter()
        ds = DawidSkene(n_iter=100, tol=1e-5).fit(frame)
        row.update(crowdkit_solve_s=time.perf_counter() - t0, crowdkit_solve_iters=len(ds.loss_history_))
    return row


def _wall(fn, budget_s: float = 3.0, max_runs: int = 7) -> float:
    """Median wall time of `fn()` over up to `max_runs` runs within about `budget_s`."""
    times, start = [], time.perf_counter()
    while len(times) < max_runs and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="rte,vertebrate,imagenet100")
    ap.add_argument("--seeds", default="1", help="comma list of lane counts for jaxanno")
    ap.add_argument("--crowdkit", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--full", action=argparse.BooleanOptionalAction, default=True, help="also full solves")
    ap.add_argument("--full_crowdkit_max_items", type=int, default=30000, help="skip slower crowd-kit solves")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=f"{common.ROOT}/benchmarks/results")
    ap.add_argument("--name", default=None, help="result file name (default em_speed_<backend>)")
    args = ap.parse_args()
    env = common.environment()
    print(common.env_lines(env))
    rows: list[dict[str, Any]] = []
    for size in args.sizes.split(","):
        w = real_workload(size) if size in ("rte", "bluebirds") else synthetic_workload(size)
        base: dict[str, Any] = {}
        if args.crowdkit:
            base.update(bench_crowdkit(w, args.full and w["num_items"] <= args.full_crowdkit_max_items))
        base.update(bench_numpy(w, args.full))
        for seeds in map(int, args.seeds.split(",")):
            for variant in ("classic", "reference"):
                row = {**bench_jaxanno(w, variant, seeds, args.repeats, args.full and seeds == 1), **base}
                per_lane_ms = row["jax_iter_ms"] / seeds
                if row.get("crowdkit_iter_ms"):
                    row["x_vs_crowdkit"] = row["crowdkit_iter_ms"] / per_lane_ms
                row["x_vs_numpy"] = row["numpy_iter_ms"] / per_lane_ms if row["numpy_iter_ms"] else None
                rows.append(row)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    cols = [
        "size",
        "variant",
        "seeds",
        "jax_compile_s",
        "jax_iter_ms",
        "numpy_iter_ms",
        "crowdkit_iter_ms",
        "x_vs_numpy",
        "x_vs_crowdkit",
        "jax_solve_s",
        "jax_solve_iters",
        "numpy_solve_s",
        "numpy_solve_iters",
        "crowdkit_solve_s",
        "crowdkit_solve_iters",
        "floor_ms",
        "x_floor",
    ]
    table = common.markdown_table(rows, cols)
    md = (
        f"# EM speed\n\n{common.env_lines(env)}\n\nPer-iteration times are medians; x_vs_* compare one lane "
        f"(ms / seeds) with the single-threaded baselines on the same data in the same run.\n\n{table}"
    )
    print("\n" + table)
    name = args.name or f"em_speed_{jax.default_backend()}"
    common.write_results(args.out, name, {"environment": env, "rows": rows}, md)


if __name__ == "__main__":
    main()
