"""A launch end to end, once the command line is parsed: prepare, run with progress and
checkpoints, write the results. Free of absl, so it can be called (and tested) directly:
``runner.run_launch(cfg, workdir)`` is what ``launch.py`` calls.

Workdir layout:
  config.json      the resolved config (every preset filled in)
  problem.json     sizes, grid points, seeds, data description, device and versions
  metrics.csv      one row per (grid point, seed, step): settings beside metrics
  runs.csv         one row per (grid point, seed): stop reason, end point, early-stop point
  summary.md       accuracy at a few labels-per-item levels, mean +- std over seeds
  checkpoint.msgpack  written every `run.checkpoint_every` steps; a relaunch resumes
  report/          plots and x@target tables (see `jaxanno.report`)
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Any

import jax
import numpy as np
from ml_collections import config_dict

from jaxanno import checkpoint, compile_cache, distributed, experiment, outputs, results, types
from jaxanno import config as config_lib

PROGRAM = "jit(_advance_impl)"  # name under which the simulation program is compiled


class Progress:
    """One line per chunk: step, labels per item, accuracy, confident fraction, ETA."""

    def __init__(self, problem: experiment.Problem, quiet: bool, stream=sys.stderr):
        self.problem, self.quiet, self.stream = problem, quiet, stream
        self.t_start = time.perf_counter()
        self.t_first: float | None = None
        self.step_first = 0

    def __call__(self, step: int, done: np.ndarray, chunks: list[dict[str, np.ndarray]]) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        last = {k: v[..., -1] for k, v in chunks[-1].items()}
        n = self.problem.static.num_items
        per_step = self.problem.static.labels_per_step
        if self.t_first is None:  # the first chunk includes compilation
            self.t_first, self.step_first = now, step
            eta = "?"
        else:
            rate = (now - self.t_first) / max(step - self.step_first, 1)
            left = int(np.max(np.ceil(last["open_slots"] / per_step)))
            left = min(left, self.problem.max_steps - step)
            eta = f"<= {rate * left:.0f}s" if left > 0 else "0s"
        line = (
            f"step {step:4d}/{self.problem.max_steps} | labels/item {last['cost_per_item'].mean():.3f}"
            f" | top-1 {100 * last['aggregate/all/top1'].mean():5.1f}%"
            f" | confident {last['num_confident'].mean() / n:6.1%}"
            f" | stopped {int(done.sum())}/{done.size} | {now - self.t_start:.0f}s, ETA {eta}"
        )
        print(line, file=self.stream, flush=True)


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


def _say(quiet: bool, text: str) -> None:
    if not quiet and distributed.is_main():
        print(text, file=sys.stderr)


def _load_checkpoint(problem: experiment.Problem, out: pathlib.Path, stamp: str):
    """(lane-sharded state, metric chunks, step) from the workdir's checkpoint, or None."""
    template = types.zeros_like_shapes(experiment.state_shapes(problem), host=True)
    found = checkpoint.load(out, template, stamp) if out.exists() else None
    if found is None:
        return None
    host, flat, start = found
    return distributed.put(host, problem.mesh, sharded=True), [flat], start


def _simulate(problem: experiment.Problem, out: pathlib.Path, stamp: str, resume, quiet: bool):
    """Run (or finish) every lane with progress lines and checkpoints.

    Returns:
      (final lane-sharded state, metric chunks, the compilations while simulating).
    """
    main = distributed.is_main()
    state, chunks, start = resume if resume is not None else (None, [], 0)
    if resume is not None:
        _say(quiet, f"resuming {out} from step {start}")
    progress = Progress(problem, quiet or not main)
    every = max(problem.cfg.run.checkpoint_every, 1)
    last_saved = [start]

    def save(step, state, chunks):
        host = distributed.gather(state)  # a collective: every process takes part
        if main:
            checkpoint.save(out, host, chunks, step, stamp)
        last_saved[0] = step

    def on_chunk(step, state, chunks, done):
        progress(step, done, chunks)
        if step - last_saved[0] >= every:
            save(step, state, chunks)

    with outputs.count_compiles() as compiles:
        finished = resume is not None and bool(np.all(problem.by_grid_seed(distributed.gather(state.done))))
        step = start
        if not finished:
            result = experiment.run(problem, state=state, start_step=start, metrics=chunks, on_chunk=on_chunk)
            state, chunks, step = result.state, result.metrics, result.steps_run
    save(step, state, chunks)
    return state, chunks, compiles


def _write_results(problem, out, frame, runs, compiles, wall: float, report: bool) -> None:
    """metrics.csv, runs.csv, summary.md, problem.json and the report; prints the summary."""
    outputs.atomic_write_csv(out / "metrics.csv", frame)
    outputs.atomic_write_csv(out / "runs.csv", runs)
    summary = results.summary_table(frame, problem.points)
    outputs.atomic_write_text(out / "summary.md", summary + "\n")
    info = _problem_info(problem, compiles, wall)
    outputs.atomic_write_json(out / "problem.json", info)
    if report:
        from jaxanno import report as report_lib

        try:
            report_lib.write_report([out], out / "report")
        except report_lib.ReportError as err:  # results are safe; only the report is missing
            print(f"warning: no report written: {err}", file=sys.stderr)
    print(summary)
    print(
        f"\n{problem.num_grid} grid point(s) x {len(problem.seeds)} seed(s) on {problem.mesh.size} device(s); "
        f"{compile_cache.compile_summary(compiles, PROGRAM)}; "
        f"{info['wall_seconds']:.1f}s; results in {out}"
    )


def run_launch(cfg: config_dict.ConfigDict, workdir: str, quiet: bool = False, report: bool = True) -> int:
    """Run a launch end to end and write its workdir; returns a process exit code.

    Bad settings are reported before anything compiles or is written (exit 2). A run whose
    beliefs became non-finite stops with ``numerical_error``; the results are written and
    the exit code is 3. In a multi-process run every process computes its lanes and
    process 0 writes the results.
    """
    try:
        problem = experiment.prepare(cfg)
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    resolved = problem.cfg.to_dict()
    stamp = checkpoint.fingerprint(resolved, problem.seeds)
    out = pathlib.Path(workdir)
    try:
        resume = _load_checkpoint(problem, out, stamp)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        outputs.atomic_write_json(out / "config.json", resolved)
    t0 = time.perf_counter()
    state, chunks, compiles = _simulate(problem, out, stamp, resume, quiet)
    frame = results.metrics_frame([checkpoint.merge_chunks(chunks)], problem.seeds, problem.points)
    final = problem.by_grid_seed(distributed.gather(state))  # a collective: every process takes part
    runs = results.runs_frame(final, frame, problem.seeds, problem.points, problem.static.num_items)
    if distributed.is_main():
        _write_results(problem, out, frame, runs, compiles, time.perf_counter() - t0, report)
    failure = results.numerical_error_message(runs)  # results are written, but not usable
    if failure and distributed.is_main():
        print(f"error: {failure}", file=sys.stderr)
    return 3 if failure else 0
