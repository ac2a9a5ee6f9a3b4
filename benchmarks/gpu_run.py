"""The GPU benchmark run: one command, results to a folder, each phase saved as it ends.

  python benchmarks/gpu_run.py OUT_DIR            # on a GPU: ImageNet100 sizes, 64 seeds
  python benchmarks/gpu_run.py OUT_DIR --tiny     # a seconds-long rehearsal on a CPU

Phases (in this order, so that a cut-short run still returns the first ones):
  1. em_floor     one EM iteration at ImageNet100 size (125,689 items x 3 labels, K=100,
                  W=50) for 1 and 64 lanes, against the bandwidth floor (see bench_em_speed).
  2. full_run     a complete imagenet_100_classes efficient_annotation run to 1 label per
                  image, 64 seeds, 2048-wide stand-in features: wall time with and without
                  compilation, per-step time, peak device memory.
  3. one_seed     the same program for 1 seed, a few chunks: the 64-vs-1 throughput ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import jax
import numpy as np

import bench_em_speed
import common
from jaxanno import config, experiment, outputs


def _save(out_dir: str, results: dict[str, Any]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, ".gpu_run.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, default=str)
    os.replace(tmp, os.path.join(out_dir, "gpu_run.json"))


def _peak_bytes() -> float:
    stats = jax.devices()[0].memory_stats() or {}
    return float(stats.get("peak_bytes_in_use", np.nan))


def em_floor(tiny: bool) -> list:
    w = bench_em_speed.synthetic_workload("vertebrate" if tiny else "imagenet100")
    rows = []
    for seeds in (1, 4) if tiny else (1, 64):
        for variant in ("reference", "classic"):
            row = bench_em_speed.bench_jaxanno(w, variant, seeds, repeats=5 if tiny else 20, full=False)
            rows.append(row)
            print(row, flush=True)
    return rows


def _problem(seeds: int, tiny: bool, width: int = 2048) -> experiment.Problem:
    cfg = config.default_config()
    cfg.experiment, cfg.method = "imagenet_100_classes", "efficient_annotation"
    cfg.run.num_seeds = seeds
    cfg.run.chunk_steps = 8
    cfg.data.feature_dim = width
    cfg.online.budget = 125689  # to 1 label per image
    if tiny:
        cfg.experiment = "imagenet_split_1"
        cfg.n_data_per_class = 100
        cfg.data.feature_dim = 128
        cfg.online.n_hits_per_step = 5
        cfg.online.budget = 1800
        cfg.learner.max_epochs = 20
    return experiment.prepare(cfg)


def full_run(seeds: int, tiny: bool, max_chunks: int = 0, width: int = 2048) -> dict[str, Any]:
    """A run of `_problem` to one label per image: wall time with and without compilation."""
    t0 = time.perf_counter()
    problem = _problem(seeds, tiny, width)
    t_prepare = time.perf_counter() - t0
    chunk_times = []
    state = experiment.blank_state(problem)
    step, t_start = 0, time.perf_counter()
    with outputs.count_compiles() as compiles:
        while step < problem.max_steps:
            t = time.perf_counter()
            state, m = experiment.advance(problem, state, step, problem.cfg.run.chunk_steps)
            done = bool(np.all(np.asarray(state.done)))
            chunk_times.append(time.perf_counter() - t)
            step += problem.cfg.run.chunk_steps
            if done or (max_chunks and len(chunk_times) >= max_chunks):
                break
    wall = time.perf_counter() - t_start
    compile_s = compiles.seconds
    m = jax.device_get(m)
    steady = chunk_times[1:] or chunk_times
    per_step = float(np.median(steady)) / problem.cfg.run.chunk_steps
    return {
        "seeds": seeds,
        "items": problem.static.num_items,
        "feature_dim": problem.static.feature_dim,
        "prepare_s": t_prepare,
        "wall_s_including_compile": wall,
        "compile_s": compile_s,
        "wall_s_excluding_compile": wall - compile_s,
        "steps": step,
        "chunks": len(chunk_times),
        "first_chunk_s": chunk_times[0],
        "per_step_s": per_step,
        "seed_steps_per_s": seeds / per_step,
        "final_cost_per_item": float(np.asarray(m.cost_per_item)[:seeds, -1].mean()),
        "final_top1": float(np.asarray(m.aggregate.all.top1)[:seeds, -1].mean()),
        "learner_top1": float(np.asarray(m.learner.all.top1)[:seeds, -1].mean()),
        "peak_device_bytes": _peak_bytes(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--phases", default="em_floor,full_run,one_seed")
    args = ap.parse_args()
    results: dict[str, Any] = {"environment": common.environment()}
    print(results["environment"], flush=True)
    for phase in args.phases.split(","):  # in the order given
        if phase == "em_floor":
            results["em_floor"] = em_floor(args.tiny)
        elif phase == "full_run":
            results["full_run"] = full_run(4 if args.tiny else 64, args.tiny)
        elif phase == "one_seed":
            results["one_seed"] = full_run(1, args.tiny, max_chunks=3)
        else:
            raise SystemExit(f"unknown phase {phase!r}")
        if "full_run" in results and "one_seed" in results:
            results["scaling_x"] = results["full_run"]["seed_steps_per_s"] / results["one_seed"]["seed_steps_per_s"]
        print({phase: results[phase]}, flush=True)
        _save(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "em_floor"}, indent=1, default=str))


if __name__ == "__main__":
    main()
