"""Figures of a report: seeds averaged into bands, drawn with target lines, markers and a zoom.

Pure drawing on prepared inputs: `jaxanno.report` reads the workdirs and builds `Curve`s and
`Series`; this module averages seeds onto a common x grid (`mean_band`), decides whether a
zoom panel is needed (`zoom_range`) and draws `Figure`s without pyplot (no display, no
global state). Metric values are fractions here and are drawn in percent.

Markers (the legend explains them):
  o  x@T: where the mean over seeds of the per-seed x@T lies on the T% line, drawn only when
     every seed reached T (as in the table).
  v  where the early stopper fired: mean labels per image over the seeds where it fired, on
     the curve's mean.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib import transforms
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

MAX_GRID_POINTS = 1000  # common x grid size cap: plots stay light at ImageNet-100 scale
SQUEEZED = 0.2  # a curve spanning under this fraction of the y axis is squeezed
ZOOM_AT_MOST = 0.4  # zoom only when the squeezed curves share a band under this fraction
TARGET_MARKER, STOP_MARKER = "o", "v"
BAND_NOTE = "mean ± 1 std over seeds; dashed: some seeds had stopped"


@dataclasses.dataclass
class Band:
    """Seeds of one curve averaged on a common x grid (M points)."""

    x: np.ndarray  # (M,) labels per image, increasing
    mean: np.ndarray  # (M,) mean over the seeds covering x (NaN where none does)
    std: np.ndarray  # (M,) population std over the same seeds
    count: np.ndarray  # (M,) i64, number of seeds whose run covers x
    num_seeds: int


@dataclasses.dataclass
class Curve:
    """One line of a figure and the points to mark on it (x in labels per image, y a fraction)."""

    label: str
    band: Band
    crossings: tuple[tuple[float, float], ...] = ()  # (mean x@T, T) of the targets every seed reached
    early_stop: float = math.nan  # mean labels per image where the early stopper fired (NaN: never)
    color: int = -1  # colour index, so that a curve keeps its colour in every figure (-1: its position)

    def stop_point(self) -> tuple[float, float] | None:
        """(x, y) of the early-stop marker on the mean line, None when there is none."""
        y = value_at(self.band, self.early_stop)
        return None if math.isnan(y) else (self.early_stop, y)


@dataclasses.dataclass
class Series:
    """Final values against a swept setting (P points)."""

    label: str
    x: np.ndarray  # (P,) setting values, increasing
    mean: np.ndarray  # (P,) mean over seeds
    std: np.ndarray  # (P,) population std over seeds
    group: int = 0  # colour: series of one group (e.g. a run's aggregate and learner) share it
    dashed: bool = False


def seeds_text(n: int) -> str:
    """'1 seed', '4 seeds'."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def common_grid(curves: Sequence[tuple[np.ndarray, np.ndarray]], max_points: int = MAX_GRID_POINTS) -> np.ndarray:
    """Sorted union of the seeds' x values (thinned to about `max_points`, ends kept)."""
    xs = [x for x, _ in curves if len(x)]
    if not xs:
        return np.zeros(0)
    grid = np.unique(np.concatenate(xs))
    if len(grid) > max_points:
        ends = np.concatenate([[x[0], x[-1]] for x in xs])
        grid = np.unique(np.concatenate([np.linspace(grid[0], grid[-1], max_points), ends]))
    return grid


def mean_band(curves: Sequence[tuple[np.ndarray, np.ndarray]], max_points: int = MAX_GRID_POINTS) -> Band:
    """Average per-seed curves on a common grid without extrapolating any of them.

    Args:
      curves: per seed, (x, y) with x increasing (see `results.seed_curve`).

    Returns:
      A `Band`; at each x only the seeds whose own x range covers it contribute.
    """
    x = common_grid(curves, max_points)
    values = np.full((len(curves), len(x)), np.nan)
    for i, (cx, cy) in enumerate(curves):
        if len(cx):
            inside = (x >= cx[0]) & (x <= cx[-1])
            values[i, inside] = np.interp(x[inside], cx, cy)
    count = np.isfinite(values).sum(axis=0)
    filled = np.where(np.isfinite(values), values, 0.0)
    mean = np.where(count > 0, filled.sum(0) / np.maximum(count, 1), np.nan)
    var = np.where(np.isfinite(values), (values - mean) ** 2, 0.0).sum(0) / np.maximum(count, 1)
    std = np.where(count > 0, np.sqrt(var), np.nan)
    return Band(x=x, mean=mean, std=std, count=count, num_seeds=len(curves))


def value_at(band: Band, x: float) -> float:
    """The band's mean at `x` (linear between grid points); NaN outside the covered range."""
    covered = band.count > 0
    if not np.isfinite(x) or not covered.any():
        return math.nan
    bx, by = band.x[covered], band.mean[covered]
    return float(np.interp(x, bx, by)) if bx[0] <= x <= bx[-1] else math.nan


def zoom_range(bands: Sequence[Band]) -> tuple[float, float] | None:
    """The y range to zoom into when some curves are squeezed into a thin part of the axis.

    A curve is squeezed when its own range (mean +- std) spans under `SQUEEZED` of the whole
    figure's range (e.g. learner methods at 80-92% beside a DS curve from 5%). The zoom is
    the range of all squeezed curves, if that is under `ZOOM_AT_MOST` of the whole range;
    else None. Same units as the bands.
    """
    ranges = []
    for band in bands:
        ok = band.count > 0
        if ok.any():
            ranges.append((np.min((band.mean - band.std)[ok]), np.max((band.mean + band.std)[ok])))
    if len(ranges) < 2:
        return None
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    span = high - low
    squeezed = [r for r in ranges if r[1] - r[0] < SQUEEZED * span]
    if not squeezed or span <= 0:
        return None
    z_low, z_high = min(r[0] for r in squeezed), max(r[1] for r in squeezed)
    if z_high - z_low >= ZOOM_AT_MOST * span:
        return None
    pad = 0.08 * max(z_high - z_low, 0.01 * span)
    return float(z_low - pad), float(z_high + pad)


def _draw_curves(ax, curves: Sequence[Curve], colors) -> None:
    """Bands, lines (solid where every seed covers x, dashed where some do) and markers."""
    for curve, color in zip(curves, colors):
        band = curve.band
        covered, full = band.count > 0, band.count == band.num_seeds
        mean, std = 100 * band.mean, 100 * band.std
        ax.fill_between(band.x, mean - std, mean + std, where=covered, color=color, alpha=0.18, linewidth=0)
        ax.plot(band.x, np.where(covered, mean, np.nan), color=color, linestyle="--", linewidth=1.2)
        ax.plot(band.x, np.where(full, mean, np.nan), color=color, linewidth=1.8, label=curve.label)
        for x, y in curve.crossings:
            ax.plot(x, 100 * y, TARGET_MARKER, color=color, markerfacecolor="white", markersize=5, zorder=4)
        stop = curve.stop_point()
        if stop is not None:
            ax.plot(stop[0], 100 * stop[1], STOP_MARKER, color=color, markeredgecolor="black", markersize=7, zorder=5)


def _target_lines(ax, levels: Sequence[float]) -> None:
    """Dotted lines at the targets inside the axis' range, labelled at the right edge."""
    low, high = ax.get_ylim()
    at_right = transforms.blended_transform_factory(ax.transAxes, ax.transData)
    for level in levels:  # only inside the data's range: the guides must not rescale the axis
        if low <= level <= high:
            ax.axhline(level, color="0.6", linestyle=":", linewidth=0.8, zorder=0)
            ax.text(1.01, level, f"{level:g}%", transform=at_right, fontsize="x-small", color="0.4", va="center")
    ax.set_ylim(low, high)


def _legend_handles(curves: Sequence[Curve], ax) -> tuple[list, list[str]]:
    """The curves' lines, then one entry per kind of marker that was drawn."""
    handles, labels = ax.get_legend_handles_labels()
    if any(c.crossings for c in curves):
        handles.append(Line2D([], [], marker=TARGET_MARKER, linestyle="", color="0.3", markerfacecolor="white"))
        labels.append("x@T: every seed reached T (mean x on the T% line)")
    if any(c.stop_point() is not None for c in curves):
        handles.append(Line2D([], [], marker=STOP_MARKER, linestyle="", color="0.3", markeredgecolor="black"))
        labels.append("early stopper fired (mean over the seeds where it fired)")
    return handles, labels


def _title(fig: Figure, title: str, subtitle: str, above: float) -> None:
    """The title, then the subtitle's lines, bottom-aligned just above the axes (and their titles)."""
    fig.suptitle("\n".join([title, *subtitle.splitlines()]), fontsize="medium", y=above, va="bottom")


def plot_curves(
    curves: Sequence[Curve], ylabel: str, title: str, subtitle: str = "", hlines: Sequence[float] = ()
) -> Figure:
    """A paper-style figure: x labels per image, y the metric in percent, one line per curve.

    A second, zoomed panel is added when `zoom_range` finds squeezed curves. `hlines` are
    target levels in percent. Legend and notes sit below the axes, so that no number of
    curves hides the data.
    """
    zoom = zoom_range([c.band for c in curves])
    fig = Figure(figsize=(11.0 if zoom else 6.0, 4.2), dpi=150)
    axes = fig.subplots(1, 2, gridspec_kw={"wspace": 0.22}) if zoom else [fig.add_subplot()]
    index = [c.color if c.color >= 0 else i for i, c in enumerate(curves)]
    cmap = matplotlib.colormaps["tab10" if max(index, default=0) < 10 else "tab20"]
    colors = [cmap(i % cmap.N) for i in index]
    for i, ax in enumerate(axes):
        _draw_curves(ax, curves, colors)
        if zoom:
            ax.set_title("all curves" if i == 0 else "zoom", fontsize="small")
        if i == 1:
            ax.set_ylim(100 * zoom[0], 100 * zoom[1])
        _target_lines(ax, hlines)
        ax.set_xlabel("labels per image")
        ax.set_ylabel(ylabel)
        ax.set_xlim(left=0)
        ax.grid(True, color="0.9", linewidth=0.6)
    _title(fig, title, subtitle, above=0.94 if zoom else 0.9)
    handles, labels = _legend_handles(curves, axes[0])
    fig.legend(handles, labels, fontsize="small", title=BAND_NOTE, title_fontsize="x-small", loc="upper center",
               bbox_to_anchor=(0.5, 0.0), frameon=False, ncol=2 if zoom and len(labels) > 3 else 1)  # fmt: skip
    return fig


def plot_final(panels: Sequence[tuple[str, Sequence[Series]]], xlabel: str, title: str, subtitle: str = "") -> Figure:
    """Final values against a swept setting: one panel per (y label, series), error bars +- 1 std.

    The x axis is logarithmic when every value is positive and they span a factor of 10.
    """
    fig = Figure(figsize=(5.0 * len(panels), 4.0), dpi=150)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    values = np.concatenate([s.x for _, series in panels for s in series])
    log_x = bool(np.all(values > 0) and values.max() >= 10 * values.min())
    cmap = matplotlib.colormaps["tab10"]
    for ax, (ylabel, series) in zip(axes, panels):
        for s in series:
            ax.errorbar(s.x, s.mean, yerr=s.std, marker="o", markersize=4, capsize=3, label=s.label,
                        color=cmap(s.group % cmap.N), linestyle="--" if s.dashed else "-")  # fmt: skip
        if log_x:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(np.unique(values), [f"{v:g}" for v in np.unique(values)])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, color="0.9", linewidth=0.6)
    _title(fig, title, subtitle, above=0.9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize="small", title="mean ± 1 std over seeds", title_fontsize="x-small",
               loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False, ncol=2)  # fmt: skip
    return fig


def render(fig: Figure) -> dict[str, bytes]:
    """PNG and SVG bytes of a figure (SVG without a date, so reruns are identical)."""
    out = {}
    for fmt, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=meta, bbox_inches="tight")
        out[fmt] = buf.getvalue()
    return out
