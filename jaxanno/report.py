"""Reports over finished launches: accuracy-vs-labels-per-image figures and the x@target table.

Reads one or more workdirs written by a launch (`jaxanno.runner`; metrics.csv required; runs.csv and
config.json used when present) and writes, under one output folder:

  top1_aggregate.{png,svg}   top-1 accuracy of the aggregated labels vs labels per image
  top1_learner.{png,svg}     the same for the learner (only if some run has one)
  ece_aggregate.{png,svg}    expected calibration error of the aggregated labels
  ece_learner.{png,svg}      the learner's ECE (only if some run has one)
  report.md / report.csv     x@target, early-stop point, end point, learner beside aggregate

Conventions (also in docs/report.md):
  * One curve per (workdir, grid point). Each seed's curve (cost_per_item, metric), in step
    order, is linearly interpolated onto a common x grid, only inside that seed's own x range:
    nothing is extrapolated. The line is the mean over the seeds that cover x and the band
    is mean +- 1 std (population std, ddof=0, as in summary.md) over the same seeds. The line
    is solid where every seed covers x and dashed where only some still do.
  * x@T is the first point where the seed's top-1 reaches T%, linearly interpolated between
    the last logged step below T and the first at or above it. Mean and std are given only
    when every seed reached T; otherwise the table says how many did.
  * Accuracies and ECE in the report are percentages; metrics.csv holds fractions.

Every output is rendered in memory first and then written via a temporary file and a
rename, so a failed report writes nothing and a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jaxanno import errors, outputs, results

DEFAULT_TARGETS = (75.0, 80.0, 85.0, 90.0)
MAX_GRID_POINTS = 1000  # common x grid size cap: plots stay light at ImageNet-100 scale
_REQUIRED = ("grid", "seed", "step", "cost_per_item", "aggregate/all/top1")
# (file stem, metrics.csv column, y label, title); a figure is drawn if any run has data.
FIGURES = (
    ("top1_aggregate", "aggregate/all/top1", "top-1 accuracy (%)", "Aggregated labels: top-1 accuracy"),
    ("top1_learner", "learner/all/top1", "top-1 accuracy (%)", "Learner: top-1 accuracy"),
    ("ece_aggregate", "aggregate/all/ece", "ECE (%)", "Aggregated labels: calibration error"),
    ("ece_learner", "learner/all/ece", "ECE (%)", "Learner: calibration error"),
)
REPORT_FILES = ("report.md", "report.csv") + tuple(f"{f[0]}.{ext}" for f in FIGURES for ext in ("png", "svg"))


class ReportError(ValueError):
    """A workdir or option that cannot be reported on; nothing has been written."""


@dataclasses.dataclass
class Run:
    """One workdir, loaded and checked."""

    name: str  # legend and table label: experiment/method, or the workdir name
    workdir: pathlib.Path
    config: dict[str, Any]  # config.json ({} when absent)
    metrics: pd.DataFrame  # metrics.csv, one row per (grid, seed, step)
    runs: pd.DataFrame | None  # runs.csv, one row per (grid, seed); None when absent
    settings: list[str]  # swept setting columns (between 'seed' and 'step' in metrics.csv)


@dataclasses.dataclass
class Band:
    """Seeds of one curve averaged on a common x grid (M points)."""

    x: np.ndarray  # (M,) labels per image, increasing
    mean: np.ndarray  # (M,) mean over the seeds covering x (NaN where none does)
    std: np.ndarray  # (M,) population std over the same seeds
    count: np.ndarray  # (M,) i64, number of seeds whose run covers x
    num_seeds: int


def load_run(workdir: os.PathLike) -> Run:
    """Read and check one workdir.

    Raises:
      ReportError: no metrics.csv, an unreadable or empty one, or missing columns.
    """
    workdir = pathlib.Path(workdir)
    path = workdir / "metrics.csv"
    if not workdir.is_dir():
        raise ReportError(f"{workdir}: not a directory")
    if not path.is_file():
        raise ReportError(f"{workdir}: no metrics.csv (is this a jaxanno workdir? has the run finished?)")
    try:
        metrics = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: cannot be read as CSV ({err})") from None
    missing = [c for c in _REQUIRED if c not in metrics.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {missing}")
    if metrics.empty:
        raise ReportError(f"{path}: no rows")
    cols = list(metrics.columns)
    settings = [c for c in cols[: cols.index("step")] if c not in ("grid", "seed")]
    runs = pd.read_csv(workdir / "runs.csv") if (workdir / "runs.csv").is_file() else None
    config = _read_config(workdir / "config.json")
    return Run(
        name=_run_name(config, workdir), workdir=workdir, config=config, metrics=metrics, runs=runs, settings=settings
    )


def _read_config(path: pathlib.Path) -> dict[str, Any]:
    """config.json as a dict; {} when absent."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None


def _run_name(config: dict[str, Any], workdir: pathlib.Path) -> str:
    """'experiment/method' from the resolved config, else the workdir's name."""
    parts = [str(config[k]) for k in ("experiment", "method") if config.get(k)]
    return "/".join(parts) if parts else workdir.resolve().name


def _disambiguate(runs: Sequence[Run]) -> None:
    """Runs sharing a name (same experiment/method) get their workdir name appended."""
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({run.workdir.resolve().name})"


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


def _settings_label(run: Run, point: pd.Series) -> str:
    """'risk_threshold=0.1, ...' for a grid point ('' when nothing was swept)."""
    parts = []
    for name in run.settings:
        value = point[name]
        parts.append(f"{name}={value:g}" if isinstance(value, (float, np.floating)) else f"{name}={value}")
    return ", ".join(parts)


def _curve_label(run: Run, point: pd.Series) -> str:
    settings = _settings_label(run, point)
    return f"{run.name}, {settings}" if settings else run.name


def _grid_points(run: Run):
    """Yield (grid index, its first metrics row, its rows) in grid order."""
    for grid, rows in run.metrics.groupby("grid", sort=True):
        yield int(grid), rows.iloc[0], rows


def _runs_rows(run: Run, grid: int) -> pd.DataFrame | None:
    """runs.csv rows of one grid point (None without runs.csv)."""
    if run.runs is None or "grid" not in run.runs.columns:
        return None
    return run.runs[run.runs["grid"] == grid]


def summarize(runs: Sequence[Run], targets: Sequence[float] = DEFAULT_TARGETS) -> tuple[pd.DataFrame, list[list[str]]]:
    """One row per (run, grid point): x@targets, early stop, end point.

    Returns:
      (the CSV table, with mean/std columns in labels per image or percent; the markdown
      cells of the same rows).
    """
    records, md_rows = [], []
    setting_cols = list(dict.fromkeys(s for r in runs for s in r.settings))
    for run in runs:
        for grid, point, rows in _grid_points(run):
            n = int(rows["seed"].nunique())
            rec: dict[str, Any] = {"run": run.name, "workdir": str(run.workdir), "grid": grid}
            rec.update({s: point[s] if s in run.settings else np.nan for s in setting_cols})
            rec.update({"settings": _settings_label(run, point), "num_seeds": n})
            t_fields, t_cells = results.targets_table(rows, targets)
            e_fields, e_cell, reasons = results.early_stop_point(_runs_rows(run, grid), n)
            end_fields, end_cells = results.end_point(rows)
            records.append({**rec, **t_fields, **e_fields, **end_fields})
            md_rows.append([run.name, rec["settings"] or "-", str(n), *t_cells, e_cell, *end_cells, reasons])
    return pd.DataFrame(records), md_rows


def _markdown(runs: Sequence[Run], md_rows: list[list[str]], targets: Sequence[float], figures: list[str]) -> str:
    """report.md: run list, the table, how it was computed, the figures."""
    head = (
        ["run", "settings", "seeds"]
        + [f"x@{t:g}%" for t in targets]
        + [
            "early stop",
            "labels/image at end",
            "top-1 % at end",
            "ECE % at end",
            "learner top-1 % at end",
            "learner ECE % at end",
            "stop reasons",
        ]
    )
    lines = ["# Annotation report", "", "Runs:"]
    for run in runs:
        sim = run.config.get("simulation")
        extra = f", simulation {sim}" if sim else ""
        lines.append(f"- `{run.name}`: {run.workdir}{extra}")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in md_rows]
    lines += [
        "",
        "x@T: labels per image at which the top-1 accuracy of the aggregated labels first reaches",
        "T%, linearly interpolated between logged steps; mean ± std (population) over seeds,",
        "given only when every seed reached T (else: how many did). Early stop: labels per image",
        "where the early stopper fired (over the seeds where it fired). End: the last logged step.",
        "Curves: each seed interpolated on a common x grid without extrapolation; line = mean,",
        "band = ± 1 std over the seeds still running at x; dashed where some seeds had stopped.",
    ]
    if figures:
        lines += [""] + [f"![{stem}]({stem}.png)" for stem in figures]
    return "\n".join(lines) + "\n"


def curve_bands(runs: Sequence[Run], column: str) -> list[tuple[str, Band]]:
    """(legend label, band) for every (run, grid point) that has data in `column`."""
    out = []
    for run in runs:
        for _, point, rows in _grid_points(run):
            curves = results.seed_curves(rows, column)
            if any(len(x) for x, _ in curves):
                out.append((f"{_curve_label(run, point)} ({len(curves)} seeds)", mean_band(curves)))
    return out


def plot_bands(bands: Sequence[tuple[str, Band]], ylabel: str, title: str, hlines: Sequence[float] = ()) -> Figure:
    """A paper-style figure: x labels per image, y the metric in percent, one line per band.

    Solid where every seed covers x, dashed where only some do; the shaded band is +- 1 std.
    Built on a bare `Figure` (Agg/SVG canvases), so no display or pyplot state is touched.
    """
    fig = Figure(figsize=(6.0, 4.2), dpi=150)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10" if len(bands) <= 10 else "tab20"]
    for i, (label, band) in enumerate(bands):
        color = cmap(i % cmap.N)
        covered, full = band.count > 0, band.count == band.num_seeds
        mean, std = 100 * band.mean, 100 * band.std
        ax.fill_between(band.x, mean - std, mean + std, where=covered, color=color, alpha=0.18, linewidth=0)
        ax.plot(band.x, np.where(covered, mean, np.nan), color=color, linestyle="--", linewidth=1.2)
        ax.plot(band.x, np.where(full, mean, np.nan), color=color, linewidth=1.8, label=label)
    low, high = ax.get_ylim()
    for level in hlines:  # target guides only inside the data's range: they must not rescale
        if low <= level <= high:
            ax.axhline(level, color="0.6", linestyle=":", linewidth=0.8, zorder=0)
    ax.set_ylim(low, high)
    ax.set_xlabel("labels per image")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xlim(left=0)
    ax.grid(True, color="0.9", linewidth=0.6)
    # Below the axes, so that no number of curves hides the data.
    ax.legend(
        fontsize="small",
        title="mean ± 1 std over seeds; dashed: some seeds had stopped",
        title_fontsize="x-small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        frameon=False,
    )
    return fig


def _render(fig: Figure) -> dict[str, bytes]:
    """PNG and SVG bytes of a figure (SVG without a date, so reruns are identical)."""
    out = {}
    for fmt, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=meta, bbox_inches="tight")
        out[fmt] = buf.getvalue()
    return out


def _check_targets(targets: Sequence[float]) -> list[float]:
    targets = [float(t) for t in targets]
    if not targets or any(not (1.0 < t <= 100.0) for t in targets):
        raise ReportError(f"targets {targets}: give top-1 accuracies in percent, each in (1, 100]")
    return targets


def write_report(
    workdirs: Sequence[os.PathLike], out: os.PathLike, targets: Sequence[float] = DEFAULT_TARGETS
) -> dict[str, Any]:
    """Plots and tables for one or more workdirs, written atomically under `out`.

    Args:
      workdirs: launch outputs (each with metrics.csv; runs.csv and config.json optional).
      out: output folder, created if needed. Report files from an earlier call that this
        call does not produce (e.g. learner figures) are removed.
      targets: top-1 accuracies in percent for the x@target columns.

    Returns:
      {'out': folder, 'files': paths written, 'figures': figure stems, 'table': the
      report.csv frame (one row per workdir and grid point)}.

    Raises:
      ReportError: a bad workdir or option; then nothing has been written.
    """
    targets = _check_targets(targets)
    if not workdirs:
        raise ReportError("no workdir given")
    runs = [load_run(w) for w in workdirs]
    _disambiguate(runs)
    table, md_rows = summarize(runs, targets)
    files: dict[str, bytes] = {}
    figures = []
    for stem, column, ylabel, title in FIGURES:
        bands = curve_bands(runs, column)
        if not bands:
            continue
        fig = plot_bands(bands, ylabel, title, hlines=targets if "top1" in column else ())
        files.update({f"{stem}.{fmt}": data for fmt, data in _render(fig).items()})
        figures.append(stem)
    files["report.md"] = _markdown(runs, md_rows, targets, figures).encode()
    files["report.csv"] = table.to_csv(index=False, float_format="%.6g").encode()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        outputs.atomic_write_bytes(out / name, data)
    for stale in set(REPORT_FILES) - set(files):
        (out / stale).unlink(missing_ok=True)
    return {"out": out, "files": [out / n for n in files], "figures": figures, "table": table}


def main(argv: Sequence[str] | None = None, prog: str = "python -m jaxanno.report") -> int:
    """`python -m jaxanno.report WORKDIR [WORKDIR...] [--out=DIR] [--targets=75,80,85,90]`; the exit code.

    Args:
      argv: the arguments after the program name (default: ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    return errors.run_main(lambda: _main(argv, prog), errors.wants_verbose([prog, *argv]))


def _main(argv: list[str], prog: str) -> int:
    parser = errors.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="launch output folders")
    parser.add_argument("--out", default=None, help="output folder (default: WORKDIR/report for one workdir)")
    parser.add_argument(
        "--targets",
        default=",".join(f"{t:g}" for t in DEFAULT_TARGETS),
        help="top-1 accuracies in percent for x@target, comma-separated",
    )
    parser.add_argument("--verbose", action="store_true", help=errors.VERBOSE_HELP)
    args = parser.parse_args(argv)
    if args.out is None and len(args.workdirs) > 1:
        raise errors.UsageError(f"--out: not given; with {len(args.workdirs)} workdirs, give the report folder")
    out = args.out or os.path.join(args.workdirs[0], "report")
    try:
        targets = [float(t) for t in args.targets.split(",") if t.strip()]
    except ValueError:
        raise errors.UsageError(f"--targets: found {args.targets!r}; expected numbers such as 75,80,85,90") from None
    result = write_report(args.workdirs, out, targets)
    print((result["out"] / "report.md").read_text())
    print(f"wrote {len(result['files'])} file(s) to {result['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
