"""Lanes sharded over several (simulated) devices and over two processes give exactly the
single-device results, including a seed count that does not divide the device count."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jaxanno import experiment, results, types
from tests.conftest import xla_flags
from tests.test_launch import ROOT

ARGS = [
    "--config=configs/test.py",
    "--num_seeds=3",
    "--config.sweep.prior_strength=(3.0,10.0)",
    "--noreport",
    "--quiet",
]


def _run(workdir, extra=(), env_extra=None, wait=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env_extra or {})}
    cmd = [sys.executable, "launch.py", *ARGS, *extra, f"--workdir={workdir}"]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    _run(out)
    return pd.read_csv(out / "metrics.csv")


def test_lanes_pad_to_the_device_count_and_map_back():
    columns = {k: np.full(2, v) for k, v in types.PARAM_DEFAULTS.items()}
    grid = types.make_params(host=True, **{**columns, "risk_threshold": np.array([0.1, 0.2])})
    params, seeds = experiment.lane_inputs(grid, 2, [5, 6, 7], 8)
    np.testing.assert_array_equal(seeds, [5, 6, 7, 5, 6, 7, 5, 6])
    np.testing.assert_allclose(params.risk_threshold, [0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.1, 0.1])


@pytest.mark.slow
def test_four_simulated_devices_equal_one(tmp_path, single):
    proc = _run(tmp_path, env_extra={"XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=4")})
    assert "on 4 device(s)" in proc.stdout  # 6 lanes padded to 8
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), single)


@pytest.mark.slow
def test_two_processes_on_loopback_equal_one(tmp_path, single):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
    procs = [_run(tmp_path, common + [f"--process_id={i}"], wait=False) for i in (0, 1)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    assert "on 2 device(s)" in logs[0]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), single)


@pytest.mark.slow
def test_a_seeds_result_does_not_depend_on_the_other_lanes():
    """With lanes computed one at a time (the CPU default), seed 1 alone, seed 1 among
    three seeds and seed 1 in a sweep give bit-identical metrics."""
    from configs import test as test_config

    def seed_one(num_seeds, first, sweep=()):
        cfg = test_config.get_config()
        cfg.wnids, cfg.n_data_per_class = " ".join(cfg.wnids.split()[:3]), 40
        cfg.run.seed, cfg.run.num_seeds, cfg.sweep.prior_strength = first, num_seeds, sweep
        problem = experiment.prepare(cfg)
        frame = results.metrics_frame(experiment.run(problem).metrics, problem.seeds, problem.points)
        return frame[(frame.seed == 1) & (frame.grid == 0)].drop(columns=["grid"]).reset_index(drop=True)

    alone = seed_one(1, 1)
    pd.testing.assert_frame_equal(alone, seed_one(3, 0))
    pd.testing.assert_frame_equal(alone, seed_one(2, 0, sweep=(10.0, 3.0)).drop(columns=["prior_strength"]))
