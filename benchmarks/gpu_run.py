"""The accelerator benchmark run: one command, each phase in its own process, the summary
saved as each phase ends (so a cut-short run still returns the first phases).

  python benchmarks/gpu_run.py --out=DIR          # on a GPU: ImageNet100 sizes, 64 seeds
  python benchmarks/gpu_run.py DIR --quick        # a rehearsal on a CPU (minutes)

Phases (in this order; `--phases` picks some):
  1. em_floor   bench_em_speed.py: one EM iteration at ImageNet100 size (125,689 items x 3
                labels, K=100, W=50) for 1 and 64 lanes, against the bandwidth floor.
  2. full_run   bench_full_run.py: a complete imagenet_100_classes efficient_annotation run
                to 1 label per image, 64 seeds, 2048-wide stand-in features: wall time with
                and without compilation, per-step time, peak memory of its process.
  3. one_seed   bench_full_run.py: the same program for 1 seed, a few chunks.
scaling_x, once both runs are in, is the 64-seed run's seed-steps per second over the
1-seed run's, both over the same window: the chunks after the first (compiling) one that
both ran, so the same online steps.

Each phase's own JSON and markdown go to DIR/<phase>/; the summary (gpu_run_<backend>.json
and .md) to DIR, or to benchmarks/results/ with --save (the phases then to a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

import common


def phase_commands(quick: bool) -> dict[str, tuple[str, list[str]]]:
    """Phase -> (script, arguments), at full size or (`quick`) rehearsal size."""
    if quick:
        em_args = ["--sizes=vertebrate", "--seeds=1,4", "--repeats=5"]
        run_args, seeds = ["--quick"], 4
    else:
        em_args = ["--sizes=imagenet100", "--seeds=1,64", "--repeats=20"]
        run_args, seeds = ["--width=2048"], 64
    return {
        "em_floor": ("bench_em_speed.py", [*em_args, "--no-crowdkit", "--no-numpy", "--no-full"]),
        "full_run": ("bench_full_run.py", [*run_args, f"--seeds={seeds}"]),
        "one_seed": ("bench_full_run.py", [*run_args, "--seeds=1", "--max_chunks=3"]),
    }


def run_phase(script: str, argv: list[str], folder: str) -> list[dict[str, Any]]:
    """Run one benchmark script into `folder`; its result rows."""
    cmd = [sys.executable, os.path.join(common.HERE, script), *argv, f"--out={folder}", "--name=phase"]
    subprocess.run(cmd, check=True)
    with open(os.path.join(folder, "phase.json")) as f:
        return json.load(f)["rows"]


def same_window_scaling(many: dict[str, Any], one: dict[str, Any]) -> dict[str, Any]:
    """Seed-steps per second of `many` over `one` on the chunks both ran after the first."""
    if many["chunk_steps"] != one["chunk_steps"]:
        raise ValueError(f"chunk_steps differ: {many['chunk_steps']} vs {one['chunk_steps']}")
    last = min(len(many["chunk_s"]), len(one["chunk_s"]))
    if last < 2:
        return {"scaling_x": None, "scaling_window": "fewer than two chunks in one of the runs"}
    rate = lambda row: row["seeds"] / statistics.median(row["chunk_s"][1:last])  # noqa: E731
    steps = many["chunk_steps"]
    return {
        "scaling_x": rate(many) / rate(one),
        "scaling_window": f"online steps {steps}-{steps * last - 1} (from 0; chunks 2-{last}) of both runs",
    }


COLUMNS = {
    "em_floor": ["size", "variant", "seeds", "jax_compile_s", "jax_iter_ms", "floor_bytes", "floor_ms", "x_floor"],
    "run": ["seeds", "items", "feature_dim", "prepare_s", "wall_s_including_compile", "compile_s",
            "wall_s_excluding_compile", "steps", "per_step_s", "seed_steps_per_s", "final_cost_per_item", "final_top1",
            "learner_top1", "process_peak_rss_bytes", "process_peak_device_bytes"],
}  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Accelerator run", "", common.env_line(results["environment"]), ""]
    for phase in ("em_floor", "full_run", "one_seed"):
        if phase not in results:
            continue
        rows = results[phase]
        if isinstance(rows, dict):  # a failed phase
            lines += [f"## {phase}", "", f"failed: {rows['error']}", ""]
            continue
        cols = COLUMNS["em_floor" if phase == "em_floor" else "run"]
        lines += [f"## {phase}", "", common.markdown_table(rows, cols), ""]
    if "scaling_x" in results:
        lines.append(f"scaling_x = {common.rounded(results)['scaling_x']} over {results['scaling_window']}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", default=None, help="same as --out")
    ap.add_argument("--quick", "--tiny", action="store_true", help="a rehearsal on a CPU at small sizes")
    ap.add_argument("--phases", default="em_floor,full_run,one_seed")
    ap.add_argument("--name", default=None, help="summary file name (default gpu_run_<backend>)")
    common.add_output_args(ap)
    args = ap.parse_args()
    if args.out_dir:
        if args.out or args.save:
            ap.error("give the folder once: as DIR, --out=DIR, or --save")
        args.out = args.out_dir
    out = common.output_dir(args)
    work = tempfile.mkdtemp(prefix="jaxanno-gpu-run-") if args.save else out
    name = args.name or common.default_name("gpu_run")
    commands = phase_commands(args.quick)
    results: dict[str, Any] = {"environment": common.environment()}
    print(common.env_line(results["environment"]), flush=True)
    for phase in args.phases.split(","):
        if phase not in commands:
            raise SystemExit(f"unknown phase {phase!r}; known: {sorted(commands)}")
        script, argv = commands[phase]
        try:
            results[phase] = run_phase(script, argv, os.path.join(work, phase))
        except subprocess.CalledProcessError as err:  # keep going: later phases may still run
            results[phase] = {"error": str(err)}
        if isinstance(results.get("full_run"), list) and isinstance(results.get("one_seed"), list):
            results.update(same_window_scaling(results["full_run"][0], results["one_seed"][0]))
        common.write_results(out, name, results, markdown(results))


if __name__ == "__main__":
    main()
