"""Tests of jaxanno.report on hand-written workdirs with known curves (no simulation)."""

from __future__ import annotations

import json
import pathlib

import matplotlib
import numpy as np
import pandas as pd
import pytest

from jaxanno import figures, report, results
from jaxanno.data import amt

# Three seeds of one grid point: (labels per image, top-1) in step order.
CURVES = {
    0: ([0.0, 0.5, 1.0, 1.5], [0.50, 0.70, 0.90, 0.95]),
    1: ([0.0, 0.5, 1.0], [0.60, 0.85, 0.88]),
    2: ([0.0, 0.4, 0.8, 1.2, 1.6], [0.40, 0.60, 0.78, 0.82, 0.86]),
}
# x@80 by hand: seed 0 between (0.5, .70) and (1.0, .90): 0.5 + 0.5 * 0.10 / 0.20;
# seed 1 between (0.0, .60) and (0.5, .85): 0.5 * 0.20 / 0.25; seed 2 between
# (0.8, .78) and (1.2, .82): 0.8 + 0.4 * 0.02 / 0.04.
X_AT_80 = [0.75, 0.4, 1.0]
# x@87: seed 0 at 0.5 + 0.5 * 0.17 / 0.20 = 0.925; seed 1 at 0.5 + 0.5 * 0.02 / 0.03;
# seed 2 never (ends at 0.86).
X_AT_87 = [0.925, 0.5 + 0.5 * 0.02 / 0.03]


def _write_workdir(path, curves_by_grid, settings=None, config=None, learner=False, fired=None, problem=None):
    """A workdir like a launch (`jaxanno.runner`) writes: metrics.csv, runs.csv, config.json, problem.json.

    curves_by_grid: {grid: {seed: (x, y)}}; settings: {grid: {name: value}};
    fired: {(grid, seed): labels per image where the early stopper fired}.
    """
    path = pathlib.Path(path)
    path.mkdir(parents=True)
    settings, fired = settings or {}, fired or {}
    rows, run_rows = [], []
    for grid, curves in curves_by_grid.items():
        for seed, (xs, ys) in curves.items():
            point = settings.get(grid, {})
            for step, (x, y) in enumerate(zip(xs, ys)):
                row = {
                    "grid": grid,
                    "seed": seed,
                    **point,
                    "step": step,
                    "cost_per_item": x,
                    "aggregate/all/top1": y,
                    "aggregate/all/ece": 0.1 * (1 - y),
                }
                if learner:
                    row.update({"learner/all/top1": y - 0.1, "learner/all/ece": 0.05 + 0.01 * seed})
                rows.append(row)
            run_rows.append(
                {
                    "grid": grid,
                    "seed": seed,
                    **point,
                    "steps": len(xs) - 1,
                    "stop_reason": "all_confident_or_full",
                    "cost_per_item": xs[-1],
                    "aggregate/all/top1": ys[-1],
                    "early_stop_cost_per_item": fired.get((grid, seed), np.nan),
                }
            )
    pd.DataFrame(rows).to_csv(path / "metrics.csv", index=False)
    pd.DataFrame(run_rows).to_csv(path / "runs.csv", index=False)
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    if problem is not None:
        (path / "problem.json").write_text(json.dumps(problem))
    return path


@pytest.fixture
def one_run(tmp_path):
    return _write_workdir(
        tmp_path / "one",
        {0: CURVES},
        config={"experiment": "exp", "method": "m"},
        learner=True,
        fired={(0, 0): 1.0, (0, 2): 1.4},
    )


def test_x_at_target_interpolates_the_first_crossing():
    x, y = np.array([0.0, 0.5, 1.0, 1.5]), np.array([0.5, 0.85, 0.7, 0.9])
    assert results.x_at_target(x, y, 0.8) == pytest.approx(0.5 * 0.30 / 0.35)  # first crossing, not the later one
    assert results.x_at_target(x, y, 0.4) == 0.0  # already above at the start
    assert results.x_at_target(x, y, 0.9) == pytest.approx(1.5)
    assert np.isnan(results.x_at_target(x, y, 0.95))


def test_x_at_target_counts_a_float32_hit_as_reached():
    x, y = np.array([0.0, 1.0]), np.array([0.5, float(np.float32(0.7))])
    assert float(np.float32(0.7)) < 0.7
    assert results.x_at_target(x, y, 0.7) == pytest.approx(1.0)


def test_seed_curve_keeps_the_last_value_at_a_repeated_cost():
    rows = pd.DataFrame({"step": [2, 0, 1, 3], "cost_per_item": [0.5, 0.0, 0.5, 1.0], "m": [0.7, 0.1, 0.6, np.nan]})
    x, y = results.seed_curve(rows, "m")
    np.testing.assert_array_equal(x, [0.0, 0.5])
    np.testing.assert_array_equal(y, [0.1, 0.7])


def test_mean_band_averages_on_a_common_grid_without_extrapolating():
    a = (np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.7, 0.9]))
    b = (np.array([0.0, 0.5, 1.5]), np.array([0.6, 0.7, 0.8]))
    band = figures.mean_band([a, b])
    np.testing.assert_allclose(band.x, [0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(band.count, [2, 2, 2, 2, 1])  # b stopped at 1.5
    np.testing.assert_allclose(band.mean, [0.55, 0.65, 0.725, 0.8, 0.9])
    np.testing.assert_allclose(band.std, [0.05, 0.05, 0.025, 0.0, 0.0], atol=1e-12)
    assert band.num_seeds == 2


def test_mean_band_thins_a_long_grid_but_keeps_each_seed_end():
    a = (np.linspace(0, 1, 50), np.linspace(0, 1, 50))
    b = (np.linspace(0, 0.77, 40), np.linspace(0, 0.77, 40))
    band = figures.mean_band([a, b], max_points=20)
    assert len(band.x) <= 20 + 4
    assert 0.77 in band.x and band.count[band.x == 0.77][0] == 2 and band.count[-1] == 1
    np.testing.assert_allclose(band.mean, band.x)  # y = x for both seeds


def test_write_report_x_at_target_matches_hand_values(one_run, tmp_path):
    out = tmp_path / "rep"
    result = report.write_report([one_run], out, targets=(80, 87))
    table = pd.read_csv(out / "report.csv")
    assert len(table) == 1 and table.loc[0, "num_seeds"] == 3
    assert table.loc[0, "x@80_mean"] == pytest.approx(np.mean(X_AT_80), rel=1e-5)
    assert table.loc[0, "x@80_std"] == pytest.approx(np.std(X_AT_80), rel=1e-5)
    assert table.loc[0, "x@80_reached"] == 3
    assert table.loc[0, "x@87_reached"] == 2 and np.isnan(table.loc[0, "x@87_mean"])
    md = (out / "report.md").read_text()
    assert f"{np.mean(X_AT_80):.2f} ± {np.std(X_AT_80):.2f}" in md
    assert "n/a (2/3 reached)" in md
    assert result["table"]["x@80_mean"].iloc[0] == pytest.approx(np.mean(X_AT_80))


def test_write_report_x_at_target_values_per_seed_match_hand_values():
    got = [results.x_at_target(np.array(x), np.array(y), 0.87) for x, y in CURVES.values()]
    np.testing.assert_allclose(got[:2], X_AT_87)
    assert np.isnan(got[2])


@pytest.mark.slow
def test_write_report_early_stop_end_point_and_learner(one_run, tmp_path):
    out = tmp_path / "rep"
    report.write_report([one_run], out)
    row = pd.read_csv(out / "report.csv").iloc[0]
    assert row["early_stop_mean"] == pytest.approx(1.2) and row["early_stop_std"] == pytest.approx(0.2)
    assert row["early_stop_fired"] == 2
    ends_x, ends_y = [c[0][-1] for c in CURVES.values()], [c[1][-1] for c in CURVES.values()]
    assert row["end_cost_per_item_mean"] == pytest.approx(np.mean(ends_x), rel=1e-5)
    assert row["end_cost_per_item_std"] == pytest.approx(np.std(ends_x), rel=1e-5)
    assert row["end_top1_mean"] == pytest.approx(100 * np.mean(ends_y), rel=1e-5)
    assert row["learner_end_top1_mean"] == pytest.approx(100 * (np.mean(ends_y) - 0.1), rel=1e-5)
    assert row["learner_end_ece_mean"] == pytest.approx(6.0, rel=1e-5)  # 5, 6, 7 %
    assert row["end_ece_mean"] == pytest.approx(10 * (1 - np.mean(ends_y)), rel=1e-5)
    md = (out / "report.md").read_text()
    assert "1.20 ± 0.20 (2/3 fired)" in md and "all_confident_or_full: 3" in md


def test_write_report_writes_nonempty_png_and_svg_figures(one_run, tmp_path):
    out = tmp_path / "rep"
    result = report.write_report([one_run], out)
    assert result["figures"] == ["top1_aggregate", "top1_learner", "ece_aggregate", "ece_learner"]
    for stem in result["figures"]:
        png, svg = (out / f"{stem}.png").read_bytes(), (out / f"{stem}.svg").read_text()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        assert "<svg" in svg and svg.rstrip().endswith("</svg>")
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


@pytest.mark.slow
def test_write_report_without_learner_drops_stale_learner_figures(one_run, tmp_path):
    out = tmp_path / "rep"
    report.write_report([one_run], out)
    plain = _write_workdir(tmp_path / "plain", {0: CURVES})
    result = report.write_report([plain], out)
    assert result["figures"] == ["top1_aggregate", "ece_aggregate"]
    assert not (out / "top1_learner.png").exists() and not (out / "ece_learner.svg").exists()
    assert pd.read_csv(out / "report.csv")["learner_end_top1_mean"].isna().all()


@pytest.mark.slow
def test_write_report_shows_each_workdir_and_grid_point_separately(tmp_path):
    sweep = _write_workdir(
        tmp_path / "sweep",
        {0: CURVES, 1: {0: CURVES[1], 1: CURVES[1]}},
        settings={0: {"risk_threshold": 0.05}, 1: {"risk_threshold": 0.1}},
        config={"experiment": "exp", "method": "efficient_annotation"},
        learner=True,
    )
    base = _write_workdir(tmp_path / "base", {0: CURVES}, config={"experiment": "exp", "method": "ds_model"})
    result = report.write_report([sweep, base], tmp_path / "rep")
    table = result["table"]
    assert list(table["run"]) == ["exp/efficient_annotation"] * 2 + ["exp/ds_model"]
    assert list(table["settings"]) == ["risk_threshold=0.05", "risk_threshold=0.1", ""]
    assert list(table["num_seeds"]) == [3, 2, 3]
    assert table["x@80_mean"].iloc[1] == pytest.approx(0.4)  # both seeds follow CURVES[1]
    runs = [report.load_run(sweep), report.load_run(base)]
    curves, subtitle = report.figure_curves(runs, "aggregate/all/top1")
    labels = [c.label for c in curves]
    # Legends name what tells the curves apart; the shared experiment goes to the subtitle.
    assert labels == [
        "efficient_annotation, risk_threshold=0.05 (3 seeds)",
        "efficient_annotation, risk_threshold=0.1 (2 seeds)",
        "ds_model (3 seeds)",
    ]
    assert subtitle == "exp"
    learner, _ = report.figure_curves(runs, "learner/all/top1")
    assert len(learner) == 2  # the ds_model run has no learner curve
    fig = figures.plot_curves(curves, "top-1 accuracy (%)", "t")
    assert [t.get_text() for t in fig.legends[0].get_texts()][:3] == labels


def test_write_report_names_runs_by_config_or_workdir(tmp_path):
    cfg = {"experiment": "exp", "method": "m"}
    a = _write_workdir(tmp_path / "a", {0: CURVES}, config=cfg)
    b = _write_workdir(tmp_path / "b", {0: CURVES}, config=cfg)
    c = _write_workdir(tmp_path / "c_run", {0: CURVES})
    table = report.write_report([a, b, c], tmp_path / "rep")["table"]
    assert list(table["run"]) == ["exp/m (a)", "exp/m (b)", "c_run"]


def test_write_report_bad_workdir_raises_and_writes_nothing(one_run, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "runs.csv").write_text("grid,seed\n0,0\n")
    out = tmp_path / "rep"
    with pytest.raises(report.ReportError, match=r"bad: no metrics\.csv"):
        report.write_report([one_run, bad], out)
    assert not out.exists()
    out.mkdir()
    (out / "report.md").write_text("old")
    with pytest.raises(report.ReportError, match="missing column"):
        (bad / "metrics.csv").write_text("grid,seed,step\n0,0,0\n")
        report.write_report([one_run, bad], out)
    assert [p.name for p in out.iterdir()] == ["report.md"] and (out / "report.md").read_text() == "old"


def test_main_reports_targets_and_errors(one_run, tmp_path, capsys):
    assert report.main([str(one_run), "--targets=80,90"]) == 0
    table = pd.read_csv(one_run / "report" / "report.csv")
    assert "x@80_mean" in table and "x@90_reached" in table and "x@75_mean" not in table
    assert "| x@80% | x@90% |" in capsys.readouterr().out
    assert report.main([str(tmp_path / "missing"), f"--out={tmp_path / 'r'}"]) == 2
    assert "missing: not a directory" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert report.main([str(one_run), "--targets=0.8"]) == 2
    assert report.main([str(one_run), str(one_run)]) == 2  # several workdirs need --out
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --out: not given; with 2 workdirs, give the report folder"
    )


@pytest.mark.slow
def test_launch_writes_a_report_at_the_end(tmp_path):
    import importlib.util

    from jaxanno import runner

    config_file = pathlib.Path(__file__).parents[1] / "configs" / "test.py"
    spec = importlib.util.spec_from_file_location("test_config", config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    cfg.method = "improved_lean"
    assert runner.run_launch(cfg, str(tmp_path / "run"), quiet=True) == 0
    rep = tmp_path / "run" / "report"
    assert {"report.md", "report.csv", "top1_aggregate.png", "top1_learner.svg"} <= {p.name for p in rep.iterdir()}
    table = pd.read_csv(rep / "report.csv")
    runs = pd.read_csv(tmp_path / "run" / "runs.csv")
    assert table.loc[0, "num_seeds"] == len(runs)
    assert table.loc[0, "run"] == "custom (3 classes)/improved_lean"  # configs/test.py's 3 classes, not the preset
    assert table.loc[0, "end_cost_per_item_mean"] == pytest.approx(runs["cost_per_item"].mean(), rel=1e-5)


def _lines_with_marker(ax, marker):
    """(x, y) of every drawn point with `marker` on an axes."""
    return [(float(ln.get_xdata()[0]), float(ln.get_ydata()[0])) for ln in ax.lines if ln.get_marker() == marker]


def test_markers_sit_at_x_at_target_and_at_the_early_stop(one_run):
    (curve,), _ = report.figure_curves([report.load_run(one_run)], "aggregate/all/top1", targets=(80, 87))
    ((x80, y80),) = curve.crossings  # x@87: only 2 of 3 seeds reached it, so no marker
    assert x80 == pytest.approx(np.mean(X_AT_80)) and y80 == pytest.approx(0.80)
    # Fired at 1.0 (seed 0) and 1.4 (seed 2): mean 1.2. At x=1.2 seed 0 is at 0.92 (between
    # (1.0, .90) and (1.5, .95)), seed 1 has stopped (ends at 1.0), seed 2 is at 0.82.
    assert curve.early_stop == pytest.approx(1.2)
    assert curve.stop_point() == pytest.approx((1.2, 0.87))
    ax = figures.plot_curves([curve], "top-1 accuracy (%)", "t", hlines=(80, 87)).axes[0]
    np.testing.assert_allclose(_lines_with_marker(ax, figures.TARGET_MARKER), [(np.mean(X_AT_80), 80.0)])
    np.testing.assert_allclose(_lines_with_marker(ax, figures.STOP_MARKER), [(1.2, 87.0)])
    assert [t.get_text() for t in ax.texts] == ["80%", "87%"]  # target lines are labelled


def test_no_markers_where_no_target_is_reached_and_the_stopper_never_fired(tmp_path):
    run = report.load_run(_write_workdir(tmp_path / "w", {0: CURVES}))
    (curve,), _ = report.figure_curves([run], "aggregate/all/top1", targets=(99,))
    assert curve.crossings == () and curve.stop_point() is None
    labels = [t.get_text() for t in figures.plot_curves([curve], "y", "t").legends[0].get_texts()]
    assert labels == ["w (3 seeds)"]  # no marker explanations without markers


def test_legend_says_1_seed_and_labels_a_sweep_by_its_setting_values(tmp_path):
    cfg = {"experiment": "exp", "method": "ds_model", "simulation": "sim"}
    sweep = _write_workdir(
        tmp_path / "sweep",
        {0: CURVES, 1: {0: CURVES[0]}},
        settings={0: {"risk_threshold": 0.05}, 1: {"risk_threshold": 0.2}},
        config=cfg,
    )
    curves, subtitle = report.figure_curves([report.load_run(sweep)], "aggregate/all/top1")
    assert [c.label for c in curves] == ["risk_threshold=0.05 (3 seeds)", "risk_threshold=0.2 (1 seed)"]
    assert subtitle == "exp · ds_model · sim"


def test_a_curve_keeps_its_colour_when_another_run_has_no_learner(tmp_path):
    base = _write_workdir(tmp_path / "base", {0: CURVES}, config={"method": "ds_model"})
    ea = _write_workdir(tmp_path / "ea", {0: CURVES}, config={"method": "ea"}, learner=True)
    runs = [report.load_run(base), report.load_run(ea)]
    aggregate, _ = report.figure_curves(runs, "aggregate/all/top1")
    learner, _ = report.figure_curves(runs, "learner/all/top1")
    assert [c.color for c in aggregate] == [0, 1] and [c.color for c in learner] == [1]
    line = figures.plot_curves(learner, "y", "t").axes[0].get_legend_handles_labels()[0][0]
    assert line.get_color() == matplotlib.colormaps["tab10"](1)


def test_run_names_follow_the_resolved_config():
    split1 = amt.experiment_wnids("imagenet_split_1")
    test_py = {"experiment": "imagenet_split_1", "wnids": " ".join(split1[:3]), "method": "ds_model"}
    assert report.experiment_label(test_py) == "custom (3 classes)"
    assert report.experiment_label({"experiment": "", "wnids": split1[0]}) == "custom (1 class)"
    preset = {"experiment": "imagenet_split_1", "wnids": " ".join(split1), "n_data_per_class": 2000}
    assert report.experiment_label(preset) == "imagenet_split_1"
    assert report.experiment_label({**preset, "online": {"hit_size": 6}}) == "imagenet_split_1 (hit_size=6)"
    assert report.experiment_label({"experiment": "imagenet_split_1"}) == "imagenet_split_1"
    assert report.experiment_label({"experiment": "not_a_preset"}) == "not_a_preset"
    assert report.run_fields({**test_py, "simulation": "s"}) == {
        "experiment": "custom (3 classes)",
        "method": "ds_model",
        "simulation": "s",
    }


def test_report_titles_and_table_name_a_custom_class_list(tmp_path):
    split1 = amt.experiment_wnids("imagenet_split_1")
    cfg = {"experiment": "imagenet_split_1", "wnids": " ".join(split1[:3]), "method": "ds_model"}
    run = _write_workdir(tmp_path / "w", {0: CURVES}, config=cfg)
    result = report.write_report([run], tmp_path / "rep")
    assert list(result["table"]["run"]) == ["custom (3 classes)/ds_model"]
    assert "imagenet_split_1" not in (tmp_path / "rep" / "report.md").read_text()
    _, subtitle = report.figure_curves([report.load_run(run)], "aggregate/all/top1")
    assert subtitle == "custom (3 classes) · ds_model"


def test_stand_in_data_is_noted_in_titles_and_report(tmp_path):
    data = "stand-in features (not ImageNet) for imagenet_split_1, width 8"
    stand = _write_workdir(tmp_path / "stand", {0: CURVES}, config={"method": "a"}, problem={"data": data})
    real = _write_workdir(tmp_path / "real", {0: CURVES}, config={"method": "b", "data": {"source": "npz"}})
    runs = [report.load_run(stand), report.load_run(real)]
    assert [r.standin for r in runs] == [True, False]
    assert report.subtitle(runs[:1], ["a", "s"]) == "a · s\n" + report.STANDIN_NOTE
    assert report.subtitle(runs, []) == "stand-in features in a"
    assert report.subtitle(runs[1:], []) == ""
    report.write_report([stand], tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"data: {data}" in md and "Stand-in features are synthetic" in md
    report.write_report([real], tmp_path / "rep2")
    assert "stand-in" not in (tmp_path / "rep2" / "report.md").read_text().lower()


def test_problem_json_as_a_list_of_launch_records_uses_the_first(tmp_path):
    records = [{"data": "stand-in features for x"}, {"resumed": True}]
    run = report.load_run(_write_workdir(tmp_path / "w", {0: CURVES}, problem=records))
    assert run.standin and run.data == "stand-in features for x"


def test_a_corrupt_problem_json_is_named_and_nothing_is_written(tmp_path):
    run = _write_workdir(tmp_path / "w", {0: CURVES})
    (run / "problem.json").write_text('{"data": ')
    with pytest.raises(report.ReportError, match=r"problem\.json: not valid JSON"):
        report.write_report([run], tmp_path / "rep")
    assert not (tmp_path / "rep").exists()


def test_zoom_range_only_when_curves_are_squeezed():
    def band(lo, hi):
        x = np.linspace(0, 2, 5)
        return figures.Band(x, np.linspace(lo, hi, 5), np.zeros(5), np.full(5, 2), 2)

    ds, lean, ea = band(0.05, 0.84), band(0.88, 0.90), band(0.82, 0.92)
    low, high = figures.zoom_range([ds, lean, ea])
    assert low < 0.82 < 0.92 < high and high - low < 0.2
    assert figures.zoom_range([ds, band(0.1, 0.8)]) is None  # no curve is squeezed
    assert figures.zoom_range([ea]) is None
    assert figures.zoom_range([band(0.02, 0.1), ds, band(0.85, 0.92)]) is None  # squeezed at both ends
    curves = [figures.Curve(n, b) for n, b in (("ds", ds), ("lean", lean), ("ea", ea))]
    fig = figures.plot_curves(curves, "top-1 accuracy (%)", "t", hlines=(75, 90))
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylim() == pytest.approx((100 * low, 100 * high))
    assert [t.get_text() for t in fig.axes[1].texts] == ["90%"]  # only targets inside the zoom
    assert len(figures.plot_curves(curves[:1], "y", "t").axes) == 1


@pytest.mark.slow
def test_final_value_figure_per_swept_setting(tmp_path):
    values = {0: 0.05, 1: 0.1, 2: 0.2}
    sweep = _write_workdir(
        tmp_path / "sweep",
        {g: CURVES for g in values},
        settings={g: {"risk_threshold": v} for g, v in values.items()},
        config={"experiment": "exp", "method": "m"},
        learner=True,
    )
    out = tmp_path / "rep"
    result = report.write_report([sweep], out)
    assert "final_vs_risk_threshold" in result["figures"]
    assert (out / "final_vs_risk_threshold.png").read_bytes().startswith(b"\x89PNG")
    assert "![final_vs_risk_threshold](final_vs_risk_threshold.png)" in (out / "report.md").read_text()
    runs = [report.load_run(sweep)]
    (_, top1), (_, cost) = report.final_series(runs, result["table"], "risk_threshold")
    assert [s.label for s in top1] == ["aggregated labels", "learner"] and top1[1].dashed
    np.testing.assert_allclose(top1[0].x, [0.05, 0.1, 0.2])
    np.testing.assert_allclose(top1[0].mean, result["table"]["end_top1_mean"])
    np.testing.assert_allclose(cost[0].mean, result["table"]["end_cost_per_item_mean"])
    plain = _write_workdir(tmp_path / "plain", {0: CURVES})
    assert "final_vs_risk_threshold" not in report.write_report([plain], out)["figures"]
    assert not (out / "final_vs_risk_threshold.png").exists()  # a stale final-value figure is removed


def test_final_value_series_of_several_runs_are_labelled_by_run(tmp_path):
    settings = {0: {"risk_threshold": 0.05}, 1: {"risk_threshold": 0.1}}
    a = _write_workdir(tmp_path / "a", {0: CURVES, 1: CURVES}, settings=settings, config={"method": "a"})
    b = _write_workdir(tmp_path / "b", {0: CURVES, 1: CURVES}, settings=settings, config={"method": "b"})
    runs = [report.load_run(a), report.load_run(b)]
    table, _ = report.summarize(runs)
    (_, top1), _ = report.final_series(runs, table, "risk_threshold")
    assert [s.label for s in top1] == ["a", "b"] and [s.group for s in top1] == [0, 1]
