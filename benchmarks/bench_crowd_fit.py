"""jaxanno.crowd.DawidSkene vs crowd-kit's DawidSkene: fit time and accuracy, side by side.

    python benchmarks/bench_crowd_fit.py [--quick] [--repeats=3] [--synthetic_tasks=200000,2000000] [--tag=h200]
        [--out=benchmarks/results]

Datasets: RTE and Bluebirds (tests/data, real crowds) and synthetic sets of one million
labels (200,000 tasks x 5 distinct workers out of 500, K = 5 and 10, worker accuracy
U(0.55, 0.95); `common.simulate_labels`). Both libraries get the same DataFrame and the same
settings (n_iter=100, tol=1e-5) in the same process, alternately, so the ratio is measured
under the same machine load.

Reported per dataset:
  programs      programs compiled by the first fit on the dataset (`outputs.count_compiles`)
  compile_s     AOT `lower().compile()` of the EM program (jaxanno; paid once per shape bucket)
  fit_s         warm `DawidSkene().fit(df)`, end to end: checking and encoding the table,
                EM on the device, pandas results (median of the repeats)
  solve_s       the compiled EM program alone (median)
  crowdkit_s    crowd-kit's `fit(df)` (median)
  speedup       crowdkit_s / fit_s (crowd-kit always runs on the CPU)
  iterations and accuracy against the gold labels, for each library

Results go to benchmarks/results/crowd_fit.{json,md} (or --out) with device and versions.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time
import warnings

import jax
import numpy as np
import pandas as pd

import common
from jaxanno import crowd, outputs

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
N_ITER, TOL = 100, 1e-5


def _datasets(synthetic_tasks):
    for name in ("rte", "bluebirds"):
        labels = pd.read_csv(DATA / f"{name}_labels.csv")
        gold = pd.read_csv(DATA / f"{name}_gold.csv").set_index("task")["label"]
        yield name, labels, gold
    for tasks in synthetic_tasks:
        for k in (5, 10):
            labels, gold = common.simulate_labels(tasks, 500, k, 5, seed=k)
            yield f"synthetic_{len(labels) / 1e6:g}M_K{k}", labels, gold


def _accuracy(pred: pd.Series, gold: pd.Series) -> float:
    return float((pred.reindex(gold.index) == gold).mean())


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _compile_and_solve(labels: pd.DataFrame, repeats: int):
    """AOT compile time of the EM program and the median run time of the compiled program."""
    ds = crowd.DawidSkene(n_iter=N_ITER, tol=TOL)
    problem = crowd.prepare(labels)
    static, params = ds.em_static(problem.table), ds.em_params()
    prior = crowd.worker_prior_alpha(static, params, None, problem.table, problem.gold_codes)
    gold = jax.device_put(problem.gold_codes)
    args = (params, problem.table.annotations, prior, None, gold, crowd.host_key(0), np.int32(N_ITER))
    compile_s, compiled = _timed(lambda: crowd.solve.lower(static, *args).compile())
    jax.block_until_ready(compiled(*args))
    runs = [_timed(lambda: jax.block_until_ready(compiled(*args)))[0] for _ in range(repeats)]
    return compile_s, statistics.median(runs)


def bench(name: str, labels: pd.DataFrame, gold: pd.Series, repeats: int) -> dict:
    from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene

    with outputs.count_compiles() as compiles:  # the first fit of this shape bucket in the process
        crowd.DawidSkene(n_iter=N_ITER, tol=TOL).fit(labels)
    compile_s, solve_s = _compile_and_solve(labels, repeats)
    ours, theirs = [], []
    for _ in range(repeats):  # alternate, so both see the same load
        t, ds = _timed(lambda: crowd.DawidSkene(n_iter=N_ITER, tol=TOL).fit(labels))
        ours.append(t)
        t, ck = _timed(lambda: CrowdKitDawidSkene(n_iter=N_ITER, tol=TOL).fit(labels))
        theirs.append(t)
    fit_s, ck_s = statistics.median(ours), statistics.median(theirs)
    return {
        "dataset": name,
        "labels": len(labels),
        "tasks": int(labels.task.nunique()),
        "workers": int(labels.worker.nunique()),
        "classes": int(labels.label.nunique()),
        "programs": sum(compiles.values()),
        "compile_s": round(compile_s, 3),
        "fit_s": round(fit_s, 4),
        "solve_s": round(solve_s, 4),
        "crowdkit_s": round(ck_s, 4),
        "speedup": round(ck_s / fit_s, 2),
        "iterations": ds.n_iter_,
        "crowdkit_iterations": len(ck.loss_history_),
        "accuracy": round(_accuracy(ds.labels_, gold), 4),
        "crowdkit_accuracy": round(_accuracy(ck.labels_, gold), 4),
        "max_abs_posterior_diff": float(
            (ds.probas_ - ck.probas_.reindex(index=ds.probas_.index, columns=ds.probas_.columns)).abs().max().max()
        ),
        "repeats": repeats,
    }


def _markdown(rows: list, env: dict) -> str:
    head = (
        "| dataset | labels | tasks | workers | K | programs | compile s | jaxanno fit s | EM solve s | crowd-kit s | "
        "speedup | iters (jx / ck) | accuracy (jx / ck) | max abs posterior diff |"
    )
    lines = [
        "# DawidSkene fit time: jaxanno vs crowd-kit",
        "",
        f"{common.env_line(env)}. n_iter={N_ITER}, tol={TOL}; medians of {rows[0]['repeats']} alternating runs. "
        "Fit = end to end (checks, encoding, EM, pandas results), warm; programs = programs compiled by the "
        "first fit in the process; compile = AOT compile of the EM program, paid once per shape bucket.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['labels']:,} | {r['tasks']:,} | {r['workers']} | {r['classes']} | "
            f"{r['programs']} | {r['compile_s']:.2f} | {r['fit_s']:.3f} | {r['solve_s']:.3f} | {r['crowdkit_s']:.3f} | "
            f"{r['speedup']:.1f}x | {r['iterations']} / {r['crowdkit_iterations']} | "
            f"{r['accuracy']:.4f} / {r['crowdkit_accuracy']:.4f} | {r['max_abs_posterior_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic sets of 100k labels instead of 1M")
    parser.add_argument(
        "--synthetic_tasks",
        default="200000",
        help="comma-separated task counts of the synthetic sets (5 labels per task)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. the device")
    common.add_output_args(parser)
    args = parser.parse_args()
    out = common.output_dir(args)
    sizes = [20_000] if args.quick else [int(n) for n in args.synthetic_tasks.split(",")]
    warnings.filterwarnings("ignore")  # crowd-kit's pandas deprecation warnings
    env = {**common.environment(), "pandas": pd.__version__}
    suffix = ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    rows = []
    for name, labels, gold in _datasets(sizes):
        row = bench(name, labels, gold, args.repeats)
        rows.append(row)
        print(
            f"{name:>22}: {row['programs']} program(s), EM compile {row['compile_s']:.2f}s | "
            f"jaxanno fit {row['fit_s']:.3f}s "
            f"(EM {row['solve_s']:.3f}s) | crowd-kit {row['crowdkit_s']:.3f}s | {row['speedup']:.1f}x | "
            f"acc {row['accuracy']:.4f} vs {row['crowdkit_accuracy']:.4f}",
            flush=True,
        )
        # rewritten after every dataset, so an interrupted run keeps what it measured
        common.write_results(out, f"crowd_fit{suffix}", {"environment": env, "results": rows}, _markdown(rows, env))
    print(f"wrote {out}/crowd_fit{suffix}.json and .md")


if __name__ == "__main__":
    main()
