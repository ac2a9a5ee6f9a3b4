"""jaxanno's numbers for a curve, measured from its run's workdir as the paper reports them.

Per seed (x = labels per image, y = accuracy in percent; `results.seed_curve` order):

* ``x@T``: first x where y reaches T, linear between logged steps (`results.x_at_target`,
  the convention of the launch summary and the report); NaN when the seed never does.
* ``acc@b``: y at x = b, linear between steps; NaN when the seed stopped before b (more than
  `X_TOL` before it).
* ``start_acc`` (x = 0), ``end_x`` / ``end_acc`` (the last step), ``peak_acc`` (the maximum).
* ``stop_x`` / ``stop_acc``: where the early stopper fired (runs.csv) and y there; the run's
  end when it never fired, unless the label budget cut the run (a quick run): then NaN, the
  run ended before its stop point. The paper's solid lines end at this point.

Over seeds: mean ± population std when every seed has a value; ``n/a (k/S reached)`` when
only k of S do (a mean over the seeds that got there would favour them).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import numpy as np
import pandas as pd

from jaxanno import results
from jaxanno.reproduce.grid import CurveSpec, Panel

# A run whose budget is b labels per image ends a hair below b (labels come in whole HITs of a
# float32 count): a budget level within this many labels per image of the end counts as reached.
X_TOL = 1e-4


class MissingResults(ValueError):
    """A run's workdir has no finished results."""


@functools.cache
def _read(workdir: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    folder = pathlib.Path(workdir)
    if not (folder / "metrics.csv").is_file():
        raise MissingResults(f"{folder}: no metrics.csv (the run has not finished)")
    runs = pd.read_csv(folder / "runs.csv") if (folder / "runs.csv").is_file() else None
    return pd.read_csv(folder / "metrics.csv"), runs


def clear_cache() -> None:
    """Forget workdirs read so far (after a run rewrote them)."""
    _read.cache_clear()


def select_lane(frame: pd.DataFrame, lane: tuple[tuple[str, float], ...]) -> pd.DataFrame:
    """The rows of one grid point: every swept setting of `lane` at its value."""
    keep = np.ones(len(frame), bool)
    for name, value in lane:
        if name not in frame.columns:
            raise MissingResults(f"no column {name!r} for the lane {dict(lane)}")
        keep &= np.isclose(frame[name].to_numpy(float), value)
    return frame[keep]


@dataclasses.dataclass
class Measured:
    """One curve's values per seed, and its per-seed (x, y %) curves."""

    spec: CurveSpec
    values: dict[str, np.ndarray]
    curves: list[tuple[np.ndarray, np.ndarray]]
    fired: int  # seeds whose early stopper fired

    @property
    def seeds(self) -> int:
        return len(self.curves)

    def scalar(self, metric: str) -> float:
        """Mean over seeds when all have a value; inf when none reached an x@T; else NaN."""
        v = self.values.get(metric)
        if v is None or not len(v):
            return math.nan
        if np.isfinite(v).all():
            return float(v.mean())
        if metric.startswith("x@") and not np.isfinite(v).any():
            return math.inf
        return math.nan

    def cell(self, metric: str, digits: int = 2) -> str:
        v = self.values.get(metric)
        if v is None or not len(v):
            return "-"
        reached = int(np.isfinite(v).sum())
        if reached < len(v):
            return f"n/a ({reached}/{len(v)} reached)"
        return results.format_mean_std(*results.mean_std(v), digits)


def seed_values(x: np.ndarray, y: np.ndarray, stop_x: float, panel: Panel, cut: bool = False) -> dict[str, float]:
    """One seed's numbers (y in percent) for the panel's targets and budgets; `cut`: the budget ended the run."""
    out = {f"x@{t:g}": results.x_at_target(x, y, t) for t in panel.targets}
    out.update({f"acc@{b:g}": float(np.interp(b, x, y)) if b <= x[-1] + X_TOL else math.nan for b in panel.budgets})
    stop = stop_x if math.isfinite(stop_x) else (math.nan if cut else float(x[-1]))
    out.update(
        start_acc=float(y[0]) if x[0] == 0 else math.nan,
        end_x=float(x[-1]),
        end_acc=float(y[-1]),
        peak_acc=float(y.max()),
        stop_x=stop,
        stop_acc=float(np.interp(stop, x, y)) if math.isfinite(stop) else math.nan,
    )
    return out


def _stop(run_rows: pd.DataFrame | None, seed: int) -> tuple[float, bool]:
    """(labels per image where the seed's early stopper fired or NaN, whether the budget ended the run)."""
    if run_rows is None or "early_stop_cost_per_item" not in run_rows:
        return math.nan, False
    row = run_rows[run_rows["seed"] == seed]
    if row.empty:
        return math.nan, False
    cut = "stop_reason" in row and row["stop_reason"].iloc[0] == "budget_spent"
    return float(row["early_stop_cost_per_item"].iloc[0]), bool(cut)


def measure(workdir: pathlib.Path, spec: CurveSpec, panel: Panel) -> Measured:
    """Read a curve's run and measure it (see the module docstring)."""
    frame, runs = _read(str(workdir))
    rows = select_lane(frame, spec.lane)
    if rows.empty:
        raise MissingResults(f"{workdir}: no rows for the lane {dict(spec.lane)}")
    run_rows = select_lane(runs, spec.lane) if runs is not None else None
    curves, per_seed, fired = [], [], 0
    for seed, seed_rows in rows.groupby("seed", sort=True):
        x, y = results.seed_curve(seed_rows, panel.column)
        y = 100.0 * y
        stop, cut = _stop(run_rows, seed)
        fired += int(math.isfinite(stop))
        curves.append((x, y))
        per_seed.append(seed_values(x, y, stop, panel, cut))
    values = {k: np.array([s[k] for s in per_seed], float) for k in per_seed[0]}
    return Measured(spec, values, curves, fired)
