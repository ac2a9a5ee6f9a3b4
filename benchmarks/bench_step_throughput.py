"""Online steps per second for S = 1, 2, 4, ... seeds (vmapped lanes of one program).

For each experiment x method x S: the compile time (the first chunk's XLA compilation),
the steady-state time per online step (median over chunks after the first), throughput in
seed-steps per second, and scaling efficiency = throughput(S) / (S x throughput(1)).

  python benchmarks/bench_step_throughput.py                     # CPU defaults
  python benchmarks/bench_step_throughput.py --experiments=imagenet_split_1 --seeds=1,2,4,8
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import numpy as np

import common
from jaxanno import config, experiment, outputs


def measure(experiment_name: str, method: str, seeds: int, chunks: int, chunk_steps: int, width: int) -> dict[str, Any]:
    cfg = config.default_config()
    cfg.experiment, cfg.method = experiment_name, method
    cfg.run.num_seeds = seeds
    cfg.run.chunk_steps = chunk_steps
    cfg.data.feature_dim = width
    problem = experiment.prepare(cfg)
    state = experiment.blank_state(problem)
    times = []
    with outputs.count_compiles() as compiles:
        for c in range(chunks + 1):
            t0 = time.perf_counter()
            state, _ = experiment.advance(problem, state, c * chunk_steps, chunk_steps)
            jax.block_until_ready(state.done)
            times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[1:])) / chunk_steps
    return {
        "experiment": experiment_name,
        "method": method,
        "seeds": seeds,
        "items": problem.static.num_items,
        "compile_s": compiles.seconds,
        "step_s": per_step,
        "steps_per_s": 1.0 / per_step,
        "seed_steps_per_s": seeds / per_step,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", default="imagenet_split_1,imagenet_100_classes")
    ap.add_argument("--methods", default="ds_model,efficient_annotation")
    ap.add_argument("--seeds", default="1,2,4", help="comma list of S")
    ap.add_argument("--max_seeds_imagenet100", type=int, default=2, help="cap S at ImageNet100 size")
    ap.add_argument("--chunks", type=int, default=2, help="timed chunks after the compiling one")
    ap.add_argument("--chunk_steps", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--out", default=f"{common.ROOT}/benchmarks/results")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    env = common.environment()
    print(common.env_lines(env), flush=True)
    rows: list[dict[str, Any]] = []
    for name in args.experiments.split(","):
        for method in args.methods.split(","):
            base = None
            for s in map(int, args.seeds.split(",")):
                if name == "imagenet_100_classes" and s > args.max_seeds_imagenet100:
                    continue
                row = measure(name, method, s, args.chunks, args.chunk_steps, args.width)
                base = base or row
                row["scaling_efficiency"] = row["seed_steps_per_s"] / (s * base["seed_steps_per_s"] / base["seeds"])
                rows.append(row)
                print(row, flush=True)
    cols = ["experiment", "method", "seeds", "items", "compile_s", "step_s", "seed_steps_per_s", "scaling_efficiency"]
    table = common.markdown_table(rows, cols)
    md = (
        f"# Online step throughput\n\n{common.env_lines(env)}\n\nFeature width {args.width}; step_s is the "
        f"median steady-state time of one online step of all S seeds.\n\n{table}"
    )
    print("\n" + table)
    common.write_results(
        args.out,
        args.name or f"step_throughput_{jax.default_backend()}",
        {"environment": env, "width": args.width, "rows": rows},
        md,
    )


if __name__ == "__main__":
    main()
