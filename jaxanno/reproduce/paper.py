"""The paper's numbers, packaged in ``jaxanno/data/paper/figures.json`` (read-only).

Layout: ``figures[<figure>]["panels"][<panel>][<curve id>]`` holds a curve's ``label``,
``source`` and whatever the paper gives: ``start`` (accuracy at x = 0), ``end`` and
``early_stop`` ([x, acc]), ``vertices`` ([[x, acc], ...]), ``x_at`` ({target %: x or null
when never reached}), ``acc_at`` ({labels per image: acc %}), ``peak``. Accuracies are
percent; x is annotations per image.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
from typing import Any

PAPER_FILE = pathlib.Path(__file__).resolve().parents[1] / "data" / "paper" / "figures.json"
NEVER = math.inf  # a target the paper's curve never reaches


@functools.cache
def load() -> dict[str, Any]:
    return json.loads(PAPER_FILE.read_text())


def citation() -> str:
    return load()["citation"]


def panel(figure: str, panel_id: str) -> dict[str, Any]:
    """{curve id: curve} of one panel ({} when the paper data has no such panel)."""
    return load()["figures"].get(figure, {}).get("panels", {}).get(panel_id, {})


def curve(figure: str, panel_id: str, curve_id: str) -> dict[str, Any]:
    return panel(figure, panel_id).get(curve_id, {})


def _lookup(table: dict[str, Any] | None, key: float) -> float | None:
    """The entry of a {number-as-text: value} table whose key equals `key` numerically."""
    for text, value in (table or {}).items():
        if math.isclose(float(text), key, abs_tol=1e-9):
            return NEVER if value is None else float(value)
    return None


def value(c: dict[str, Any], metric: str) -> float | None:
    """A curve's number for a metric name, or None when the paper gives none.

    Metrics: 'x@T' (NEVER when the paper's curve never reaches T), 'acc@b', 'start_acc',
    'stop_x' / 'stop_acc' (the early-stop point, else the solid line's end), 'end_x' /
    'end_acc' (the dashed end when there is one, else the end), 'peak_acc'.
    """
    kind, _, arg = metric.partition("@")
    if arg:
        return _lookup(c.get("x_at") if kind == "x" else c.get("acc_at"), float(arg))
    stop = c.get("early_stop") or c.get("end")
    end = c.get("dashed_end") or c.get("end")
    table = {
        "start_acc": c.get("start"),
        "stop_x": stop[0] if stop else None,
        "stop_acc": stop[1] if stop else None,
        "end_x": end[0] if end else None,
        "end_acc": end[1] if end else None,
        "peak_acc": (c.get("peak") or [None, None])[1],
    }
    found = table.get(metric)
    return None if found is None else float(found)


def vertices(c: dict[str, Any]) -> list[tuple[float, float]]:
    """The points to draw for a curve: its vertices, else start / x@T / acc@b / end points in x order."""
    if c.get("vertices"):
        return [(float(x), float(y)) for x, y in c["vertices"]]
    points = []
    if c.get("start") is not None:
        points.append((0.0, float(c["start"])))
    points += [(float(x), float(t)) for t, x in (c.get("x_at") or {}).items() if x]  # x = 0: starts above
    points += [(float(b), float(a)) for b, a in (c.get("acc_at") or {}).items() if a is not None]
    for key in ("peak", "early_stop", "end"):
        if c.get(key):
            points.append((float(c[key][0]), float(c[key][1])))
    return sorted(set(points))
