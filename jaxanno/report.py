"""Reports over finished launches: accuracy-vs-labels-per-image figures and the x@target table.

Reads one or more workdirs written by a launch (`jaxanno.runner`; metrics.csv required; runs.csv,
config.json and problem.json used when present) and writes, under one output folder:

  top1_aggregate.{png,svg}   top-1 accuracy of the aggregated labels vs labels per image
  top1_learner.{png,svg}     the same for the learner (only if some run has one)
  ece_aggregate.{png,svg}    expected calibration error of the aggregated labels
  ece_learner.{png,svg}      the learner's ECE (only if some run has one)
  final_vs_<setting>.{png,svg}  end-point top-1 and labels per image against each swept setting
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
  * A run is named from its resolved config: the experiment ('custom (K classes)' when the
    class list is not the experiment's, sizes that differ from the preset in brackets) and
    the method. Titles show what all curves share; legends only what tells them apart.
  * Accuracies and ECE in the report are percentages; metrics.csv holds fractions.

Every output is rendered in memory first and then written via a temporary file and a
rename, so a failed report writes nothing and a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from jaxanno import errors, figures, outputs, results
from jaxanno.data import amt

DEFAULT_TARGETS = (75.0, 80.0, 85.0, 90.0)
_REQUIRED = ("grid", "seed", "step", "cost_per_item", "aggregate/all/top1")
# (file stem, metrics.csv column, y label, title); a figure is drawn if any run has data.
FIGURES = (
    ("top1_aggregate", "aggregate/all/top1", "top-1 accuracy (%)", "Aggregated labels: top-1 accuracy"),
    ("top1_learner", "learner/all/top1", "top-1 accuracy (%)", "Learner: top-1 accuracy"),
    ("ece_aggregate", "aggregate/all/ece", "ECE (%)", "Aggregated labels: calibration error"),
    ("ece_learner", "learner/all/ece", "ECE (%)", "Learner: calibration error"),
)
FINAL_PREFIX = "final_vs_"  # final_vs_<setting>.{png,svg}, one per swept setting
REPORT_FILES = ("report.md", "report.csv") + tuple(f"{f[0]}.{ext}" for f in FIGURES for ext in ("png", "svg"))
# Experiment preset fields that change the problem; a run that overrides one says so in its name.
SIZE_FIELDS = ("n_data_per_class", "n_prototype_per_class", "n_data_distraction_per_class",
               "online.n_hits_per_step", "online.hit_size", "online.budget")  # fmt: skip
STANDIN_NOTE = "stand-in features (synthetic, not ImageNet images)"


class ReportError(ValueError):
    """A workdir or option that cannot be reported on; nothing has been written."""


@dataclasses.dataclass
class Run:
    """One workdir, loaded and checked."""

    name: str  # table label: experiment/method, or the workdir name
    workdir: pathlib.Path
    config: dict[str, Any]  # config.json ({} when absent)
    metrics: pd.DataFrame  # metrics.csv, one row per (grid, seed, step)
    runs: pd.DataFrame | None  # runs.csv, one row per (grid, seed); None when absent
    settings: list[str]  # swept setting columns (between 'seed' and 'step' in metrics.csv)
    problem: dict[str, Any] = dataclasses.field(default_factory=dict)  # problem.json ({} when absent)
    fields: dict[str, str] = dataclasses.field(default_factory=dict)  # experiment, method, simulation, [run]

    @property
    def data(self) -> str:
        """What the run's features are, from problem.json (else from config.json's data.source)."""
        if self.problem.get("data"):
            return str(self.problem["data"])
        source = (self.config.get("data") or {}).get("source")
        return "stand-in features" if source == "standin" else (f"{source} features" if source else "")

    @property
    def standin(self) -> bool:
        return self.data.startswith("stand-in")


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
    config = _read_json(workdir / "config.json")
    problem = _read_json(workdir / "problem.json")
    if isinstance(problem, list):  # a list of launch records: the first describes the data
        problem = problem[0] if problem and isinstance(problem[0], dict) else {}
    fields = run_fields(config) or {"run": workdir.resolve().name}
    name = "/".join(fields[k] for k in ("experiment", "method") if k in fields) or workdir.resolve().name
    return Run(name, workdir, config, metrics, runs, settings, problem, fields)


def _read_json(path: pathlib.Path) -> Any:
    """A JSON file's content; {} when absent."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None


def _get(tree: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def experiment_label(config: dict[str, Any]) -> str:
    """The experiment as the resolved config defines it.

    'imagenet_split_1' when the class list and sizes are the preset's; 'imagenet_split_1
    (n_data_per_class=20)' when sizes were overridden; 'custom (3 classes)' when the class
    list is not the experiment's (or there is no experiment); '' when the config names none.
    """
    name = config.get("experiment") or ""
    wnids = config.get("wnids") or []
    wnids = wnids.split() if isinstance(wnids, str) else list(wnids)
    preset = amt.experiments().get(name)
    custom = f"custom ({len(wnids)} class{'' if len(wnids) == 1 else 'es'})"
    if preset is None:
        return custom if wnids else name
    if wnids and wnids != list(preset["wnids"]):
        return custom
    changed = []
    for path in SIZE_FIELDS:
        value = _get(config, path)
        if value is not None and value != _get(preset, path):
            changed.append(f"{path.rpartition('.')[2]}={value}")
    return f"{name} ({', '.join(changed)})" if changed else name


def run_fields(config: dict[str, Any]) -> dict[str, str]:
    """{'experiment': ..., 'method': ..., 'simulation': ...} of a resolved config (those it has)."""
    out = {"experiment": experiment_label(config)}
    out.update({k: str(config[k]) for k in ("method", "simulation") if config.get(k)})
    return {k: v for k, v in out.items() if v}


def _disambiguate(runs: Sequence[Run]) -> None:
    """Runs sharing a name (same experiment/method) get their workdir name appended."""
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.fields["run"] = run.workdir.resolve().name
            run.name = f"{run.name} ({run.fields['run']})"


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def _settings_label(run: Run, point: pd.Series) -> str:
    """'risk_threshold=0.1, ...' for a grid point ('' when nothing was swept)."""
    return ", ".join(f"{name}={_value_text(point[name])}" for name in run.settings)


def _attributes(run: Run, point: pd.Series | None = None) -> dict[str, str]:
    """What identifies a curve: the run's fields, then each swept setting as 'name=value'."""
    attrs = dict(run.fields)
    if point is not None:
        attrs.update({name: f"{name}={_value_text(point[name])}" for name in run.settings})
    return attrs


def split_labels(attrs: Sequence[dict[str, str]]) -> tuple[list[str], list[str]]:
    """(a label per curve from the attributes that differ between curves, the values all share).

    A single curve, or curves that differ in nothing, are labelled by their method (or run).
    """
    keys = list(dict.fromkeys(k for a in attrs for k in a))
    varying = [k for k in keys if len({a.get(k) for a in attrs}) > 1]
    shared = [attrs[0][k] for k in keys if k not in varying]
    labels = []
    for a in attrs:
        label = ", ".join(a[k] for k in varying if k in a)
        labels.append(label or a.get("method") or a.get("run") or a.get("experiment") or "all")
    return labels, shared


def subtitle(runs: Sequence[Run], shared: Sequence[str]) -> str:
    """Title lines under the title: what every curve shares, then whether the data is a stand-in."""
    lines = [" · ".join(shared)]
    standin = [r for r in runs if r.standin]
    if standin and len(standin) == len(runs):
        lines.append(STANDIN_NOTE)
    elif standin:
        lines.append("stand-in features in " + ", ".join(r.name for r in standin))
    return "\n".join(line for line in lines if line)


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


def _markdown(runs: Sequence[Run], md_rows: list[list[str]], targets: Sequence[float], figs: list[str]) -> str:
    """report.md: run list, the table, how it was computed, the figures."""
    ends = ("labels/image at end", "top-1 % at end", "ECE % at end", "learner top-1 % at end", "learner ECE % at end")
    head = ["run", "settings", "seeds", *(f"x@{t:g}%" for t in targets), "early stop", *ends, "stop reasons"]
    lines = ["# Annotation report", "", "Runs:"]
    for run in runs:
        sim = run.config.get("simulation")
        extra = (f", simulation {sim}" if sim else "") + (f"; data: {run.data}" if run.data else "")
        lines.append(f"- `{run.name}`: {run.workdir}{extra}")
    if any(r.standin for r in runs):
        lines += ["", "Stand-in features are synthetic: they have the run's classes and image counts but are",
                  "not ImageNet images, so absolute accuracies are not the paper's."]  # fmt: skip
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
        "Markers: o at the mean x@T on the T% line (only when every seed reached T); v where the",
        "early stopper fired. A zoom panel is added when some curves fill only a thin part of the axis.",
    ]
    if figs:
        lines += [""] + [f"![{stem}]({stem}.png)" for stem in figs]
    return "\n".join(lines) + "\n"


def _marks(run: Run, grid: int, rows: pd.DataFrame, targets: Sequence[float]):
    """(x@T crossings every seed reached as (x, T fraction), early-stop x) of one grid point."""
    n = int(rows["seed"].nunique())
    fields, _ = results.targets_table(rows, targets) if targets else ({}, [])
    crossings = tuple((float(fields[f"x@{t:g}_mean"]), t / 100.0) for t in targets if fields[f"x@{t:g}_reached"] == n)
    stop = results.early_stop_point(_runs_rows(run, grid), n)[0]["early_stop_mean"]
    return crossings, float(stop)


def figure_curves(runs: Sequence[Run], column: str, targets: Sequence[float] = ()) -> tuple[list[figures.Curve], str]:
    """The curves of one figure (every (run, grid point) with data in `column`) and its subtitle.

    Legend labels name only what differs between the curves plus their seed count; what all
    share goes to the subtitle. `targets` (percent) adds x@T markers.
    """
    found = []
    points = [(run, grid, point, rows) for run in runs for grid, point, rows in _grid_points(run)]
    for color, (run, grid, point, rows) in enumerate(points):  # colour by position among all curves
        curves = results.seed_curves(rows, column)
        if any(len(x) for x, _ in curves):
            found.append(
                (run, _attributes(run, point), figures.mean_band(curves), _marks(run, grid, rows, targets), color)
            )
    labels, shared = split_labels([f[1] for f in found])
    out = [
        figures.Curve(f"{label} ({figures.seeds_text(band.num_seeds)})", band, crossings, stop, color)
        for label, (_, _, band, (crossings, stop), color) in zip(labels, found)
    ]
    used = list({id(f[0]): f[0] for f in found}.values())
    return out, subtitle(used, shared)


def _final_groups(runs: Sequence[Run], table: pd.DataFrame, setting: str):
    """Yield (label, rows of `table` sorted by `setting`): one group per run and values of its other settings."""
    swept = [r for r in runs if setting in r.settings]
    run_labels, _ = split_labels([r.fields for r in swept])
    for run, run_label in zip(swept, run_labels if len(swept) > 1 else [""] * len(swept)):
        rows = table[table["run"] == run.name]
        others = [s for s in run.settings if s != setting]
        for key, group in rows.groupby(others, sort=True) if others else [((), rows)]:
            key = key if isinstance(key, tuple) else (key,)
            parts = [run_label] + [f"{s}={_value_text(v)}" for s, v in zip(others, key)]
            yield ", ".join(p for p in parts if p), group.sort_values(setting)


def final_series(runs: Sequence[Run], table: pd.DataFrame, setting: str) -> list[tuple[str, list[figures.Series]]]:
    """Panels of the final-value figure of one swept setting: end top-1 (aggregate, learner dashed), end cost."""
    top1, cost = [], []
    for i, (label, rows) in enumerate(_final_groups(runs, table, setting)):
        x = rows[setting].to_numpy(float)
        col = lambda name: (rows[f"{name}_mean"].to_numpy(float), rows[f"{name}_std"].to_numpy(float))  # noqa: E731
        learner = bool(np.isfinite(rows["learner_end_top1_mean"]).any())
        name = label or "aggregated labels"
        top1.append(figures.Series(f"{label}, aggregated" if learner and label else name, x, *col("end_top1"), i))
        if learner:
            top1.append(figures.Series(f"{label}, learner" if label else "learner", x, *col("learner_end_top1"), i,
                                       dashed=True))  # fmt: skip
        cost.append(figures.Series(name, x, *col("end_cost_per_item"), i))
    return [("top-1 accuracy at end (%)", top1), ("labels per image at end", cost)]


def final_figures(runs: Sequence[Run], table: pd.DataFrame) -> dict[str, Any]:
    """{'final_vs_<setting>': Figure} for every setting swept over two or more values."""
    out = {}
    for setting in dict.fromkeys(s for r in runs for s in r.settings):
        if table[setting].nunique(dropna=True) < 2:
            continue
        swept = [r for r in runs if setting in r.settings]
        _, shared = split_labels([r.fields for r in swept])
        title = f"Final values vs {setting}"
        out[f"{FINAL_PREFIX}{setting}"] = figures.plot_final(
            final_series(runs, table, setting), setting, title, subtitle(swept, shared)
        )
    return out


def _check_targets(targets: Sequence[float]) -> list[float]:
    targets = [float(t) for t in targets]
    if not targets or any(not (1.0 < t <= 100.0) for t in targets):
        raise ReportError(f"targets {targets}: give top-1 accuracies in percent, each in (1, 100]")
    return targets


def _figures(runs: Sequence[Run], table: pd.DataFrame, targets: Sequence[float]) -> dict[str, Any]:
    """{stem: Figure}: the metric figures that have data, then the final-value figures."""
    out = {}
    for stem, column, ylabel, title in FIGURES:
        top1 = "top1" in column
        curves, sub = figure_curves(runs, column, targets if column == "aggregate/all/top1" else ())
        if curves:
            out[stem] = figures.plot_curves(curves, ylabel, title, sub, hlines=targets if top1 else ())
    out.update(final_figures(runs, table))
    return out


def write_report(
    workdirs: Sequence[os.PathLike], out: os.PathLike, targets: Sequence[float] = DEFAULT_TARGETS
) -> dict[str, Any]:
    """Plots and tables for one or more workdirs, written atomically under `out`.

    Args:
      workdirs: launch outputs (each with metrics.csv; runs.csv, config.json and problem.json
        optional).
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
    drawn = _figures(runs, table, targets)
    for stem, fig in drawn.items():
        files.update({f"{stem}.{fmt}": data for fmt, data in figures.render(fig).items()})
    files["report.md"] = _markdown(runs, md_rows, targets, list(drawn)).encode()
    files["report.csv"] = table.to_csv(index=False, float_format="%.6g").encode()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        outputs.atomic_write_bytes(out / name, data)
    earlier = set(REPORT_FILES) | {p.name for ext in ("png", "svg") for p in out.glob(f"{FINAL_PREFIX}*.{ext}")}
    for stale in earlier - set(files):
        (out / stale).unlink(missing_ok=True)
    return {"out": out, "files": [out / n for n in files], "figures": list(drawn), "table": table}


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
