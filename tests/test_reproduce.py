"""The reproduction harness: paper numbers, grid, interpolation, claims, command line, one tiny run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxanno import cli
from jaxanno.reproduce import claims, command, compare, execute, grid, paper, plan, write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tiny problem of configs/test.py, as overrides of a run (3 Vertebrate classes, 60 items).
TINY = (
    ("wnids", "n02138441 n02326432 n01558993"),
    ("n_data_per_class", 20),
    ("n_prototype_per_class", 4),
    ("data.feature_dim", 8),
    ("worker.n", 6),
    ("online.hit_size", 6),
    ("online.n_hits_per_step", 2),
    ("learner.hidden_size", 8),
    ("learner.batch_size", 16),
    ("learner.max_epochs", 20),
    ("learner.eval_every", 5),
    ("run.chunk_steps", 5),
    ("run.checkpoint_every", 5),
)


# --- the packaged paper numbers, against values typed from the paper ---------------------------


@pytest.mark.parametrize(
    "figure, panel, curve, metric, expected",
    [
        ("4", "top1", "ours", "x@80", 0.355),
        ("4", "top1", "lean_star", "x@80", 0.904),
        ("4", "top1", "lean", "x@80", 0.992),
        ("4", "top1", "online_ds", "x@80", 2.355),
        ("4", "top1", "online_ds", "stop_x", 2.466),
        ("4", "top1", "online_ds", "stop_acc", 81.2),
        ("4", "top1", "ours", "stop_acc", 87.4),
        ("4", "top5", "ours", "x@95", 0.255),
        ("7", "dog", "no_semi", "acc@0.1", 54.5),
        ("7", "vertebrate", "online_ds", "x@80", 2.085),
        ("10", "dog", "clean", "x@70", 1.109),
        ("11", "dog_vertebrate", "pseudolabel", "stop_x", 1.359),
        ("12", "dog_vertebrate", "task_assignment", "x@75", 0.523),
        ("prior", "dog", "prior_B_10", "stop_acc", 86.4),
        ("workers", "commodity", "workers_10", "stop_acc", 97.6),
    ],
)
def test_paper_values_as_typed_from_the_paper(figure, panel, curve, metric, expected):
    assert paper.value(paper.curve(figure, panel, curve), metric) == pytest.approx(expected)


def test_paper_never_reached_and_absent_values():
    assert paper.value(paper.curve("4", "top5", "online_ds"), "x@99") == math.inf
    assert paper.value(paper.curve("4", "top1", "ours"), "x@95") is None
    assert paper.curve("4", "top1", "no_such_curve") == {}


def test_paper_vertices_rise_in_x_and_are_percentages():
    ours = paper.vertices(paper.curve("4", "top1", "ours"))
    assert ours[0] == (0.0, 62.5) and ours[-1] == (0.987, 87.4) and len(ours) == 50
    for fig in paper.load()["figures"].values():
        for curves in fig["panels"].values():
            for c in curves.values():
                xs, ys = zip(*paper.vertices(c)) if paper.vertices(c) else ((), ())
                assert list(xs) == sorted(xs)
                assert all(0 <= y <= 100 for y in ys)


def test_every_planned_curve_and_claim_has_paper_numbers():
    figures = plan.build(list(plan.FIGURES), grid.Mode())
    panels = {(f.id, p.id): p for f in figures for p in f.panels}
    for (fig, pid), panel in panels.items():
        for c in panel.curves:
            assert bool(paper.curve(fig, pid, c.id)) == c.in_paper, (fig, pid, c.id)
    for claim in claims.CLAIMS:
        assert (claim.figure, claim.panel) in panels, claim
        ids = {c.id for c in panels[(claim.figure, claim.panel)].curves}
        assert set(claim.check.curves) <= ids, claim


# --- the grid ------------------------------------------------------------------------------------


def test_full_grid_shares_runs_and_every_config_validates():
    figures = plan.build(list(plan.FIGURES), grid.Mode(seeds=3))
    runs = plan.runs(figures)
    assert len(runs) == len(set(runs)) and len({r.name for r in runs}) == len(runs)
    fig5 = {c.id: c.run for p in figures[1].panels if p.id == "dog_vertebrate" for c in p.curves}
    fig11 = {c.id: c.run for c in figures[6].panels[0].curves}
    assert fig11["pseudolabel"] == fig5["structured_learning"]  # one launch serves both figures
    execute.check_specs(runs)  # resolves and validates every config; compiles nothing


def test_quick_grid_covers_every_figure_on_whole_chunks():
    figures = plan.build(list(plan.FIGURES), grid.Mode(quick=True, seeds=1))
    assert [f.id for f in figures] == list(plan.FIGURES) and all(f.panels for f in figures)
    for run in plan.runs(figures):
        over = dict(run.overrides)
        assert run.seeds == 1 and over["online.budget"] > 0
        assert over["run.max_steps"] % grid.QUICK_CHUNK == 0
        assert over["run.max_steps"] * run.labels_per_step() >= over["online.budget"]


def test_labels_per_step_fit_fifty_workers():
    assert grid.labels_per_step(4000) == {"online__n_hits_per_step": 50, "online__hit_size": 80}
    assert grid.labels_per_step(600) == {"online__n_hits_per_step": 15, "online__hit_size": 40}


def test_figure_names_parse_and_unknown_ones_list_the_allowed():
    assert plan.parse_names("all") == list(plan.FIGURES)
    assert plan.parse_names("5, 4,5") == ["5", "4"]
    with pytest.raises(ValueError, match=r"--figure: found '3'; allowed: 4, 5, 6, 7, 8, 10, 11, 12, risk"):
        plan.parse_names("3")


# --- interpolation and verdicts, against hand-computed values -------------------------------------


PANEL = grid.Panel("x", "y", "t", (), targets=(80.0, 95.0), budgets=(0.25, 2.0))


def test_seed_values_interpolate_like_the_report():
    x, y = np.array([0.0, 0.5, 1.0]), np.array([60.0, 70.0, 90.0])
    v = compare.seed_values(x, y, math.nan, PANEL)
    assert v["x@80"] == pytest.approx(0.75)  # 0.5 + (80 - 70) / (90 - 70) * 0.5
    assert math.isnan(v["x@95"])
    assert v["acc@0.25"] == pytest.approx(65.0) and math.isnan(v["acc@2"])
    assert (v["start_acc"], v["peak_acc"], v["end_x"], v["end_acc"]) == (60.0, 90.0, 1.0, 90.0)
    assert (v["stop_x"], v["stop_acc"]) == (1.0, 90.0)  # never fired: the end
    fired = compare.seed_values(x, y, 0.75, PANEL)
    assert (fired["stop_x"], fired["stop_acc"]) == (0.75, pytest.approx(80.0))


def _measured(**values):
    spec = grid.CurveSpec("a", "A", grid.RunSpec("imagenet_split_1", "ds_model"))
    return compare.Measured(spec, {k: np.asarray(v, float) for k, v in values.items()}, [(), ()], 0)


def test_mean_std_cells_and_partial_reach():
    m = _measured(**{"x@80": [0.5, 0.7], "x@90": [0.5, np.nan], "x@95": [np.nan, np.nan]})
    assert m.cell("x@80") == "0.60 ± 0.10"  # population std
    assert m.cell("x@90") == "n/a (1/2 reached)"
    assert m.scalar("x@80") == pytest.approx(0.6)
    assert math.isnan(m.scalar("x@90")) and m.scalar("x@95") == math.inf


def _values(table):
    return lambda cid, metric: table.get((cid, metric), math.nan)


def test_checks_against_hand_computed_cases():
    names = {"a": "A", "b": "B"}
    v = _values({("a", "x@80"): 0.3, ("b", "x@80"): 0.9, ("a", "stop_acc"): 85.0, ("b", "stop_acc"): 80.0})
    assert claims.evaluate(claims.order("x@80", "a", "b"), v, names) == (True, "x@80 A 0.3 < B 0.9")
    assert claims.evaluate(claims.order("x@80", "b", "a"), v, names)[0] is False
    assert claims.evaluate(claims.order("stop_acc", "a", "b"), v, names)[0] is True  # higher accuracy is better
    assert claims.evaluate(claims.ratio("x@80", "b", "a", 2.7), v, names) == (True, "x@80 B / A = 3x")
    assert claims.evaluate(claims.ratio("x@80", "b", "a", 3.5), v, names)[0] is False
    assert claims.evaluate(claims.gap("stop_acc", "a", "b", 5.0), v, names) == (True, "stop_acc A - B = +5.00")
    never = _values({("a", "x@80"): 0.3, ("b", "x@80"): math.inf})
    assert claims.evaluate(claims.order("x@80", "a", "b"), never, names) == (True, "x@80 A 0.3 < B never")
    assert claims.evaluate(claims.ratio("x@80", "b", "a", 2.0), never, names)[0] is None
    stop = _values({("a", "end_x"): 2.0, ("a", "stop_x"): 1.4, ("a", "end_acc"): 81.7, ("a", "stop_acc"): 80.9})
    assert claims.evaluate(claims.stop_gain("a", 1.0), stop, names) == (True, "+0.60 labels/image for +0.8 points")


def test_verdict_lines_say_holds_or_differs_with_both_sides():
    claim = claims.Claim("4", "top1", "Online DS near", claims.near("x@80", "a", 0.15))
    status, line = claims.verdict(claim, _values({("a", "x@80"): 2.47}), _values({("a", "x@80"): 2.355}), {})
    assert status == "holds" and "2.47 vs paper 2.35" in line
    status, _ = claims.verdict(claim, _values({("a", "x@80"): 2.6}), _values({("a", "x@80"): 2.355}), {})
    assert status == "differs"
    claim = claims.Claim("4", "top1", "order", claims.order("x@80", "a", "b"), why="see 1")
    status, line = claims.verdict(claim, _values({("a", "x@80"): 1.0, ("b", "x@80"): 0.5}),
                                  _values({("a", "x@80"): 0.3, ("b", "x@80"): 0.9}), {})  # fmt: skip
    assert status == "differs" and line.endswith("paper x@80 a 0.3 < b 0.9 (see 1)")
    status, _ = claims.verdict(claim, _values({}), _values({}), {})
    assert status == "not measured"


def test_a_curve_checked_against_another_paper_curve_uses_and_names_that_curve():
    dog = next(p for p in plan.build(["7"], grid.Mode())[0].panels if p.id == "dog")
    looks = {c.id: c for c in dog.curves if c.paper_id}
    assert {c.paper_id for c in looks.values()} == {"no_semi", "pseudolabel"}
    assert all(not paper.curve("7", "dog", cid) and paper.curve("7", "dog", c.paper_id) for cid, c in looks.items())
    measured = {
        cid: compare.Measured(looks[cid], {"acc@0.1": np.asarray([acc])}, [()], 0)
        for cid, acc in (("no_semi_lookalike", 56.0), ("pseudolabel_lookalike", 40.0))
    }
    lines = [line for status, line in write.panel_verdicts(dog, measured) if "look-alike stand-in: no semi" in line]
    early = next(line for line in lines if "(acc@0.1)" in line)
    assert "jaxanno acc@0.1 No semi (look-alike stand-in) 56 > Pseudolabel (look-alike stand-in) 40" in early
    assert "paper acc@0.1 No semi 54.5 > Pseudolabel 46" in early  # the paper's own curves, by their names


def test_differences_section_verbatim_or_missing(tmp_path):
    missing = write.differences_section(tmp_path / "none.md")
    assert missing[0] == "## Differences investigated" and "is missing" in missing[2]
    (tmp_path / "d.md").write_text("# Title\n\nLean starts higher.\n")
    assert write.differences_section(tmp_path / "d.md") == [
        "## Differences investigated",
        "",
        "",
        "Lean starts higher.",
        "",
    ]


# --- the command line ----------------------------------------------------------------------------


def test_dry_run_prints_the_grid_and_compiles_nothing():
    proc = subprocess.run([sys.executable, "-m", "jaxanno.reproduce", "--dry_run", "--figure=4,12", "--seeds=2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Fig 4: ImageNet100" in proc.stdout and "Fig 12" in proc.stdout
    assert "imagenet_100_classes lean, 2 seed(s): 125689 images, 2 lane(s)" in proc.stdout
    assert "total: 15 run(s), 30 lane(s)" in proc.stdout
    assert "compiling" not in proc.stderr


def test_bad_figure_is_one_line_listing_the_allowed():
    proc = subprocess.run([sys.executable, "-m", "jaxanno.reproduce", "--figure=3", "--dry_run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --figure: found '3'; allowed: 4, 5, 6, 7, 8, 10, 11, 12, risk, workers, update, prior or all "
        "(comma-separated)"
    ]


def test_jaxanno_reproduce_subcommand(capsys):
    assert cli.main(["jaxanno", "reproduce", "--dry_run", "--figure=8", "--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("quick grid: 1 figure(s), 2 run(s)") and "budget 1.20 labels/image" in out


def _fake_finished(out, spec):
    """A finished run as `execute.finished` recognises it (done.json with the settings, metrics.csv)."""
    folder = execute.workdir(out, spec)
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("grid,seed,step\n")
    (folder / execute.DONE_FILE).write_text(json.dumps({"spec": json.loads(json.dumps(spec.key(), default=str))}))


def test_quick_fallback_takes_a_figure_from_the_full_grid_only_when_all_its_runs_finished(tmp_path):
    full = grid.Mode(quick=False, seeds=3)
    fig8_runs = plan.runs(plan.build(["8"], full))
    fig10_runs = plan.runs(plan.build(["10"], full))
    for spec in fig8_runs + fig10_runs[:-1]:  # every full run of Fig 8, all but one of Fig 10
        _fake_finished(tmp_path, spec)
    chosen = command.choose_grids(plan.build(["8", "10"], full), full, tmp_path)
    assert [used for _, used in chosen] == [full, command.QUICK_FALLBACK]
    assert plan.runs([chosen[0][0]]) == fig8_runs
    assert plan.runs([chosen[1][0]]) == plan.runs(plan.build(["10"], command.QUICK_FALLBACK))
    assert chosen[0][0].notes[0] == "Grid: full grid, 3 seed(s) per run."
    assert chosen[1][0].notes[0].startswith("Grid: quick (CPU-sized) grid, 1 seed(s) per run: the full grid's runs")
    assert command.grid_summary(chosen) == (
        "full grid, 3 seed(s) per run for Fig 8; quick (CPU-sized) grid, 1 seed(s) per run for Fig 10"
    )


def test_quick_fallback_takes_the_full_grid_with_the_most_seeds_that_finished(tmp_path):
    three, one = grid.Mode(quick=False, seeds=3), grid.Mode(quick=False, seeds=1)
    for spec in plan.runs(plan.build(["8"], one)) + plan.runs(plan.build(["10"], three)):
        _fake_finished(tmp_path, spec)
    for spec in plan.runs(plan.build(["8"], three))[:-1]:  # Fig 8 with 3 seeds: one run short
        _fake_finished(tmp_path, spec)
    chosen = command.choose_grids(plan.build(["8", "10"], three), three, tmp_path)
    assert [used for _, used in chosen] == [one, three]
    assert plan.runs([chosen[0][0]]) == plan.runs(plan.build(["8"], one))
    assert chosen[0][0].notes[0] == (
        "Grid: full grid, 1 seed(s) per run: the full grid's runs with 3 seeds for this figure have not all finished."
    )
    assert command.grid_summary(chosen) == (
        "full grid, 1 seed(s) per run for Fig 8; full grid, 3 seed(s) per run for Fig 10"
    )


def test_quick_fallback_without_report_only_is_a_usage_error(capsys):
    assert command.main(["--quick_fallback", "--figure=8"]) == 2
    assert "--quick_fallback goes with --report_only" in capsys.readouterr().err


# --- one tiny end to end: two curves read two lanes of one compiled run ----------------------------


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    run = grid.RunSpec("imagenet_split_1", "efficient_annotation", overrides=TINY,
                       sweep=(("risk_threshold", (0.1, 0.3)),), seeds=2)  # fmt: skip
    curves = (grid.curve("soft_global", "C 0.1", run, risk_threshold=0.1),
              grid.curve("hard_local", "C 0.3", run, risk_threshold=0.3))  # fmt: skip
    panel = grid.Panel("8", "vertebrate", "tiny", curves, targets=(50.0, 101.0), budgets=(0.5, 9.0))
    fig = grid.Figure("8", "Fig 8: tiny", (panel,), ("a note",))
    first = execute.run_all([run], out, quiet=True, say=lambda text: None)
    second = execute.run_all([run], out, quiet=True, say=lambda text: None)
    measured = command.measure_all([fig], out)
    counts = write.write_document([fig], measured, out / "REPRODUCTION.md", out / "figures", ["# head", ""],
                                  out / "missing.md")  # fmt: skip
    return out, first, second, measured, counts


@pytest.mark.slow  # compiles one tiny simulation program (about 20 s at light load)
def test_tiny_end_to_end_writes_report_and_png(tiny_report):
    out, first, second, measured, counts = tiny_report
    assert [o.status for o in first] == ["ran"] and [o.status for o in second] == ["skipped"]
    got = measured[("8", "vertebrate")]
    assert set(got) == {"soft_global", "hard_local"} and got["soft_global"].seeds == 2
    assert got["soft_global"].cell("x@101") == "n/a (0/2 reached)" and got["soft_global"].cell("acc@9") != "-"
    text = (out / "REPRODUCTION.md").read_text()
    assert "## Fig 8: tiny" in text and "![8 vertebrate](figures/fig8_vertebrate.png)" in text
    assert "| C 0.1 | 2 | - |" in text  # the paper gives no x@50 for soft-global
    assert "missing.md` is missing" in text and "- a note" in text
    assert sum(counts.values()) == 2 and text.count("- **") == 2
    assert (out / "figures" / "fig8_vertebrate.png").read_bytes()[:4] == b"\x89PNG"


def test_finished_runs_are_recognised_only_with_the_same_settings(tmp_path):
    run = grid.RunSpec("imagenet_split_1", "ds_model", overrides=(("worker.n", 10),), seeds=2)
    folder = execute.workdir(tmp_path, run)
    assert folder == tmp_path / "runs" / run.name and run.name.startswith("imagenet_split_1-ds_model-")
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("grid,seed,step\n")
    (folder / execute.DONE_FILE).write_text(json.dumps({"spec": run.key(), "wall_s": 3.0}))
    assert execute.finished(folder, run)["wall_s"] == 3.0
    other = grid.RunSpec("imagenet_split_1", "ds_model", overrides=(("worker.n", 10),), seeds=3)
    assert execute.finished(folder, other) is None and other.name != run.name
    assert execute.describe(run) == "imagenet_split_1 ds_model (worker.n=10), 2 seed(s)"
    assert execute.run_one(run, tmp_path).status == "skipped"  # nothing runs
    assert [o.spec for o in execute.collect([other, run], tmp_path)] == [run]


def test_a_budget_level_reached_up_to_rounding_counts():
    x, y = np.array([0.0, 0.25, 0.49999]), np.array([60.0, 70.0, 80.0])
    panel = grid.Panel("x", "y", "t", (), targets=(), budgets=(0.5, 0.6))
    v = compare.seed_values(x, y, math.nan, panel)
    assert v["acc@0.5"] == 80.0 and math.isnan(v["acc@0.6"])


def test_a_run_cut_by_its_budget_has_no_stop_point_unless_the_stopper_fired():
    x, y = np.array([0.0, 0.5, 1.0]), np.array([60.0, 70.0, 90.0])
    cut = compare.seed_values(x, y, math.nan, PANEL, cut=True)
    assert math.isnan(cut["stop_x"]) and math.isnan(cut["stop_acc"]) and cut["end_x"] == 1.0
    assert compare.seed_values(x, y, 0.5, PANEL, cut=True)["stop_acc"] == 70.0
