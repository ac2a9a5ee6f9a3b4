"""The workdir of a launch, through `runner.run_launch` in this process (the simulation program of
configs/test.py is compiled once for the module): the lock, Ctrl-C and resume, streamed metrics,
problem.json across resumes, --fresh, refused checkpoints, a full disk, and the progress lines."""

from __future__ import annotations

import collections
import errno
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from configs import test as test_config
from jaxanno import checkpoint, experiment, outputs, runner


def _cfg(**run):
    cfg = test_config.get_config()
    for key, value in run.items():
        cfg.run[key] = value
    return cfg


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted launch of configs/test.py (2 seeds, 2 chunks of 5 steps)."""
    out = tmp_path_factory.mktemp("finished")
    assert runner.run_launch(_cfg(), str(out), quiet=True, report=False) == 0
    return out


def _metrics(folder, name="metrics.csv"):
    return pd.read_csv(folder / name)


def _interrupt_at_call(monkeypatch, n):
    """Ctrl-C (KeyboardInterrupt) when `experiment.advance` is called for the n-th time."""
    calls = []
    advance = experiment.advance

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return advance(*args, **kwargs)

    monkeypatch.setattr(experiment, "advance", interrupted)


def test_a_locked_workdir_stops_a_second_launch_at_once(tmp_path, capsys, monkeypatch):
    def never(cfg):
        raise AssertionError("a locked workdir must stop the launch before it prepares anything")

    monkeypatch.setattr(experiment, "prepare", never)
    with outputs.workdir_lock(tmp_path):
        assert runner.run_launch(_cfg(), str(tmp_path), quiet=True) == runner.USAGE_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path}: in use by another launch")
    assert f"(pid {os.getpid()})" in err[0]
    assert not (tmp_path / "config.json").exists()


def test_the_lock_is_released_when_the_launch_ends_or_fails(tmp_path, finished, monkeypatch):
    with outputs.workdir_lock(finished):  # released by the finished launch
        pass

    def broken(*args, **kwargs):
        raise RuntimeError("broken simulation")

    monkeypatch.setattr(experiment, "run", broken)
    with pytest.raises(RuntimeError, match="broken simulation"):
        runner.run_launch(_cfg(), str(tmp_path), quiet=True, report=False)
    with outputs.workdir_lock(tmp_path):
        pass


def test_ctrl_c_checkpoints_the_last_chunk_and_a_resume_ends_as_an_uninterrupted_run(
    tmp_path, finished, capsys, monkeypatch
):
    cfg = _cfg(checkpoint_every=100)  # no periodic checkpoint: only the one saved on Ctrl-C
    _interrupt_at_call(monkeypatch, 2)
    assert runner.run_launch(cfg, str(tmp_path), report=False) == runner.INTERRUPTED
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "interrupted at step 5; rerun the same command to resume"
    assert "Traceback" not in err
    assert "compiling the simulation program..." in err and "step 5 (of at most 19)" in err
    whole = _metrics(finished)
    streamed = _metrics(tmp_path, runner.STREAM_FILE)  # partial results are readable
    assert len(streamed) == 2 * 5  # 2 seeds, one chunk of 5 steps
    pd.testing.assert_frame_equal(streamed, whole[whole.step <= streamed.step.max()].reset_index(drop=True))
    first = json.loads((tmp_path / "problem.json").read_text())
    assert [(r["outcome"], r["to_step"]) for r in first["runs"]] == [("interrupted", 5)]

    monkeypatch.undo()
    assert runner.run_launch(cfg, str(tmp_path), report=False) == 0
    assert "resuming" in capsys.readouterr().err
    pd.testing.assert_frame_equal(_metrics(tmp_path), whole)
    streamed = _metrics(tmp_path, runner.STREAM_FILE).sort_values(["grid", "seed", "step"], kind="stable")
    pd.testing.assert_frame_equal(streamed.reset_index(drop=True), whole)  # rows in chunk order
    pd.testing.assert_frame_equal(_metrics(tmp_path, "runs.csv"), _metrics(finished, "runs.csv"))
    info = json.loads((tmp_path / "problem.json").read_text())
    assert [(r["from_step"], r["to_step"], r["outcome"]) for r in info["runs"]] == [
        (0, 5, "interrupted"),
        (5, 10, "finished"),
    ]
    assert info["wall_seconds"] == first["wall_seconds"]  # the first run's record is kept


def test_fresh_removes_only_jaxannos_files_and_sweeps_stale_temporary_files(tmp_path, finished, capsys):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / checkpoint.FILE).write_bytes(b"\x00 not msgpack")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("old report")
    (tmp_path / "report" / "mine.txt").write_text("mine")
    stale = tmp_path / f".metrics.csv.tmp{_dead_pid()}"
    stale.write_text("partial")

    assert runner.run_launch(_cfg(), str(tmp_path), quiet=True, report=False) == runner.USAGE_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / checkpoint.FILE}: not a readable checkpoint")
    assert "--fresh" in err[0] and not stale.exists()

    assert runner.run_launch(_cfg(), str(tmp_path), quiet=True, report=False, fresh=True) == 0
    pd.testing.assert_frame_equal(_metrics(tmp_path), _metrics(finished))
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "report" / "mine.txt").exists()
    assert not (tmp_path / "report" / "report.md").exists()
    assert len(json.loads((tmp_path / "problem.json").read_text())["runs"]) == 1


def test_resume_refuses_a_checkpoint_of_changed_input_files(tmp_path, capsys):
    cfg = _cfg()
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"

    def write_data():
        labels = np.arange(72) % 3
        np.savez(data, features=rng.standard_normal((72, 8)).astype(np.float32), labels=labels,
                 wnids=np.array(cfg.wnids.split()))  # fmt: skip

    write_data()
    cfg.data.source, cfg.data.features = "npz", str(data)
    out = tmp_path / "run"
    assert runner.run_launch(cfg, str(out), quiet=True, report=False) == 0
    write_data()  # same name and size, other contents
    assert runner.run_launch(cfg, str(out), quiet=True, report=False) == runner.USAGE_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input file(s) changed since this checkpoint" in err[0]
    assert str(data) in err[0] and "--fresh" in err[0]
    assert runner.run_launch(cfg, str(out), quiet=True, report=False, fresh=True) == 0


def test_a_full_disk_stops_with_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)  # as a disk that fills up while a checkpoint is written
    assert runner.run_launch(_cfg(), str(tmp_path), quiet=True, report=False) == runner.USAGE_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / checkpoint.FILE}: No space left on device; free some space, then rerun the same command"
    ]
    assert not list(tmp_path.glob(".*.tmp*")) and not (tmp_path / checkpoint.FILE).exists()


def test_a_checkpoint_needs_free_space_for_its_size(tmp_path, monkeypatch):
    state = {"x": np.arange(12.0).reshape(4, 3)}
    checkpoint.save(tmp_path, state, [], 3, "print")
    before = (tmp_path / checkpoint.FILE).read_bytes()
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(outputs.WorkdirError, match=rf"{tmp_path}: not enough free space .* bytes needed, 100 free"):
        checkpoint.save(tmp_path, state, [], 4, "print")
    assert (tmp_path / checkpoint.FILE).read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp*"))


@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace"])
def test_atomic_writes_remove_their_temporary_file_on_any_failure(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "a.csv"
    target.write_text("previous")
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if fail_at == "write":  # the disk fills up half way through: the interrupt case is the same path
        real_open = open

        class Full:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                raise error

        monkeypatch.setattr("builtins.open", lambda path, mode="r", *a, **k: Full(real_open(path, mode, *a, **k)))
    else:

        def fail(*args):
            raise error

        monkeypatch.setattr(os, fail_at, fail)
    with pytest.raises(OSError) as caught:
        outputs.atomic_write_bytes(target, b"new contents", fsync=True)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_stale_temporary_files_are_those_of_dead_processes_or_over_an_hour_old(tmp_path):
    (tmp_path / "report").mkdir()
    dead = tmp_path / "report" / f".a.svg.tmp{_dead_pid()}"
    old = tmp_path / f".b.csv.tmp{os.getpid()}"
    live = tmp_path / f".c.csv.tmp{os.getpid()}"
    mine = tmp_path / "d.tmp1"  # not a name jaxanno writes
    for path in (dead, old, live, mine):
        path.write_text("x")
    os.utime(old, (0, os.path.getmtime(old) - 2 * outputs.STALE_SECONDS))
    assert sorted(outputs.sweep_stale_temp(tmp_path)) == sorted([dead, old])
    assert live.exists() and mine.exists()


def test_a_workdir_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert runner.run_launch(_cfg(), str(path), quiet=True) == runner.USAGE_ERROR
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {path}: exists and is not a folder; choose another --workdir"
    ]


def test_a_read_only_workdir_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(outputs.LOCK_FILE):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert runner.run_launch(_cfg(), str(tmp_path), quiet=True) == runner.USAGE_ERROR
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path}: cannot use this folder as a workdir (Read-only file system); choose another --workdir"
    ]


def test_an_empty_workdir_is_refused_in_one_line(capsys):
    assert runner.run_launch(_cfg(), " ", quiet=True) == runner.USAGE_ERROR
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: workdir: empty; give an output folder, e.g. --workdir=runs/my-run"
    ]
