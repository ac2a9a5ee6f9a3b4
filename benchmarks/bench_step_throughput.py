"""Online steps per second for S = 1, 2, 4, ... seeds, with each way of running the lanes.

A run's S seeds are lanes of one compiled program; `run.lane_batch` decides how the lanes
run inside it, and both are measured here, labelled:
  lane_batch=1  `lax.map`, one lane at a time (the default on a CPU: launch's -1 means 1
                there, and 0 on an accelerator)
  lane_batch=0  `vmap`, all S lanes at once

For each experiment x method x lane mode x S: the XLA compile time (inside the first,
untimed chunk), the steady-state time per online step (median over the chunks after the
first), throughput in seed-steps per second, and scaling efficiency =
throughput(S) / (S x throughput(1)) within the same lane mode.

  python benchmarks/bench_step_throughput.py                     # CPU defaults
  python benchmarks/bench_step_throughput.py --experiments=imagenet_split_1 --seeds=1,2,4,8 --lane_batch=1
  python benchmarks/bench_step_throughput.py --quick             # small stand-in, seconds
"""

from __future__ import annotations

import argparse
from typing import Any

import common
from jaxanno import experiment

LANE_MODES = {1: "lax.map, 1 lane at a time", 0: "vmap, all lanes"}


def measure(
    experiment_name: str, method: str, seeds: int, lane_batch: int, chunks: int, chunk_steps: int, overrides: dict
) -> dict[str, Any]:
    cfg = common.make_config(
        experiment_name,
        method,
        {"run.num_seeds": seeds, "run.chunk_steps": chunk_steps, "run.lane_batch": lane_batch, **overrides},
    )
    problem = experiment.prepare(cfg)
    state = experiment.blank_state(problem)
    watch = common.Stopwatch()
    for c in range(chunks + 1):

        def chunk(c=c):
            nonlocal state
            state, _ = experiment.advance(problem, state, c * chunk_steps, chunk_steps)
            return state.done

        watch(chunk)
    t = watch.timing(warmup=1)
    per_step = t.median_s / chunk_steps
    return {
        "experiment": experiment_name,
        "method": method,
        "lanes": LANE_MODES[lane_batch],
        "lane_batch": lane_batch,
        "seeds": seeds,
        "items": problem.static.num_items,
        "compile_s": t.compile_s,
        "step_s": per_step,
        "steps_per_s": 1.0 / per_step,
        "seed_steps_per_s": seeds / per_step,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", default="imagenet_split_1,imagenet_100_classes")
    ap.add_argument("--methods", default="ds_model,efficient_annotation")
    ap.add_argument("--seeds", default="1,2,4", help="comma list of S")
    ap.add_argument("--lane_batch", default="1,0", help="comma list of lane modes: 1 (lax.map) and/or 0 (vmap)")
    ap.add_argument("--max_seeds_imagenet100", type=int, default=2, help="cap S at ImageNet100 size")
    ap.add_argument("--chunks", type=int, default=2, help="timed chunks after the compiling one")
    ap.add_argument("--chunk_steps", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="small Vertebrate stand-in, ds_model, S = 1, 2: a smoke run")
    ap.add_argument("--name", default=None, help="result file name (default step_throughput_<backend>)")
    common.add_output_args(ap)
    args = ap.parse_args()
    overrides: dict[str, Any] = {"data.feature_dim": args.width}
    if args.quick:
        args.experiments, args.methods, args.seeds, args.chunks = "imagenet_split_1", "ds_model", "1,2", 1
        overrides = dict(common.QUICK_RUN)
    env = common.environment()
    print(common.env_line(env), flush=True)
    rows: list[dict[str, Any]] = []
    for name in args.experiments.split(","):
        for method in args.methods.split(","):
            for lane_batch in map(int, args.lane_batch.split(",")):
                base = None
                for s in map(int, args.seeds.split(",")):
                    if name == "imagenet_100_classes" and s > args.max_seeds_imagenet100:
                        continue
                    row = measure(name, method, s, lane_batch, args.chunks, args.chunk_steps, overrides)
                    base = base or row
                    row["scaling_efficiency"] = row["seed_steps_per_s"] / (s * base["seed_steps_per_s"] / base["seeds"])
                    rows.append(row)
                    print(common.rounded(row), flush=True)
    cols = ["experiment", "method", "lanes", "seeds", "items", "compile_s", "step_s", "seed_steps_per_s",
            "scaling_efficiency"]  # fmt: skip
    table = common.markdown_table(rows, cols)
    md = (
        f"# Online step throughput\n\n{common.env_line(env)}\n\nFeature width {overrides['data.feature_dim']}; "
        f"step_s is the median steady-state time of one online step of all S seeds; lanes: how the S lanes run "
        f"inside the one compiled program (run.lane_batch 1 or 0).\n\n{table}"
    )
    print("\n" + table)
    payload = {"environment": env, "width": overrides["data.feature_dim"], "rows": rows}
    common.write_results(common.output_dir(args), args.name or common.default_name("step_throughput"), payload, md)


if __name__ == "__main__":
    main()
