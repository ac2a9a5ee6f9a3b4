"""What a launch prints: progress lines with an honest step bound and ETA, the compile, where
the early stopper fired, and a summary that never averages over only the seeds that got there."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from configs import test as test_config
from jaxanno import experiment, outputs, results, runner


@pytest.fixture(scope="module")
def problem():
    cfg = test_config.get_config()
    cfg.sweep.budget = (45, 10**6)  # grid point 0 has 45 labels, grid point 1 plenty
    return experiment.prepare(cfg)  # loads and places; compiles nothing


def _chunk(step, cost, open_slots, top1=0.8, length=5):
    """Metrics of one chunk ending at `step`: (G, S) end values, constant over the chunk."""
    cost, open_slots = np.asarray(cost), np.asarray(open_slots)
    full = lambda v: np.repeat(np.asarray(v)[..., None], length, -1)  # noqa: E731
    return {
        "step": full(np.full(cost.shape, step)),
        "cost": full(cost),
        "cost_per_item": full(cost / 60),
        "open_slots": full(open_slots),
        "num_confident": full(np.full(cost.shape, 30)),
        "aggregate/all/top1": full(np.full(cost.shape, top1)),
    }


def test_steps_left_follow_each_lanes_labelling_rate_open_slots_and_budget(problem):
    progress = runner.Progress(problem, quiet=True)
    assert problem.max_steps == 19 and problem.static.labels_per_step == 12
    before = _chunk(5, [[10, 10], [10, 20]], [[90, 90], [90, 90]])
    # Labels per step over the last chunk: 6, 6 / 6, 2. Grid point 0: at most 45 - 40 = 5
    # labels left -> 1 step. Grid point 1: 60 open slots at 6 a step -> 10; 4 at 2 -> 2.
    last = _chunk(10, [[40, 40], [40, 30]], [[60, 60], [60, 4]])
    running = np.zeros((2, 2), bool)
    assert progress.steps_left(8, running, [before, last]) == 10
    assert progress.steps_left(12, running, [before, last]) == 19 - 12  # never past the step bound
    assert progress.steps_left(8, np.array([[False, False], [True, False]]), [before, last]) == 2
    assert progress.steps_left(8, np.ones((2, 2), bool), [before, last]) == 0
    stalled = _chunk(10, [[10, 10], [10, 20]], [[60, 60], [60, 4]])  # no label in the last chunk
    assert progress.steps_left(8, running, [before, stalled]) == 19 - 8


def test_a_lane_relabelling_confident_items_gets_only_the_step_bound(problem, monkeypatch):
    # Lane (1, 1) labels 6 items a step but its unconfident items have 4 free slots left: the
    # sampler is relabelling confident items (the simulator's threshold lowering), so the
    # slots do not tell when it ends; seen on a full-size run that printed "ETA about 3 s"
    # for 130 steps. Lane (0, 0) is as short of slots but its 45-label budget ends it first.
    progress = runner.Progress(problem, quiet=True)
    before = _chunk(5, [[10, 10], [10, 10]], [[90, 90], [90, 90]])
    last = _chunk(10, [[42, 40], [40, 40]], [[4, 60], [60, 4]])
    assert progress.in_tail(np.zeros((2, 2), bool), [before, last])
    assert not progress.in_tail(np.array([[False, False], [False, True]]), [before, last])  # that lane is done
    clock = iter([0.0, 0.0, 10.0, 10.0])  # start, then after each chunk: 5 steps in 10 s
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    progress = runner.Progress(problem, quiet=False, stream=stream)
    progress(5, np.zeros((2, 2), bool), [before])
    progress(10, np.zeros((2, 2), bool), [before, last])
    progress(10, np.array([[False, False], [False, True]]), [before, last])
    lines = stream.getvalue().splitlines()
    assert lines[1].endswith("| ETA: at most 18 s (relabelling confident items)"), lines[1]  # 19 - 10 steps
    assert lines[2].endswith("| ETA about 18 s"), lines[2]  # 60 slots at 6 a step: 10 steps, capped at 9


def test_progress_lines_name_the_compile_the_bound_the_eta_and_early_stops(problem):
    stream = io.StringIO()
    log = outputs.CompileLog()
    log[runner.PROGRAM] += 1
    log.seconds = 2.5
    progress = runner.Progress(problem, quiet=False, stream=stream, compiles=log)
    progress.compiling()
    first = _chunk(5, [[30, 30], [30, 30]], [[90, 90], [90, 90]])
    done = np.array([[True, False], [False, False]])
    reasons = np.array([[1, 0], [0, 0]])
    progress(5, done, [first], reasons, np.array([[-1, 4], [-1, -1]]))
    second = _chunk(10, [[45, 40], [40, 40]], [[0, 60], [60, 60]])
    progress(10, done, [first, second], reasons, np.array([[-1, 4], [8, 8]]))
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["compiling the simulation program...", "compiled in 2.5 s"]
    assert lines[2].startswith("step 5 (of at most 19) | labels/item 0.500 | top-1 80.0% | confident 50.0%")
    assert lines[2].endswith("| stopped 1/4 (all_confident_or_full 1) | 0 s elapsed | ETA: measuring")
    assert lines[3] == "early stopper fired at step 4 in 1/4 lanes (run continues: early_stop=False)"
    assert lines[4].startswith("step 10 (of at most 19)") and " | ETA about 0 s" in lines[4]  # steps took no time
    assert lines[5:] == ["early stopper fired at step 8 in 2/4 lanes (run continues: early_stop=False)"]


def test_a_program_compiled_earlier_is_said_so(problem):
    stream = io.StringIO()
    progress = runner.Progress(problem, quiet=False, stream=stream, compiles=outputs.CompileLog())
    progress(5, np.ones((2, 2), bool), [_chunk(5, np.full((2, 2), 30), np.zeros((2, 2)))])
    lines = stream.getvalue().splitlines()
    assert lines[0] == "simulation program ready (compiled earlier in this process)"
    assert lines[1].endswith("| no steps left")


def test_summary_says_how_many_seeds_reached_a_level_instead_of_averaging_those_that_did():
    rows = []
    for seed, end in ((0, 1.49), (1, 2.0)):
        for step, x in enumerate(np.linspace(0.0, end, 5)):
            rows.append({"grid": 0, "seed": seed, "step": step, "cost_per_item": x, "aggregate/all/top1": 0.5 + x / 5})
    table = results.summary_table(pd.DataFrame(rows), [{}])
    header, _, row = table.splitlines()
    cells = dict(zip(header.strip("|").split(" | "), row.strip("|").split(" | ")))
    assert cells["acc@1"].strip() == "70.0 ± 0.0"
    assert cells["acc@1.5"].strip() == "n/a (1/2 reached)" and cells["acc@2"].strip() == "n/a (1/2 reached)"
    assert cells["acc@2.5"].strip() == "n/a (0/2 reached)"
    assert cells["acc@end"].strip() == "84.9 ± 5.1"
