"""A checkpoint written on one device resumes on four (simulated) devices and the other way
round, and either way the run ends with exactly the single-device result. 3 seeds x 2 grid
points are 6 lanes: padded to 8 on four devices, none on one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from configs import test as test_config
from jaxanno import experiment, runner
from tests.conftest import xla_flags
from tests.test_launch import ROOT

# Each case launches and compiles a 4-device run in a fresh process; test_runner_checkpoint covers
# re-padding lanes in process.
pytestmark = pytest.mark.slow

# Runs `_cfg()`'s launch into argv[1] on the process's devices, stopped with Ctrl-C when
# `experiment.advance` is called for the argv[2]-th time (0: never).
SCRIPT = """
import sys
from jaxanno import experiment, runner
from tests import test_runner_devices as here
stop_at, advance, calls = int(sys.argv[2]), experiment.advance, []
def interrupted(*args, **kwargs):
    calls.append(1)
    if len(calls) == stop_at:
        raise KeyboardInterrupt
    return advance(*args, **kwargs)
experiment.advance = interrupted
sys.exit(runner.run_launch(here.config(), sys.argv[1], quiet=True, report=False))
"""


def config():
    cfg = test_config.get_config()
    cfg.run.num_seeds, cfg.sweep.prior_strength = 3, (3.0, 10.0)
    return cfg


def _on_four_devices(workdir, stop_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=4")}
    cmd = [sys.executable, "-c", SCRIPT, str(workdir), str(stop_at)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    assert runner.run_launch(config(), str(out), quiet=True, report=False) == 0
    return pd.read_csv(out / "metrics.csv")


def _devices_per_run(workdir) -> list[tuple[str, int]]:
    runs = json.loads((workdir / "problem.json").read_text())["runs"]
    return [(r["outcome"], r["devices"]) for r in runs]


STOPPED = "interrupted at step 5; rerun the same command to resume"


def test_a_one_device_checkpoint_resumes_on_four(tmp_path, single, monkeypatch, capsys):
    advance, calls = experiment.advance, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return advance(*args, **kwargs)

    monkeypatch.setattr(experiment, "advance", interrupted)
    assert runner.run_launch(config(), str(tmp_path), quiet=True, report=False) == runner.INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines()[-1] == STOPPED
    resumed = _on_four_devices(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "on 4 device(s)" in resumed.stdout
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), single)
    assert _devices_per_run(tmp_path) == [("interrupted", 1), ("finished", 4)]


def test_a_four_device_checkpoint_resumes_on_one(tmp_path, single):
    stopped = _on_four_devices(tmp_path, stop_at=2)
    assert stopped.returncode == runner.INTERRUPTED, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == STOPPED
    assert runner.run_launch(config(), str(tmp_path), quiet=True, report=False) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), single)
    assert _devices_per_run(tmp_path) == [("interrupted", 4), ("finished", 1)]
