"""A complete imagenet_100_classes efficient_annotation run to 1 label per image.

For S seeds: wall time with the XLA compilation included and apart, the time of every
chunk and the median time per online step after the first (compiling) chunk, the final
metrics, and the peak memory of the process. Every row runs in its own Python process,
so its peaks (resident set; device memory where the device reports it) belong to that
run alone, stand-in generation included.

  python benchmarks/bench_full_run.py                          # CPU: 1 seed, width 128
  python benchmarks/bench_full_run.py --seeds=64 --width=2048  # an accelerator (see gpu_run.py)
  python benchmarks/bench_full_run.py --quick                  # a small Vertebrate run, seconds
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jax
import numpy as np

import common
from jaxanno import experiment


def full_run(seeds: int, width: int, quick: bool, max_chunks: int = 0) -> dict[str, Any]:
    """Run `common.full_run_config` until every lane stops (or `max_chunks` chunks)."""
    t0 = time.perf_counter()
    problem = experiment.prepare(common.full_run_config(seeds, width, quick))
    prepare_s = time.perf_counter() - t0
    chunk_steps = problem.cfg.run.chunk_steps
    state, metrics, step = experiment.blank_state(problem), None, 0
    watch = common.Stopwatch()
    while step < problem.max_steps:

        def chunk(start=step):
            nonlocal state, metrics
            state, metrics = experiment.advance(problem, state, start, chunk_steps)
            return state.done

        done = watch(chunk)
        step += chunk_steps
        if np.all(np.asarray(done)) or (max_chunks and len(watch.seconds) >= max_chunks):
            break
    t = watch.timing(warmup=1)
    m = jax.device_get(metrics)
    wall = sum(watch.seconds)
    return {
        "seeds": seeds,
        "items": problem.static.num_items,
        "feature_dim": problem.static.feature_dim,
        "prepare_s": prepare_s,
        "wall_s_including_compile": wall,
        "compile_s": t.compile_s,
        "wall_s_excluding_compile": wall - t.compile_s,
        "steps": step,
        "chunk_steps": chunk_steps,
        "chunk_s": list(watch.seconds),
        "per_step_s": t.median_s / chunk_steps,
        "seed_steps_per_s": seeds * chunk_steps / t.median_s,
        "final_cost_per_item": float(np.asarray(m.cost_per_item)[:seeds, -1].mean()),
        "final_top1": float(np.asarray(m.aggregate.all.top1)[:seeds, -1].mean()),
        "learner_top1": float(np.asarray(m.learner.all.top1)[:seeds, -1].mean()),
    }


COLUMNS = [
    "seeds", "items", "feature_dim", "prepare_s", "wall_s_including_compile", "compile_s", "wall_s_excluding_compile",
    "steps", "per_step_s", "final_cost_per_item", "final_top1", "learner_top1", "process_peak_rss_bytes",
    "process_peak_device_bytes",
]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1", help="comma list of S, each run in its own process")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--max_chunks", type=int, default=0, help="stop after this many chunks (0: run to the end)")
    ap.add_argument("--quick", action="store_true", help="a small Vertebrate stand-in run (common.QUICK_RUN)")
    ap.add_argument("--name", default=None, help="result file name (default full_run_<backend>)")
    common.add_output_args(ap)
    common.add_row_out_arg(ap)
    args = ap.parse_args()
    if args.row_out:  # one measurement, in a process of its own (see common.in_own_process)
        row = {**full_run(int(args.seeds), args.width, args.quick, args.max_chunks), **common.process_peaks()}
        with open(args.row_out, "w") as f:
            json.dump(row, f)
        return
    env = common.environment()
    print(common.env_line(env), flush=True)
    rows = []
    for s in map(int, args.seeds.split(",")):
        argv = [f"--seeds={s}", f"--width={args.width}", f"--max_chunks={args.max_chunks}"]
        row = common.in_own_process(__file__, argv + (["--quick"] if args.quick else []))
        rows.append(row)
        print(common.rounded({k: v for k, v in row.items() if k != "chunk_s"}), flush=True)
    table = common.markdown_table(rows, COLUMNS)
    what = "A small Vertebrate stand-in" if args.quick else "Full ImageNet100"
    md = (
        f"# {what} efficient_annotation run to 1 label per image\n\n{common.env_line(env)}\n\n"
        "prepare_s: stand-in generation or cache load (not in the wall times); compile_s: XLA compilation "
        "(in the first chunk; tracing stays in wall_s_excluding_compile); per_step_s: median chunk after the "
        "first / steps per chunk; process_peak_*: peaks of the process that ran that row alone (stand-in "
        f"generation included; device memory where the device reports it).\n\n{table}"
    )
    print("\n" + table)
    name = args.name or common.default_name("full_run")
    common.write_results(common.output_dir(args), name, {"environment": env, "rows": rows}, md)


if __name__ == "__main__":
    main()
