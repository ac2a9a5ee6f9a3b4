"""The command line end to end: outputs, one compile for a sweep, kill -9 or Ctrl-C and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 180 items, 12 labels a step, one step per chunk: ~45 chunks, a checkpoint after each.
LONG = [
    "--config=configs/test.py",
    "--config.n_data_per_class=60",
    "--config.run.chunk_steps=1",
    "--config.run.checkpoint_every=1",
    "--noreport",
]


def _launch(args, workdir, **kw):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "launch.py", *args, f"--workdir={workdir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        **kw,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    proc = _launch(LONG + ["--quiet"], out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_launch_writes_results_and_compiles_once_for_a_sweep(tmp_path):
    proc = _launch(["--config=configs/test.py", "--config.sweep.risk_threshold=(0.05,0.1,0.2)", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "simulation program compiled 1 time(s), 1 XLA compilation(s) in all" in proc.stdout
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert sorted(metrics["risk_threshold"].round(3).unique()) == [0.05, 0.1, 0.2]
    assert set(metrics["seed"]) == {0, 1}
    info = json.loads((tmp_path / "problem.json").read_text())
    assert info["compilations"] == {"jit(_advance_impl)": 1}
    assert (tmp_path / "report" / "report.md").exists()
    resolved = json.loads((tmp_path / "config.json").read_text())
    assert resolved["online"]["hit_size"] == 6 and resolved["learner"]["algo"] == "dummy"


@pytest.mark.slow
def test_bad_input_stops_before_any_output(tmp_path):
    out = tmp_path / "never"
    proc = _launch(["--config=configs/test.py", "--config.risk_thres=1.5"], out)
    assert proc.returncode == 2 and "risk_thres=1.5" in proc.stderr
    assert not out.exists()
    proc = _launch(["--config=configs/test.py", "--config.learner.lr_ration=0.1"], out)
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.strip().splitlines() == [
        "error: --config.learner.lr_ration: unknown config key 'learner.lr_ration'; did you mean 'learner.lr_ratio'?"
    ]
    proc = _launch(["--config=configs/test.py", "--method=lean", "--config.method=ds_model"], out)
    assert proc.returncode != 0 and "--method=lean conflicts with --config.method=ds_model" in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_result(tmp_path, uninterrupted):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "launch.py", *LONG, "--quiet", f"--workdir={tmp_path}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (tmp_path / "checkpoint.msgpack").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "metrics.csv").exists(), "killed before the end: the test must interrupt a run"
    resumed = _launch(LONG, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), pd.read_csv(uninterrupted / "metrics.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "runs.csv"), pd.read_csv(uninterrupted / "runs.csv"))


@pytest.mark.slow  # a real SIGINT to a launch and its resume; runner_workdir tests cover the logic in process
def test_ctrl_c_prints_one_line_exits_130_and_the_same_command_resumes(tmp_path, uninterrupted):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # The launch must see Ctrl-C as a terminal delivers it, whatever this process inherited (a
    # runner that starts pytest in the background hands SIGINT on as ignored) or set up: the
    # wrapper unblocks SIGINT and restores its default before it becomes the launch.
    exec_launch = (
        "import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
        "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    cmd = [sys.executable, "-c", exec_launch, "launch.py", *LONG, "--quiet", f"--workdir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "checkpoint.msgpack").exists() and time.time() < deadline:
        time.sleep(0.01)
    for _ in range(20):  # Ctrl-C again if the first one landed before Python could act on it
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=3)
            break
        except subprocess.TimeoutExpired:
            continue
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    stopped = re.fullmatch(r"interrupted at step (\d+); rerun the same command to resume", last)
    assert stopped, last
    streamed = pd.read_csv(tmp_path / "metrics_stream.csv")  # partial results, as far as the run got
    assert streamed["step"].max() <= int(stopped.group(1)) and not (tmp_path / "metrics.csv").exists()
    resumed = _launch(LONG + ["--quiet"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), pd.read_csv(uninterrupted / "metrics.csv"))


@pytest.mark.slow
def test_resume_refuses_a_different_config(tmp_path, uninterrupted):
    proc = _launch(LONG + ["--config.worker.prior.strength=3.0"], uninterrupted)
    assert proc.returncode == 2 and "different config" in proc.stderr
