"""Result tables of finished runs, shared by the launcher and the report.

From the simulator's metrics to frames (`flatten_metrics`, `metrics_frame`, `runs_frame`),
and from frames to per-seed curves and mean +- std over seeds (`accuracy_at`,
`summary_table`, `x_at_target`, `targets_table`, `end_point`, `early_stop_point`).

A frame of metrics has one row per (grid point, seed, logged step): columns ``grid``,
``seed``, the grid point's swept settings, ``step``, then every metric (``cost``,
``cost_per_item``, ``aggregate/all/top1``, ``learner/confident/ece``, ...). Accuracies are
fractions in frames; the markdown cells of `targets_table` and `end_point` are percent.
Spreads over seeds are population standard deviations (ddof=0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from jaxanno import types

REACH_TOL = 1e-6  # float32 accuracies written as text: 0.8 may read back as 0.79999995


def flatten_metrics(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """NamedTuple metrics -> {'aggregate/all/top1': array, ...} (None fields skipped)."""
    if hasattr(tree, "_fields"):
        out: dict[str, np.ndarray] = {}
        for name in tree._fields:
            value = getattr(tree, name)
            if value is not None:
                out.update(flatten_metrics(value, f"{prefix}{name}/"))
        return out
    return {prefix.rstrip("/"): np.asarray(tree)}


def metrics_frame(
    chunks: Sequence[dict[str, np.ndarray]], seeds: Sequence[int], points: Sequence[dict[str, Any]]
) -> pd.DataFrame:
    """The long table of a run: one row per (grid point, seed, logged step), inactive rows dropped.

    Args:
      chunks: flat metrics {name: (G, S, T_chunk)} per chunk, in step order.
      seeds: the S seeds; points: the G grid points' swept settings.
    """
    cols = {name: np.concatenate([m[name] for m in chunks], axis=-1) for name in chunks[0]}
    g, s, t = cols["step"].shape
    frame = pd.DataFrame({k: v.reshape(-1) for k, v in cols.items()})
    frame.insert(0, "seed", np.repeat(np.asarray(seeds), t)[None].repeat(g, 0).reshape(-1))
    frame.insert(0, "grid", np.repeat(np.arange(g), s * t))
    for field in sorted({k for p in points for k in p}):
        frame.insert(2, field, np.repeat([p[field] for p in points], s * t))
    frame = frame[frame["active"]].drop(columns="active")
    return frame.reset_index(drop=True)


def runs_frame(
    final: types.SimState, frame: pd.DataFrame, seeds: Sequence[int], points: Sequence[dict[str, Any]], num_items: int
) -> pd.DataFrame:
    """One row per (grid point, seed): how the run ended and where the early stopper fired.

    Args:
      final: the last state on the host, leaves with leading (G, S) axes.
      frame: the run's `metrics_frame`.

    Columns: grid, seed, swept settings, steps, stop_reason, cost_per_item,
    'aggregate/all/top1' (and 'learner/all/top1') at the end, early_stop_step and
    early_stop_cost_per_item (NaN when the stopper never fired).
    """
    last = frame.groupby(["grid", "seed"]).tail(1).set_index(["grid", "seed"])
    rows = []
    for g, point in enumerate(points):
        for s, seed in enumerate(seeds):
            fired = int(final.stopper.fired_step[g, s])
            end = last.loc[(g, seed)]
            row = {
                "grid": g,
                "seed": seed,
                **point,
                "steps": int(final.step[g, s]),
                "stop_reason": types.STOP_REASONS[int(final.stop_reason[g, s])],
                "cost_per_item": float(end["cost_per_item"]),
                "aggregate/all/top1": float(end["aggregate/all/top1"]),
                "early_stop_step": fired if fired >= 0 else np.nan,
                "early_stop_cost_per_item": int(final.stopper.fired_cost[g, s]) / num_items if fired >= 0 else np.nan,
            }
            if "learner/all/top1" in end:
                row["learner/all/top1"] = float(end["learner/all/top1"])
            rows.append(row)
    return pd.DataFrame(rows)


# Settings that most often make beliefs NaN or infinite, named when a run hits numerical_error.
NUMERIC_SUSPECTS = (
    "optimizer.log_epsilon (in (0, 1); 1e-8 by default)",
    "worker.prior.strength and worker.prior.pos_count/neg_count (not huge)",
    "learner.lr_ratio (small; 1e-4 by default)",
)


def numerical_error_message(runs: pd.DataFrame) -> str | None:
    """One line when any run of a `runs_frame` stopped with ``numerical_error``, else None.

    It names how many runs and which grid points failed and the settings to look at.
    """
    bad = runs[runs["stop_reason"] == "numerical_error"]
    if bad.empty:
        return None
    settings = list(runs.columns[2 : runs.columns.get_loc("steps")])  # the swept settings
    points = bad.drop_duplicates("grid")[["grid", *settings]].to_dict("records")
    return (
        f"runs.csv: {len(bad)} of {len(runs)} runs stopped with numerical_error (their beliefs became NaN or "
        f"infinite; grid points {points}); check {', '.join(NUMERIC_SUSPECTS)}"
    )


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and population std of the finite values (NaN, NaN if none)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return (float(v.mean()), float(v.std())) if len(v) else (np.nan, np.nan)


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """'0.75 ± 0.02', or '-' when there is no value."""
    return "-" if not np.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def accuracy_at(frame: pd.DataFrame, levels: Sequence[float], column: str = "aggregate/all/top1") -> pd.DataFrame:
    """Accuracy of every (grid, seed) run at given labels-per-item levels (interpolated).

    NaN where a run stopped before reaching a level.
    """
    rows = []
    for (grid, seed), run in frame.groupby(["grid", "seed"]):
        x, y = run["cost_per_item"].to_numpy(), run[column].to_numpy()
        row = {"grid": grid, "seed": seed}
        for level in levels:
            row[f"{level:g}"] = float(np.interp(level, x, y)) if level <= x.max() else np.nan
        row["end"] = float(y[-1])
        row["end_cost_per_item"] = float(x[-1])
        rows.append(row)
    return pd.DataFrame(rows)


def _all_reached_cell(values: np.ndarray) -> str:
    """'mean ± std' (one decimal) when every value is finite, else 'n/a (k/S reached)'."""
    reached = int(np.isfinite(values).sum())
    if reached < len(values):
        return f"n/a ({reached}/{len(values)} reached)"
    return format_mean_std(*mean_std(values), digits=1)


def summary_table(
    frame: pd.DataFrame, points: Sequence[dict[str, Any]], levels: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 2.5)
) -> str:
    """Markdown: mean +- std over seeds of top-1 accuracy at a few labels-per-item levels.

    A level that not every seed of a grid point reached reads ``n/a (k/S reached)``: a mean
    over the seeds that got there would favour them.
    """
    acc = accuracy_at(frame, levels)
    cols = [f"{lv:g}" for lv in levels] + ["end"]
    header = "| grid | settings | " + " | ".join(f"acc@{c}" for c in cols) + " | labels/item at end |"
    lines = [header, "|" + "---|" * (len(cols) + 3)]
    for grid, runs in acc.groupby("grid"):
        settings = ", ".join(f"{k}={v:g}" for k, v in points[grid].items()) or "-"
        cells = [_all_reached_cell(100 * runs[c].to_numpy()) for c in cols]
        end = format_mean_std(*mean_std(runs["end_cost_per_item"].to_numpy()))
        lines.append(f"| {grid} | {settings} | " + " | ".join(cells) + f" | {end} |")
    return "\n".join(lines)


def seed_curve(rows: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """One seed's (x, y) in step order, NaN metrics dropped, repeated x kept once (the last).

    The last value at a repeated cost is the latest state reached for that many labels.
    """
    rows = rows.sort_values("step")
    x = rows["cost_per_item"].to_numpy(float)
    y = rows[column].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    last = np.append(x[1:] != x[:-1], True) if len(x) else np.zeros(0, bool)
    return x[last], y[last]


def seed_curves(rows: pd.DataFrame, column: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed (in seed order), its `seed_curve` of `column` ([] when the column is absent)."""
    if column not in rows.columns:
        return []
    return [seed_curve(r, column) for _, r in rows.groupby("seed", sort=True)]


def x_at_target(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """Labels per image at which y first reaches `target` (same units), NaN if never.

    Linear interpolation between the last point below the target and the first at or above
    it; x[0] if the curve starts at or above it. `x`, `y` in step order.
    """
    hit = np.flatnonzero(y >= target - REACH_TOL)
    if not len(hit):
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    frac = np.clip((target - y[i - 1]) / (y[i] - y[i - 1]), 0.0, 1.0)
    return float(x[i - 1] + frac * (x[i] - x[i - 1]))


def last_values(rows: pd.DataFrame, column: str) -> np.ndarray:
    """Per seed, the metric at the run's last logged step (NaN if not logged)."""
    if column not in rows.columns:
        return np.full(rows["seed"].nunique(), np.nan)
    last = rows.sort_values("step").groupby("seed", sort=True).tail(1).sort_values("seed")
    return last[column].to_numpy(float)


def targets_table(rows: pd.DataFrame, targets: Sequence[float]) -> tuple[dict[str, Any], list[str]]:
    """x@target of one grid point's rows: CSV fields and markdown cells.

    Mean and std are given only when every seed reached the target (percent top-1).
    """
    curves = seed_curves(rows, "aggregate/all/top1")
    fields: dict[str, Any] = {}
    cells = []
    for t in targets:
        xs = np.array([x_at_target(x, y, t / 100.0) for x, y in curves])
        reached = int(np.isfinite(xs).sum())
        mean, std = mean_std(xs) if reached == len(xs) else (np.nan, np.nan)
        key = f"x@{t:g}"
        fields.update({f"{key}_mean": mean, f"{key}_std": std, f"{key}_reached": reached})
        cells.append(format_mean_std(mean, std) if reached == len(xs) else f"n/a ({reached}/{len(xs)} reached)")
    return fields, cells


def end_point(rows: pd.DataFrame) -> tuple[dict[str, Any], list[str]]:
    """End point of one grid point's rows: labels per image, aggregate and learner top-1 / ECE (percent)."""
    fields: dict[str, Any] = {}
    cells = []
    spec = (
        ("end_cost_per_item", "cost_per_item", 1.0, 2),
        ("end_top1", "aggregate/all/top1", 100.0, 1),
        ("end_ece", "aggregate/all/ece", 100.0, 1),
        ("learner_end_top1", "learner/all/top1", 100.0, 1),
        ("learner_end_ece", "learner/all/ece", 100.0, 1),
    )
    for name, column, scale, digits in spec:
        mean, std = mean_std(scale * last_values(rows, column))
        fields.update({f"{name}_mean": mean, f"{name}_std": std})
        cells.append(format_mean_std(mean, std, digits))
    return fields, cells


def early_stop_point(runs: pd.DataFrame | None, num_seeds: int) -> tuple[dict[str, Any], str, str]:
    """Early-stop point and stop reasons of one grid point's runs.csv rows.

    Returns:
      (CSV fields, the early-stop markdown cell, the stop-reasons cell); `runs` None when
      there is no runs.csv.
    """
    if runs is None or "early_stop_cost_per_item" not in runs.columns:
        empty = {"early_stop_mean": np.nan, "early_stop_std": np.nan, "early_stop_fired": np.nan, "stop_reasons": ""}
        return empty, "- (no runs.csv)", "-"
    fired_at = runs["early_stop_cost_per_item"].to_numpy(float)
    fired = int(np.isfinite(fired_at).sum())
    mean, std = mean_std(fired_at)
    if fired == 0:
        cell = "never fired"
    else:
        cell = format_mean_std(mean, std) + ("" if fired == num_seeds else f" ({fired}/{num_seeds} fired)")
    counts = runs["stop_reason"].value_counts(sort=False) if "stop_reason" in runs else pd.Series(dtype=int)
    reasons = ", ".join(f"{k}: {v}" for k, v in counts.items())
    fields = {"early_stop_mean": mean, "early_stop_std": std, "early_stop_fired": fired, "stop_reasons": reasons}
    return fields, cell, reasons or "-"
