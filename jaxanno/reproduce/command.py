"""``python -m jaxanno.reproduce`` (also ``jaxanno reproduce``, ``jaxanno-reproduce``).

Runs the paper's experiment grid figure by figure and writes REPRODUCTION.md with one PNG
per panel. Examples::

  python -m jaxanno.reproduce --quick                      # every figure, CPU-sized, 1 seed
  python -m jaxanno.reproduce --figure=4 --seeds=3         # Fig 4 only
  python -m jaxanno.reproduce --figure=all --seeds=3 --report=REPRODUCTION.md
  python -m jaxanno.reproduce --figure=5,12 --dry_run      # the grid and its sizes; nothing runs
  python -m jaxanno.reproduce --report_only --quick_fallback --report=REPRODUCTION.md
                                # each figure from the full grid where its runs finished, else the quick grid

Rerunning a command skips the runs that finished and resumes killed ones from their
checkpoints; ``--fresh`` starts the selected runs over.
"""

from __future__ import annotations

import dataclasses
import pathlib
import platform
import sys
import time
from collections.abc import Sequence

from absl import flags, logging

from jaxanno import errors
from jaxanno.reproduce import compare, execute, grid, plan, write

# Measured explanations of where jaxanno differs from the paper, in the source tree beside the package.
DIFFERENCES = pathlib.Path(__file__).resolve().parents[2] / "docs" / "reproduction_differences.md"


def define_flags(fv: flags.FlagValues) -> None:
    names = ", ".join(plan.FIGURES)
    flags.DEFINE_string("figure", "all", f"Figures to reproduce: comma-separated from {names}, or all.", flag_values=fv)
    flags.DEFINE_integer("seeds", None, "Seeds per run (default: 3; 1 with --quick).", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("quick", False, "CPU-sized subset: every figure, smaller runs and budgets.", flag_values=fv)
    flags.DEFINE_string("out", "reproduction", "Folder of the runs' workdirs and the figures.", flag_values=fv)
    flags.DEFINE_string("report", None, "Path of the report (default: OUT/REPRODUCTION.md).", flag_values=fv)
    flags.DEFINE_bool("fresh", False, "Start the selected runs over instead of skipping or resuming.", flag_values=fv)
    flags.DEFINE_bool("dry_run", False, "Print the grid and its sizes; run and compile nothing.", flag_values=fv)
    flags.DEFINE_bool(
        "report_only", False, "Write the report from the runs that finished; run nothing.", flag_values=fv
    )
    flags.DEFINE_bool(
        "quick_fallback",
        False,
        "With --report_only: report each figure from the full grid with the most seeds "
        "(at most --seeds) whose runs all finished, else from the quick grid's runs (1 seed); "
        "each figure says which.",
        flag_values=fv,
    )
    flags.DEFINE_bool("quiet", False, "No per-chunk progress lines of each launch.", flag_values=fv)
    flags.DEFINE_bool("verbose", False, errors.VERBOSE_HELP, flag_values=fv)


def grid_text(figures: Sequence[grid.Figure], specs: Sequence[grid.RunSpec], mode: grid.Mode) -> str:
    """The figures' panels and curves, then every run with its sizes (nothing is loaded)."""
    lines = [f"{'quick' if mode.quick else 'full'} grid: {len(figures)} figure(s), {len(specs)} run(s)"]
    index = {s: i + 1 for i, s in enumerate(specs)}
    for fig in figures:
        lines.append(f"{fig.title}")
        for panel in fig.panels:
            curves = ", ".join(f"{c.label} [run {index[c.run]}{_lane(c.lane)}]" for c in panel.curves)
            lines.append(f"  {panel.title}: {curves}")
    lines.append("runs:")
    lanes = 0
    for spec in specs:
        items = spec.items()
        budget = dict(spec.overrides).get("online.budget")
        limit = f", budget {budget / items:.2f} labels/image" if budget else ""
        lines.append(f"  {index[spec]:>3}. {execute.describe(spec)}: {items} images, {spec.lanes} lane(s){limit}")
        lanes += spec.lanes
    lines.append(f"total: {len(specs)} run(s), {lanes} lane(s)")
    return "\n".join(lines)


def _lane(lane: tuple[tuple[str, float], ...]) -> str:
    return "".join(f", {k}={v:g}" for k, v in lane)


QUICK_FALLBACK = grid.Mode(quick=True, seeds=1)


def grid_name(mode: grid.Mode) -> str:
    """'full grid, 3 seed(s) per run' or 'quick (CPU-sized) grid, 1 seed(s) per run'."""
    return f"{'quick (CPU-sized) grid' if mode.quick else 'full grid'}, {mode.seeds} seed(s) per run"


def choose_grids(
    figures: Sequence[grid.Figure], mode: grid.Mode, out: pathlib.Path
) -> list[tuple[grid.Figure, grid.Mode]]:
    """Per full-grid figure, the grid with the most seeds whose runs all finished under `out`:
    the full grid at `mode.seeds`, then at fewer seeds (down to 1), else its quick-grid
    version (`QUICK_FALLBACK`). Each figure's first note names its grid and, for a fallback,
    why: so a report can mix 3-seed figures with 1-seed ones that were cheaper to run."""
    chosen = []
    for fig in figures:
        found = _most_seeds_finished(fig.id, mode.seeds, out)
        if found is None:
            built, used = plan.FIGURES[fig.id](QUICK_FALLBACK), QUICK_FALLBACK
            why = ": the full grid's runs for this figure have not all finished"
        else:
            built, used = found
            why = ""
            if used.seeds < mode.seeds:
                why = f": the full grid's runs with {mode.seeds} seeds for this figure have not all finished"
        note = f"Grid: {grid_name(used)}{why}."
        chosen.append((dataclasses.replace(built, notes=(note, *built.notes)), used))
    return chosen


def _most_seeds_finished(figure_id: str, seeds: int, out: pathlib.Path) -> tuple[grid.Figure, grid.Mode] | None:
    """(the figure, its full-grid mode) with the most seeds (at most `seeds`) whose runs all
    finished under `out`, or None."""
    for s in range(seeds, 0, -1):
        full = grid.Mode(quick=False, seeds=s)
        fig = plan.FIGURES[figure_id](full)
        if all(execute.finished(execute.workdir(out, spec), spec) for spec in plan.runs([fig])):
            return fig, full
    return None


def grid_summary(chosen: Sequence[tuple[grid.Figure, grid.Mode]]) -> str:
    """'full grid, 3 seed(s) per run for Fig 4; quick (CPU-sized) grid, 1 seed(s) per run for Fig 5, Fig 6'."""
    groups: dict[str, list[str]] = {}
    for fig, used in chosen:
        short = f"Fig {fig.id}" if fig.id.isdigit() else fig.title  # 'Fig 4', 'Supplement: risk threshold'
        groups.setdefault(grid_name(used), []).append(short)
    return "; ".join(f"{name} for {', '.join(titles)}" for name, titles in groups.items())


def measure_all(figures: Sequence[grid.Figure], out: pathlib.Path) -> dict:
    """{(figure, panel): {curve id: Measured}} for every curve whose run has results."""
    compare.clear_cache()
    found: dict = {}
    for fig in figures:
        for panel in fig.panels:
            got = found.setdefault((fig.id, panel.id), {})
            for c in panel.curves:
                try:
                    got[c.id] = compare.measure(execute.workdir(out, c.run), c, panel)
                except compare.MissingResults:
                    continue
    return found


def header(
    argv: Sequence[str], mode: grid.Mode, outcomes: Sequence[execute.Outcome], total: int, wall: float,
    grids: str | None = None,
) -> list[str]:  # fmt: skip
    from jaxanno.reproduce import paper

    cpu = sum(o.cpu_s for o in outcomes)
    run_wall = sum(o.wall_s for o in outcomes)
    what = grids or grid_name(mode)
    return [
        "# Reproducing the paper",
        "",
        f"Paper: {paper.citation()} Its numbers are packaged in `jaxanno/data/paper/figures.json` "
        "(each curve names the figure file it was read from).",
        "",
        f"Command: `{' '.join(['python -m jaxanno.reproduce', *argv[1:]])}`; "
        f"{what}, "
        f"stand-in features of width 128 (synthetic, not ImageNet: absolute accuracies are not the paper's). "
        f"Runs with results: {len(outcomes)} of {total}; their launches took {execute.duration(run_wall)} wall and "
        f"{execute.duration(cpu)} CPU in all (this invocation {execute.duration(wall)}) on {platform.machine()} "
        "CPU.",
        "",
        "How to read: x@T is the first number of labels per image at which a curve reaches T% accuracy, linearly "
        "interpolated between logged steps (the convention of the launch summary and the report); acc@b is the "
        "accuracy at b labels per image. jaxanno's cells are mean ± std (population) over seeds, or `n/a (k/S "
        "reached)` when only k of S seeds got there (also when a quick run's budget ended first); 'never' means "
        "the paper's curve does not reach T. 'stop' is where the early stopper fired (the paper's solid lines end "
        "there), 'end' where the run ended. Each claim of the paper is checked on both the paper's numbers and "
        "jaxanno's: **holds** or **differs**, with the numbers.",
        "",
    ]


def _main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    fv = flags.FlagValues()
    define_flags(fv)
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(__doc__ + "\nFlags:\n" + fv.get_help(include_special_flags=False))
        return 0
    extra = fv(argv)[1:]
    if extra:
        raise errors.UsageError(f"unexpected argument(s) {extra}; every setting is a flag (see --help)")
    if fv.quick_fallback and (fv.quick or not fv.report_only):
        raise errors.UsageError("--quick_fallback goes with --report_only and the full grid (no --quick)")
    names = plan.parse_names(fv.figure)
    mode = grid.Mode(quick=fv.quick, seeds=fv.seeds or (1 if fv.quick else 3))
    figures = plan.build(names, mode)
    specs = plan.runs(figures)
    execute.check_specs(specs)
    if fv.dry_run:
        print(grid_text(figures, specs, mode))
        return 0
    out = pathlib.Path(fv.out)
    t0 = time.perf_counter()
    grids = None
    if fv.quick_fallback:
        chosen = choose_grids(figures, mode, out)
        figures, grids = [fig for fig, _ in chosen], grid_summary(chosen)
        specs = plan.runs(figures)
    if fv.report_only:
        outcomes = execute.collect(specs, out)
    else:
        outcomes = execute.run_all(specs, out, quiet=fv.quiet, fresh=fv.fresh)
    report = pathlib.Path(fv.report) if fv.report else out / "REPRODUCTION.md"
    measured = measure_all(figures, out)
    head = header(argv, mode, outcomes, len(specs), time.perf_counter() - t0, grids)
    counts = write.write_document(figures, measured, report, out / "figures", head, DIFFERENCES)
    panels = sum(len(f.panels) for f in figures)
    print(f"wrote {report} and {panels} figure(s) under {out / 'figures'}; claims: {counts['holds']} hold, "
          f"{counts['differs']} differ, {counts['not measured']} not measured")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m jaxanno.reproduce") -> int:
    """The command; returns its exit code. `argv` excludes the program name (default: sys.argv[1:])."""
    argv = [prog, *(sys.argv[1:] if argv is None else argv)]
    return errors.run_main(lambda: _main(argv), errors.wants_verbose(argv))
