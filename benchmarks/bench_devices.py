"""Lanes over devices: seeds per second on 1 device vs D simulated (or real) devices.

Each configuration is a separate launch process (the device count is fixed when JAX
starts); the same launch is timed with 1 and with D devices, and the results are checked
to be identical. On a CPU the D devices are simulated with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` and share the machine's cores.
wall_s is launch's own wall time (compilation included).

  python benchmarks/bench_devices.py                  # CPU: 1 vs 4 simulated devices
  python benchmarks/bench_devices.py --quick          # a tiny launch, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import pandas as pd

import common

QUICK_LAUNCH = "--config.n_data_per_class=20 --config.run.max_steps=4 --config.run.chunk_steps=2"


def launch(workdir: str, devices: int, seeds: int, extra: list[str]) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    cmd = [sys.executable, "launch.py", f"--num_seeds={seeds}", "--noreport", "--quiet", f"--workdir={workdir}", *extra]
    proc = subprocess.run(cmd, cwd=common.ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    with open(os.path.join(workdir, "problem.json")) as f:
        info = json.load(f)
    return {"devices": info["devices"], "seeds": seeds, "wall_s": info["wall_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--launch_args", default="--config.n_data_per_class=300", help="extra launch.py flags")
    ap.add_argument("--quick", action="store_true", help=f"launch args {QUICK_LAUNCH!r}, 2 devices, 4 seeds")
    ap.add_argument("--name", default="devices_cpu", help="result file name")
    common.add_output_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.launch_args, args.devices, args.seeds = QUICK_LAUNCH, 2, 4
    env = common.environment()
    extra = args.launch_args.split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        frames = []
        for d in (1, args.devices):
            workdir = os.path.join(tmp, f"d{d}")
            row = launch(workdir, d, args.seeds, extra)
            row["seeds_per_s"] = args.seeds / row["wall_s"]
            rows.append(row)
            frames.append(pd.read_csv(os.path.join(workdir, "metrics.csv")))
            print(row, flush=True)
        pd.testing.assert_frame_equal(frames[0], frames[1])  # sharding changes nothing
    rows[1]["speedup"] = rows[1]["seeds_per_s"] / rows[0]["seeds_per_s"]
    table = common.markdown_table(rows, ["devices", "seeds", "wall_s", "seeds_per_s", "speedup"])
    md = (
        f"# Lanes sharded over devices\n\n{common.env_line(env)}\n\nlaunch.py {' '.join(extra)}; wall_s includes "
        f"compilation; metrics identical on 1 and {args.devices} devices (checked).\n\n{table}"
    )
    print("\n" + table)
    payload = {"environment": env, "rows": rows, "launch_args": extra}
    common.write_results(common.output_dir(args), args.name, payload, md)


if __name__ == "__main__":
    main()
