"""Tests of jaxanno.report on hand-written workdirs with known curves (no simulation)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from jaxanno import report, results

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


def _write_workdir(path, curves_by_grid, settings=None, config=None, learner=False, fired=None):
    """A workdir like a launch (`jaxanno.runner`) writes: metrics.csv, runs.csv, config.json.

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
    band = report.mean_band([a, b])
    np.testing.assert_allclose(band.x, [0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(band.count, [2, 2, 2, 2, 1])  # b stopped at 1.5
    np.testing.assert_allclose(band.mean, [0.55, 0.65, 0.725, 0.8, 0.9])
    np.testing.assert_allclose(band.std, [0.05, 0.05, 0.025, 0.0, 0.0], atol=1e-12)
    assert band.num_seeds == 2


def test_mean_band_thins_a_long_grid_but_keeps_each_seed_end():
    a = (np.linspace(0, 1, 50), np.linspace(0, 1, 50))
    b = (np.linspace(0, 0.77, 40), np.linspace(0, 0.77, 40))
    band = report.mean_band([a, b], max_points=20)
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


def test_write_report_without_learner_drops_stale_learner_figures(one_run, tmp_path):
    out = tmp_path / "rep"
    report.write_report([one_run], out)
    plain = _write_workdir(tmp_path / "plain", {0: CURVES})
    result = report.write_report([plain], out)
    assert result["figures"] == ["top1_aggregate", "ece_aggregate"]
    assert not (out / "top1_learner.png").exists() and not (out / "ece_learner.svg").exists()
    assert pd.read_csv(out / "report.csv")["learner_end_top1_mean"].isna().all()


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
    labels = [label for label, _ in report.curve_bands(runs, "aggregate/all/top1")]
    assert labels == [
        "exp/efficient_annotation, risk_threshold=0.05 (3 seeds)",
        "exp/efficient_annotation, risk_threshold=0.1 (2 seeds)",
        "exp/ds_model (3 seeds)",
    ]
    learner = report.curve_bands(runs, "learner/all/top1")
    assert len(learner) == 2  # the ds_model run has no learner curve
    fig = report.plot_bands(report.curve_bands(runs, "aggregate/all/top1"), "top-1 accuracy (%)", "t")
    assert fig.axes[0].get_legend_handles_labels()[1] == labels


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
    assert table.loc[0, "end_cost_per_item_mean"] == pytest.approx(runs["cost_per_item"].mean(), rel=1e-5)
