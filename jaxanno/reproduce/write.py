"""REPRODUCTION.md and one PNG per paper panel: the paper's curve beside jaxanno's.

Per panel: a plot (paper dashed with its points marked, jaxanno solid with a ± 1 std band
over seeds, one colour per curve), the x@target table beside the paper's, accuracies at the
paper's budgets and the stop / end points, then one verdict line per claim of `claims`.
"""

from __future__ import annotations

import io
import math
import pathlib
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure as MplFigure

from jaxanno import figures as figures_lib
from jaxanno import outputs
from jaxanno.reproduce import claims as claims_lib
from jaxanno.reproduce import compare, paper
from jaxanno.reproduce.grid import Figure, Panel

MISSING = object()


def _paper_num(c: dict, metric: str, digits: int = 3) -> str:
    v = paper.value(c, metric) if c else None
    if v is None:
        return "-"
    return "never" if math.isinf(v) else f"{v:.{digits}g}"


def plot_panel(panel: Panel, measured: Mapping[str, compare.Measured], title: str) -> MplFigure:
    """Paper dashed (its points marked), jaxanno solid with a ± 1 std band, same colour per curve."""
    fig = MplFigure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10"]
    for i, spec in enumerate(panel.curves):
        color = cmap(i % cmap.N)
        theirs = paper.curve(panel.figure, panel.id, spec.id)
        pts = paper.vertices(theirs)
        if pts:  # the figure's path when the paper data has it, else the numbers it gives, joined
            px, py = zip(*pts)
            line = "--" if theirs.get("vertices") else ":"
            ax.plot(px, py, line, color=color, linewidth=1.2, marker="." if line == "--" else "o", markersize=4,
                    markerfacecolor=color if line == "--" else "white")  # fmt: skip
        m = measured.get(spec.id)
        if m is not None and m.curves:
            band = figures_lib.mean_band(m.curves)
            ok = band.count > 0
            ax.fill_between(band.x, band.mean - band.std, band.mean + band.std, where=ok, color=color, alpha=0.18,
                            linewidth=0)  # fmt: skip
            ax.plot(band.x, np.where(ok, band.mean, np.nan), color=color, linewidth=1.8,
                    label=f"{spec.label} ({figures_lib.seeds_text(m.seeds)})")  # fmt: skip
        else:
            ax.plot([], [], color=color, label=f"{spec.label} (not run)")
    ax.set_xlabel("annotations per image")
    ax.set_ylabel("top-5 accuracy (%)" if panel.column.endswith("top5") else "top-1 accuracy (%)")
    ax.set_xlim(left=0)
    ax.grid(True, color="0.9", linewidth=0.6)
    ax.set_title(title, fontsize="medium")
    title = "solid: jaxanno (mean ± 1 std over seeds)\ndashed: paper's curve; o: paper's reported points"
    ax.legend(fontsize="x-small", title=title, title_fontsize="x-small")
    return fig


def png_bytes(fig: MplFigure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight")
    return buf.getvalue()


def targets_table(panel: Panel, measured: Mapping[str, compare.Measured]) -> list[str]:
    """x@T, paper | jaxanno per target (labels per image)."""
    head = ["curve", "seeds"] + [f"x@{t:g} {who}" for t in panel.targets for who in ("paper", "jaxanno")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec in panel.curves:
        c, m = paper.curve(panel.figure, panel.id, spec.id), measured.get(spec.id)
        cells = [spec.label, str(m.seeds) if m else "not run"]
        for t in panel.targets:
            cells += [_paper_num(c, f"x@{t:g}"), m.cell(f"x@{t:g}") if m else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _point(c: dict, m: compare.Measured | None, kind: str) -> tuple[str, str]:
    """('(x, acc)' from the paper, 'x ± s, acc ± s' measured) for 'stop' or 'end'."""
    x, a = paper.value(c, f"{kind}_x") if c else None, paper.value(c, f"{kind}_acc") if c else None
    theirs = f"({x:.3g}, {a:.1f})" if x is not None and a is not None else "-"
    ours = f"{m.cell(f'{kind}_x')}, {m.cell(f'{kind}_acc', 1)}" if m else "-"
    if m and kind == "stop":
        ours += f" (fired {m.fired}/{m.seeds})"
    return theirs, ours


def budgets_table(panel: Panel, measured: Mapping[str, compare.Measured]) -> list[str]:
    """Accuracy (%) at the paper's budgets, start, early-stop and end points, paper | jaxanno."""
    head = ["curve", "start paper", "start jaxanno"]
    head += [f"acc@{b:g} {who}" for b in panel.budgets for who in ("paper", "jaxanno")]
    head += ["stop paper (x, acc)", "stop jaxanno", "end paper", "end jaxanno"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec in panel.curves:
        c, m = paper.curve(panel.figure, panel.id, spec.id), measured.get(spec.id)
        cells = [spec.label, _paper_num(c, "start_acc"), m.cell("start_acc", 1) if m else "-"]
        for b in panel.budgets:
            cells += [_paper_num(c, f"acc@{b:g}"), m.cell(f"acc@{b:g}", 1) if m else "-"]
        for kind in ("stop", "end"):
            cells += list(_point(c, m, kind))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def panel_verdicts(panel: Panel, measured: Mapping[str, compare.Measured]) -> list[tuple[str, str]]:
    """(status, line) of every claim on this panel."""
    names = {s.id: s.label for s in panel.curves}
    paper_ids = {s.id: s.paper_id or s.id for s in panel.curves}

    def ours(cid: str, metric: str) -> float:
        return measured[cid].scalar(metric) if cid in measured else math.nan

    def theirs(cid: str, metric: str) -> float:
        v = paper.value(paper.curve(panel.figure, panel.id, paper_ids.get(cid, cid)), metric)
        return math.nan if v is None else v

    paper_names = {cid: names.get(pid, pid) for cid, pid in paper_ids.items()}
    return [
        claims_lib.verdict(c, ours, theirs, names, paper_names) for c in claims_lib.for_panel(panel.figure, panel.id)
    ]


def figure_section(fig: Figure, measured: Mapping, fig_dir: pathlib.Path, report_dir: pathlib.Path):
    """(markdown lines, {png path: bytes}, [(status, line)]) of one figure."""
    lines = [f"## {fig.title}", "", f"Paper source: {paper.load()['figures'][fig.id]['source']}.", ""]
    lines += [f"- {note}" for note in fig.notes] + ([""] if fig.notes else [])
    files, verdicts = {}, []
    for panel in fig.panels:
        got = measured.get((fig.id, panel.id), {})
        png = fig_dir / f"fig{fig.id}_{panel.id}.png"
        files[png] = png_bytes(plot_panel(panel, got, f"{fig.title.split(':')[0]}: {panel.title}"))
        rel = png.resolve().relative_to(report_dir.resolve()) if _inside(png, report_dir) else png
        lines += [f"### {panel.title}", "", f"![{fig.id} {panel.id}]({rel.as_posix()})", ""]
        lines += targets_table(panel, got) + [""] + budgets_table(panel, got) + [""]
        found = panel_verdicts(panel, got)
        verdicts += found
        lines += [f"- **{status}**: {text}" for status, text in found] + ([""] if found else [])
    return lines, files, verdicts


def _inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def differences_section(path: pathlib.Path) -> list[str]:
    """The investigated differences, verbatim, or a line saying the file is missing."""
    lines = ["## Differences investigated", ""]
    if path.is_file():
        text = path.read_text().strip().splitlines()
        if text and text[0].startswith("# "):
            text = text[1:]  # its own title: this section's heading replaces it
        return lines + text + [""]
    shown = "/".join(path.parts[-2:])
    return lines + [f"`{shown}` is missing: no measured explanation of the differences is available.", ""]


def write_document(
    figures: Sequence[Figure], measured: Mapping, report: pathlib.Path, fig_dir: pathlib.Path, header: Sequence[str],
    differences: pathlib.Path,
) -> dict[str, int]:  # fmt: skip
    """Write the report and its PNGs atomically; returns the verdict counts."""
    body, files, verdicts = [], {}, []
    for fig in figures:
        lines, pngs, found = figure_section(fig, measured, fig_dir, report.parent)
        body += lines
        files.update(pngs)
        verdicts += found
    counts = {k: sum(s == k for s, _ in verdicts) for k in ("holds", "differs", "not measured")}
    summary = [f"Claims checked: {len(verdicts)}: {counts['holds']} hold, {counts['differs']} differ, "
               f"{counts['not measured']} not measured.", ""]  # fmt: skip
    text = "\n".join([*header, *summary, *differences_section(differences), *body]).rstrip() + "\n"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        outputs.atomic_write_bytes(path, data)
    report.parent.mkdir(parents=True, exist_ok=True)
    outputs.atomic_write_text(report, text)
    return counts
