"""A complete imagenet_100_classes efficient_annotation run to 1 label per image.

Wall time with compilation included and apart, time per online step, and peak memory
(device memory on a GPU, the process's peak resident set on a CPU), for S seeds.

  python benchmarks/bench_full_run.py                      # CPU: 1 seed, width 128
  python benchmarks/bench_full_run.py --seeds=64 --width=2048   # a GPU (see gpu_run.py)
"""

from __future__ import annotations

import argparse
import resource

import jax

import common
from gpu_run import full_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--out", default=f"{common.ROOT}/benchmarks/results")
    args = ap.parse_args()
    env = common.environment()
    print(common.env_lines(env), flush=True)
    rows = []
    for s in map(int, args.seeds.split(",")):
        row = full_run(s, tiny=False, width=args.width)
        if jax.default_backend() == "cpu":
            row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rows.append(row)
        print(row, flush=True)
    cols = [
        "seeds",
        "items",
        "feature_dim",
        "prepare_s",
        "wall_s_including_compile",
        "compile_s",
        "wall_s_excluding_compile",
        "steps",
        "per_step_s",
        "final_cost_per_item",
        "final_top1",
        "learner_top1",
        "peak_device_bytes",
        "peak_rss_bytes",
    ]
    table = common.markdown_table(rows, cols)
    md = (
        f"# Full ImageNet100 efficient_annotation run to 1 label per image\n\n{common.env_lines(env)}\n\n"
        f"prepare_s: stand-in generation or cache load (not in the wall times).\n\n{table}"
    )
    print("\n" + table)
    common.write_results(args.out, f"full_run_{jax.default_backend()}", {"environment": env, "rows": rows}, md)


if __name__ == "__main__":
    main()
