"""Running the grid's launches through `runner.run_launch`, one workdir per run, resumably.

Layout under the output folder::

  runs/<run name>/          a launch's workdir (config.json, metrics.csv, runs.csv, checkpoint, ...)
  runs/<run name>/done.json written after the launch finished: the run's settings, exit code,
                            wall and CPU seconds; a rerun skips a run that has it
  runs/<run name>/launch.log  what the launch printed on stdout (its summary table)

A run that was killed resumes from its last checkpoint on the next invocation (the runner's
own resume); ``fresh`` starts every selected run over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from jaxanno import checkpoint, errors, outputs, runner
from jaxanno import config as config_lib
from jaxanno.reproduce.grid import RunSpec

DONE_FILE = "done.json"
LOG_FILE = "launch.log"


@dataclasses.dataclass
class Outcome:
    spec: RunSpec
    workdir: pathlib.Path
    status: str  # 'ran', 'skipped' (finished earlier) or 'numerical_error'
    wall_s: float = 0.0
    cpu_s: float = 0.0


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    minutes, secs = divmod(round(seconds), 60)
    if not minutes:
        return f"{secs} s"
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def workdir(out: pathlib.Path, spec: RunSpec) -> pathlib.Path:
    return out / "runs" / spec.name


def check_specs(specs: Sequence[RunSpec]) -> None:
    """Resolve and validate every run's config (nothing compiles); raises ConfigError."""
    for spec in specs:
        try:
            config_lib.validate(config_lib.resolve(spec.config()))
        except config_lib.ConfigError as err:
            raise errors.UserError(f"run {spec.name}: {err}") from None


def finished(folder: pathlib.Path, spec: RunSpec) -> dict[str, Any] | None:
    """done.json of a run with exactly these settings, or None."""
    try:
        done = json.loads((folder / DONE_FILE).read_text())
    except (OSError, ValueError):
        return None
    same = done.get("spec") == json.loads(json.dumps(spec.key(), default=str))
    return done if same and (folder / "metrics.csv").is_file() else None


def describe(spec: RunSpec) -> str:
    """'imagenet_split_1 efficient_annotation (worker.n=10; sweep prior_strength=(10, 30)), 3 seeds'."""
    extra = [f"{k}={v}" for k, v in spec.overrides]
    extra += [f"sweep {k}={tuple(v)}" for k, v in spec.sweep]
    sim = "" if spec.simulation == "amt_structured_noise" else f" {spec.simulation}"
    return (
        f"{spec.experiment} {spec.method}{sim}"
        + (f" ({'; '.join(extra)})" if extra else "")
        + f", {spec.seeds} seed(s)"
    )


def _launch(spec: RunSpec, folder: pathlib.Path, quiet: bool, fresh: bool) -> int:
    """One launch; its stdout (the summary) goes to launch.log, its progress lines to stderr."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOG_FILE, "a") as log, contextlib.redirect_stdout(log):
        return runner.run_launch(spec.config(), str(folder), quiet=quiet, report=False, fresh=fresh)


def run_one(spec: RunSpec, out: pathlib.Path, *, quiet: bool = False, fresh: bool = False) -> Outcome:
    """Run (or resume, or skip) one launch; raises on a usage error or Ctrl-C."""
    folder = workdir(out, spec)
    if fresh:
        (folder / DONE_FILE).unlink(missing_ok=True)
    done = finished(folder, spec)
    if done is not None:
        return Outcome(spec, folder, "skipped", done.get("wall_s", 0.0), done.get("cpu_s", 0.0))
    t0, c0 = time.perf_counter(), time.process_time()
    code = _launch(spec, folder, quiet, fresh)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if code == runner.INTERRUPTED:
        raise KeyboardInterrupt
    if code not in (0, runner.NUMERICAL_ERROR):
        raise errors.UserError(f"run {spec.name}: the launch failed (exit {code}; see the error above)")
    status = "ran" if code == 0 else "numerical_error"
    record = {"spec": spec.key(), "exit_code": code, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
    outputs.atomic_write_json(folder / DONE_FILE, json.loads(json.dumps(record, default=str)))
    return Outcome(spec, folder, status, wall, cpu)


def collect(specs: Sequence[RunSpec], out: pathlib.Path) -> list[Outcome]:
    """The runs that finished earlier (nothing runs): what ``--report_only`` reports on."""
    found = []
    for spec in specs:
        done = finished(workdir(out, spec), spec)
        if done is not None:
            found.append(Outcome(spec, workdir(out, spec), "skipped", done.get("wall_s", 0.0), done.get("cpu_s", 0.0)))
    return found


def run_all(
    specs: Sequence[RunSpec], out: pathlib.Path, *, quiet: bool = False, fresh: bool = False, say: Callable = None
) -> list[Outcome]:
    """Every run in order, with a progress line before and after each."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    outcomes, t0 = [], time.perf_counter()
    for i, spec in enumerate(specs):
        folder = workdir(out, spec)
        state = "resuming" if (folder / checkpoint.FILE).exists() and not fresh else "starting"
        if finished(folder, spec) is None or fresh:
            say(f"[{i + 1}/{len(specs)}] {state} {describe(spec)} -> {folder}")
        result = run_one(spec, out, quiet=quiet, fresh=fresh)
        outcomes.append(result)
        elapsed = duration(time.perf_counter() - t0)
        if result.status == "skipped":
            say(f"[{i + 1}/{len(specs)}] {spec.name}: finished earlier, skipped")
        else:
            say(f"[{i + 1}/{len(specs)}] {spec.name}: {result.status} in {result.wall_s:.0f} s "
                f"(CPU {result.cpu_s:.0f} s); {elapsed} since start")  # fmt: skip
    return outcomes
