"""A launch end to end, once the command line is parsed: prepare, run with progress and
checkpoints, write the results. Free of absl, so it can be called (and tested) directly:
``runner.run_launch(cfg, workdir)`` is what ``launch.py`` calls.

Workdir layout:
  .lock               held (an OS file lock) while a launch runs here; a second launch on the
                      same workdir stops at once, naming the holder's pid
  config.json         the resolved config (every preset filled in)
  problem.json        sizes, grid points, seeds, data description, device, versions, compile
                      counts and wall time of the first run; ``runs`` lists that run and every
                      resume (steps, outcome, devices, compilations, wall time)
  metrics_stream.csv  the rows of metrics.csv so far, appended as each chunk finishes (readable
                      during a run, survives a kill; rewritten from the checkpoint on resume);
                      chunk by chunk, so sorted by (grid, seed, step) it equals metrics.csv
  metrics.csv         one row per (grid point, seed, step): settings beside metrics
  runs.csv            one row per (grid point, seed): stop reason, end point, early-stop point
  summary.md          accuracy at a few labels-per-item levels, mean +- std over seeds, or
                      ``n/a (k/S reached)`` where not every seed got there
  checkpoint.msgpack  written every `run.checkpoint_every` steps, on Ctrl-C and at the end
  report/             plots and x@target tables (see `jaxanno.report`)

Resume: a launch whose workdir holds a checkpoint of the same config, seeds and input-file
contents continues from it, on any number of devices, and ends with exactly the results of
an uninterrupted run. A checkpoint of a different run, or of data files that changed since,
is refused with a message naming the reason (the changed files); ``fresh=True`` (``--fresh``)
removes jaxanno's own files listed above and starts over. Temporary files left by killed
writes are removed at start. Ctrl-C saves the last finished chunk and exits with 130.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import errno
import json
import pathlib
import sys
import time
from typing import Any

import jax
import numpy as np
from ml_collections import config_dict

from jaxanno import checkpoint, compile_cache, distributed, experiment, outputs, results, types
from jaxanno import config as config_lib
from jaxanno import data as data_lib
from jaxanno.data import files as data_files

PROGRAM = "jit(_advance_impl)"  # name under which the simulation program is compiled
STREAM_FILE = "metrics_stream.csv"
OWN_FILES = ("config.json", "problem.json", STREAM_FILE, "metrics.csv", "runs.csv", "summary.md", checkpoint.FILE)
USAGE_ERROR = 2  # exit code: a bad setting, an unusable workdir or a checkpoint that cannot be resumed
INTERRUPTED = 130  # exit code after Ctrl-C (128 + SIGINT)
NUMERICAL_ERROR = 3  # exit code: a lane stopped with numerical_error (its results are written but unusable)
_USER_ERRORS = (config_lib.ConfigError, checkpoint.CheckpointError, data_lib.DataError, OSError)


def _duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    minutes, secs = divmod(round(seconds), 60)
    if not minutes:
        return f"{secs} s"
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Progress lines on stderr: the compile, one line per chunk, and the early stopper's firings.

    A chunk's line: ``step i (of at most N) | labels/item | top-1 | confident | stopped k/L
    (stop reasons) | elapsed | ETA about T``. N (`Problem.max_steps`) is a bound; runs usually
    stop earlier. The ETA is the time per step measured over the chunks after the first (which
    includes tracing and compiling) times `steps_left`, an estimate: items turning confident
    end runs sooner. In a lane's tail (`in_tail`: its unconfident items have fewer free slots
    than one step's labels) the sampler lowers its risk threshold and relabels confident items,
    some of which turn unconfident again, so the end cannot be estimated from the slots left:
    the line then gives only the bound, "ETA: at most T".
    """

    def __init__(self, problem: experiment.Problem, quiet: bool, stream=None, *, compiles=None, fired=None):
        """`stream`: default sys.stderr; `compiles`: the run's `outputs.CompileLog`; `fired`: (G, S)
        early-stop steps (-1: not fired) already reported, e.g. by the run a resume continues."""
        self.problem, self.quiet, self.stream, self.compiles = problem, quiet, stream or sys.stderr, compiles
        shape = (problem.num_grid, len(problem.seeds))
        self.announced = np.zeros(shape, bool) if fired is None else np.asarray(fired) >= 0
        self.budget = np.asarray(experiment.sweep_grid(problem.cfg, host=True)[0].budget, np.int64)[:, None]
        self.t_start = time.perf_counter()
        self.t_first: float | None = None
        self.step_first = 0
        self.seconds_per_step = 0.0

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def compiling(self) -> None:
        """Called before the first chunk, which compiles the program."""
        self.say("compiling the simulation program...")

    def __call__(self, step: int, done: np.ndarray, chunks: list[dict[str, np.ndarray]], stop_reason=None,
                 fired_step=None) -> None:  # fmt: skip
        """After a chunk: `done`, `stop_reason`, `fired_step` (G, S) per lane; `chunks` the metrics so far."""
        if self.quiet:
            return
        now = time.perf_counter()
        if self.t_first is None:  # the first chunk includes tracing and compiling: no rate yet
            self._report_compile()
            self.t_first, self.step_first = now, step
        elif step > self.step_first:
            self.seconds_per_step = (now - self.t_first) / (step - self.step_first)
        self.say(self._line(step, np.asarray(done, bool), chunks, stop_reason, now))
        if fired_step is not None:
            self._report_early_stops(np.asarray(fired_step))

    def _report_compile(self) -> None:
        """Say how the program was obtained and how long XLA took."""
        log = self.compiles
        if log is None:
            return
        if not sum(log.values()):
            self.say("simulation program ready (compiled earlier in this process)")
            return
        source = " (loaded from the compilation cache)" if log.compiled() == 0 else ""
        self.say(f"compiled in {log.seconds:.1f} s{source}")

    def steps_left(self, step: int, done: np.ndarray, chunks: list[dict[str, np.ndarray]]) -> int:
        """Steps the slowest running lane still needs, at most the step bound.

        Per running lane: labels left (free slots of unconfident items, at most the budget
        left) over its labels per step in the last chunk; the bound when it collected none.
        """
        bound = max(self.problem.max_steps - step, 0)
        running = ~np.asarray(done, bool)
        if not running.any() or bound == 0:
            return 0
        cost, rate = self._labelling_rate(chunks)
        left = np.minimum(chunks[-1]["open_slots"][..., -1], np.maximum(self.budget - cost, 0))
        need = np.where(rate > 0, np.ceil(left / np.where(rate > 0, rate, 1.0)), bound)
        return int(min(need[running].max(), bound))

    def in_tail(self, done: np.ndarray, chunks: list[dict[str, np.ndarray]]) -> bool:
        """A running lane's unconfident items have fewer free slots than it labels per step
        (and its budget does not end it first): the sampler is relabelling confident items."""
        cost, rate = self._labelling_rate(chunks)
        open_slots = chunks[-1]["open_slots"][..., -1]
        tail = (open_slots < rate) & (self.budget - cost > open_slots)
        return bool((tail & ~np.asarray(done, bool)).any())

    @staticmethod
    def _labelling_rate(chunks: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """(G, S) labels so far and labels per step over the last chunk."""
        last = chunks[-1]
        cost = last["cost"][..., -1].astype(np.int64)
        before = chunks[-2]["cost"][..., -1].astype(np.int64) if len(chunks) > 1 else np.zeros_like(cost)
        return cost, (cost - before) / last["cost"].shape[-1]

    def _line(self, step, done, chunks, stop_reason, now) -> str:
        last = {k: v[..., -1] for k, v in chunks[-1].items()}
        stopped = f"stopped {int(done.sum())}/{done.size}"
        if stop_reason is not None and done.any():
            names = types.STOP_REASONS
            reasons = collections.Counter(names[r] if r < len(names) else str(r) for r in np.asarray(stop_reason)[done])
            stopped += " (" + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ")"
        left = self.steps_left(step, done, chunks)
        if not left:
            eta = "no steps left"
        elif not self.seconds_per_step:
            eta = "ETA: measuring"
        elif self.in_tail(done, chunks):
            bound = max(self.problem.max_steps - step, 0)
            eta = f"ETA: at most {_duration(bound * self.seconds_per_step)} (relabelling confident items)"
        else:
            eta = f"ETA about {_duration(left * self.seconds_per_step)}"
        return (
            f"step {step} (of at most {self.problem.max_steps}) | labels/item {last['cost_per_item'].mean():.3f}"
            f" | top-1 {100 * last['aggregate/all/top1'].mean():.1f}%"
            f" | confident {last['num_confident'].mean() / self.problem.static.num_items:.1%}"
            f" | {stopped} | {_duration(now - self.t_start)} elapsed | {eta}"
        )

    def _report_early_stops(self, fired_step: np.ndarray) -> None:
        new = (fired_step >= 0) & ~self.announced
        self.announced |= new
        ends = (
            "those lanes stop: early_stop=True" if self.problem.static.early_stop else "run continues: early_stop=False"
        )
        for s in np.unique(fired_step[new]):
            k = int((new & (fired_step == s)).sum())
            self.say(f"early stopper fired at step {s} in {k}/{fired_step.size} lanes ({ends})")


@dataclasses.dataclass
class _Run:
    """One invocation in a workdir: its checkpoint identity and how far it got."""

    out: pathlib.Path
    problem: experiment.Problem | None = None
    stamp: str = ""
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    start: int = 0  # the step it started (or resumed) from
    step: int = 0  # the last finished chunk
    saved: int = 0  # the step the checkpoint holds
    compiles: outputs.CompileLog = dataclasses.field(default_factory=outputs.CompileLog)
    t0: float = 0.0
    started: str = ""


def _static_fields(static: types.Static) -> dict[str, Any]:
    """`Static` as a JSON-friendly dict (the learner module by its repr)."""
    out = dataclasses.asdict(static)
    if static.learner is not None:
        out["learner"]["model"] = repr(static.learner.model)
    return out


def _problem_info(problem: experiment.Problem, compiles: dict[str, int], wall: float) -> dict[str, Any]:
    fs = problem.features
    return {
        "data": fs.description,
        "num_items": fs.num_items,
        "num_prototypes": fs.num_prototypes,
        "num_classes": fs.num_classes,
        "class_names": fs.class_names,
        "feature_dim": int(fs.features.shape[1]),
        "static": _static_fields(problem.static),
        "grid_points": problem.points,
        "seeds": problem.seeds,
        "max_steps": problem.max_steps,
        "environment": outputs.environment(),
        "processes": jax.process_count(),
        "devices": problem.mesh.size,
        "compilations": dict(compiles),
        "wall_seconds": round(wall, 2),
    }


def _record_run(run: _Run, outcome: str) -> dict[str, Any]:
    """Append this invocation to problem.json (a new file when it belongs to another run)."""
    wall = time.perf_counter() - run.t0
    compiles = dict(run.compiles)
    entry = {"started": run.started, "from_step": run.start, "to_step": run.step, "outcome": outcome,
             "devices": run.problem.mesh.size, "processes": jax.process_count(), "compilations": compiles,
             "wall_seconds": round(wall, 2)}  # fmt: skip
    path = run.out / "problem.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict) or info.get("fingerprint") != run.stamp or not isinstance(info.get("runs"), list):
        info = {**_problem_info(run.problem, compiles, wall), "fingerprint": run.stamp, "runs": []}
    info["runs"].append(entry)
    outputs.atomic_write_json(path, info)
    return entry


def _say(quiet: bool, text: str) -> None:
    if not quiet and distributed.is_main():
        print(text, file=sys.stderr)


def _input_digests(cfg: config_dict.ConfigDict) -> dict[str, str]:
    """{path: content digest} of every data file the config reads (none for stand-in data)."""
    return {p: data_files.content_fingerprint([p]) for p in data_files.input_paths(experiment.data_spec(cfg)) if p}


def _start_over(out: pathlib.Path) -> None:
    """Remove jaxanno's own files of an earlier run (`OWN_FILES`, the report's files); nothing else."""
    from jaxanno import report as report_lib

    for name in OWN_FILES:
        (out / name).unlink(missing_ok=True)
    folder = out / "report"
    if folder.is_dir():
        for name in report_lib.REPORT_FILES:
            (folder / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when nothing else is left in it


def _load_checkpoint(run: _Run):
    """(lane-sharded state, metric chunks, step) from the workdir's checkpoint, or None."""
    problem = run.problem
    if not (run.out / checkpoint.FILE).exists():
        return None
    template = types.zeros_like_shapes(experiment.state_shapes(problem), host=True)
    found = checkpoint.load(run.out, template, run.stamp, inputs=run.inputs, lanes=problem.num_lanes)
    if found is None:
        return None
    host, flat, start = found
    return distributed.put(host, problem.mesh, sharded=True), [flat], start


def _restart_stream(run: _Run, chunks: list[dict[str, np.ndarray]]) -> None:
    """metrics_stream.csv holding exactly the rows of `chunks` (none for a fresh start)."""
    path = run.out / STREAM_FILE
    if chunks:
        outputs.atomic_write_csv(path, results.metrics_frame(chunks, run.problem.seeds, run.problem.points))
    else:
        path.unlink(missing_ok=True)


def _save_latest(run: _Run, latest: dict[str, Any], save) -> None:
    """On Ctrl-C: checkpoint the last finished chunk, unless the checkpoint holds it already, its
    buffers went to the next chunk (donated on accelerators), or other processes cannot join."""
    state = latest["state"]
    if state is None or run.step <= run.saved or jax.process_count() > 1:
        return
    if any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state)):
        return
    with contextlib.suppress(Exception):  # the previous checkpoint stays; the message names its step
        save(run.step, state, latest["chunks"])


def _simulate(run: _Run, resume, quiet: bool):
    """Run (or finish) every lane with progress lines, streamed metrics and checkpoints.

    Returns:
      (final lane-sharded state, metric chunks).
    """
    problem, out, main = run.problem, run.out, distributed.is_main()
    state, chunks, start = resume if resume is not None else (None, [], 0)
    run.start = run.step = run.saved = start
    if resume is not None:
        _say(quiet, f"resuming {out} from step {start}")
    if main:
        _restart_stream(run, chunks)
    every = max(problem.cfg.run.checkpoint_every, 1)
    latest: dict[str, Any] = {"state": state, "chunks": chunks}
    fired = problem.by_grid_seed(distributed.gather(state.stopper.fired_step)) if resume is not None else None

    def save(step, state, chunks):
        host = distributed.gather(state)  # a collective: every process takes part
        if main:
            checkpoint.save(out, host, chunks, step, run.stamp, inputs=run.inputs)
        run.saved = step

    with outputs.count_compiles() as compiles:
        run.compiles = compiles
        progress = Progress(problem, quiet or not main, compiles=compiles, fired=fired)

        def on_chunk(step, state, chunks, done):
            run.step = step
            latest.update(state=state, chunks=list(chunks))
            if main:
                outputs.append_csv(out / STREAM_FILE, results.metrics_frame(chunks[-1:], problem.seeds, problem.points))
            lanes = problem.by_grid_seed(distributed.gather((state.stop_reason, state.stopper.fired_step)))
            progress(step, done, chunks, *lanes)
            if step - run.saved >= every:
                save(step, state, chunks)

        try:
            finished = resume is not None and bool(np.all(problem.by_grid_seed(distributed.gather(state.done))))
            if not finished:
                progress.compiling()
                result = experiment.run(problem, state=state, start_step=start, metrics=chunks, on_chunk=on_chunk)
                state, chunks, run.step = result.state, result.metrics, result.steps_run
            save(run.step, state, chunks)
        except KeyboardInterrupt:
            _save_latest(run, latest, save)
            raise
    return state, chunks


def _write_results(run: _Run, frame, runs, report: bool) -> None:
    """metrics.csv, runs.csv, summary.md, problem.json and the report; prints the summary."""
    problem, out = run.problem, run.out
    outputs.atomic_write_csv(out / "metrics.csv", frame)
    outputs.atomic_write_csv(out / "runs.csv", runs)
    summary = results.summary_table(frame, problem.points)
    outputs.atomic_write_text(out / "summary.md", summary + "\n")
    entry = _record_run(run, "finished")
    if report:
        from jaxanno import report as report_lib

        try:
            report_lib.write_report([out], out / "report")
        except report_lib.ReportError as err:  # results are safe; only the report is missing
            print(f"warning: no report written: {err}", file=sys.stderr)
    print(summary)
    print(
        f"\n{problem.num_grid} grid point(s) x {len(problem.seeds)} seed(s) on {problem.mesh.size} device(s); "
        f"{compile_cache.compile_summary(run.compiles, PROGRAM)}; "
        f"{entry['wall_seconds']:.1f}s; results in {out}"
    )


def _launch(run: _Run, quiet: bool, report: bool, fresh: bool) -> int:
    """Everything after `experiment.prepare`, with the workdir locked (by process 0)."""
    problem, out, main = run.problem, run.out, distributed.is_main()
    resolved = problem.cfg.to_dict()
    run.inputs = _input_digests(problem.cfg)
    run.stamp = checkpoint.fingerprint(resolved, problem.seeds, run.inputs)
    if main:
        outputs.sweep_stale_temp(out)
        if fresh:
            _start_over(out)
    distributed.barrier("jaxanno-workdir-ready")  # fresh: no process reads a checkpoint being removed
    resume = _load_checkpoint(run)
    if main:
        outputs.atomic_write_json(out / "config.json", resolved)
    run.t0, run.started = time.perf_counter(), datetime.datetime.now().isoformat(timespec="seconds")
    state, chunks = _simulate(run, resume, quiet)
    frame = results.metrics_frame([checkpoint.merge_chunks(chunks)], problem.seeds, problem.points)
    final = problem.by_grid_seed(distributed.gather(state))  # a collective: every process takes part
    runs = results.runs_frame(final, frame, problem.seeds, problem.points, problem.static.num_items)
    if main:
        _write_results(run, frame, runs, report)
    failure = results.numerical_error_message(runs)  # results are written, but not usable
    if failure and main:
        print(f"error: {failure}", file=sys.stderr)
    return NUMERICAL_ERROR if failure else 0


def _describe(err: Exception) -> str:
    """One line for a user error: the file or setting, what was found, what to do."""
    if isinstance(err, OSError) and not isinstance(err, outputs.WorkdirError) and err.filename:
        todo = "free some space" if err.errno == errno.ENOSPC else "check the path and its permissions"
        return f"{err.filename}: {err.strerror or err}; {todo}, then rerun the same command"
    return str(err)


def _interrupted_line(run: _Run) -> str:
    if run.problem is None:
        return "interrupted before the run started; rerun the same command to start it"
    line = f"interrupted at step {run.step}; rerun the same command to resume"
    return line if run.saved >= run.step else f"{line} (from step {run.saved}, the last checkpoint)"


def run_launch(
    cfg: config_dict.ConfigDict, workdir: str, *, quiet: bool = False, report: bool = True, fresh: bool = False
) -> int:
    """Run a launch end to end and write its workdir; returns a process exit code.

    0 when done; `NUMERICAL_ERROR` (3) when a lane's beliefs became non-finite (it stopped
    with ``numerical_error``; results are written, the message names the likely settings);
    `USAGE_ERROR` (2) after one line ``error: ...`` on stderr for a bad
    setting, a busy or unusable workdir, or a checkpoint that cannot be resumed (bad
    settings are reported before anything is compiled or written); `INTERRUPTED` (130)
    after Ctrl-C, with the last finished chunk checkpointed. In a multi-process run every
    process computes its lanes and process 0 locks the workdir and writes the results.

    Args:
      fresh: remove this workdir's earlier results and checkpoint (jaxanno's own files
        only) and start over instead of resuming.
    """
    if not str(workdir).strip():
        print("error: workdir: empty; give an output folder, e.g. --workdir=runs/my-run", file=sys.stderr)
        return USAGE_ERROR
    run = _Run(out=pathlib.Path(workdir))
    main = distributed.is_main()
    try:
        with contextlib.ExitStack() as held:
            locked = main and run.out.exists()
            if locked:  # a busy workdir stops the launch before any work
                held.enter_context(outputs.workdir_lock(outputs.ensure_workdir(run.out)))
            run.problem = experiment.prepare(cfg)
            if main and not locked:
                held.enter_context(outputs.workdir_lock(outputs.ensure_workdir(run.out)))
            try:
                return _launch(run, quiet, report, fresh)
            except KeyboardInterrupt:
                if main and run.started:  # the simulation had begun
                    with contextlib.suppress(OSError):
                        _record_run(run, "interrupted")
                raise
    except _USER_ERRORS as err:
        print(f"error: {_describe(err)}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(_interrupted_line(run), file=sys.stderr)
        return INTERRUPTED
