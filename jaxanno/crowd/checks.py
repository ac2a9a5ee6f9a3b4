"""Range checks of the crowd API's numeric settings (host side, before anything runs).

Every setting is checked against a closed or open range, and every message names the
setting, the value found, the range and why the range is what it is. Integers must be
integers (a float or a bool is refused, never truncated) and stay below the int32 limit of
the counters they feed; floats must be finite numbers that float32, the precision of every
fit, can hold.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

INT32_MAX = 2**31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)  # about 3.4e38
MAX_ITERATIONS = 2**16  # EM iterations: a history buffer of the next power of two is allocated
MAX_SEED = 2**63 - 1


class Range(NamedTuple):
    """A numeric range: [low, high], either end open, and why values outside make no sense."""

    low: float
    high: float
    integer: bool = False
    open_low: bool = False
    open_high: bool = False
    why: str = ""

    def text(self) -> str:
        kind = "an integer" if self.integer else "a number"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"


def _num(x: float) -> str:
    if isinstance(x, int):
        return {INT32_MAX: "2**31 - 1", MAX_SEED: "2**63 - 1"}.get(x, str(x))
    return f"{x:.3g}"


PSEUDO_COUNT = Range(0.0, FLOAT32_MAX, why="pseudo-counts; float32 holds at most 3.4e38")
PROBABILITY_THRESHOLD = Range(
    0.0,
    1.0,
    open_low=True,
    open_high=True,
    why="risk is 1 - max posterior: 0 would call no task confident, 1 every one",
)

# DawidSkene's numeric settings (the option strings are checked against the tuples of `types`).
DAWID_SKENE_RANGES = {
    "n_iter": Range(1, MAX_ITERATIONS, integer=True, why="a history buffer of this many iterations is allocated"),
    "tol": Range(0.0, FLOAT32_MAX, why="a tolerance: EM never converges below 0 or at NaN"),
    "prior_strength": PSEUDO_COUNT,
    "prior_pos_count": PSEUDO_COUNT,
    "prior_neg_count": PSEUDO_COUNT,
    "log_epsilon": Range(0.0, 1.0, open_high=True, why="added inside log p(z | y): below 0 the log of a negative"),
    "risk_threshold": PROBABILITY_THRESHOLD,
    "learner_epochs": Range(1, 10**6, integer=True, why="epochs of the learner's training loop"),
    "learner_rounds": Range(1, 1000, integer=True, why="EM + learner repetitions, each a full fit"),
    "seed": Range(0, MAX_SEED, integer=True, why="a 64-bit key"),
}


def check_range(owner: str, name: str, value: Any, allowed: Range) -> None:
    """Raise a ValueError naming ``owner.name``, `value`, the range and its reason.

    ``owner`` may be empty (then the message starts with `name`, e.g. a command-line flag).
    """
    label = f"{owner}.{name}" if owner else name
    if not _inside(value, allowed):
        reason = f" ({allowed.why})" if allowed.why else ""
        raise ValueError(f"{label}={value!r}: expected {allowed.text()}{reason}")


def _inside(value: Any, allowed: Range) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if allowed.integer:
        if not isinstance(value, (int, np.integer)):
            return False
    elif not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(float(value)):
        return False
    low_ok = value > allowed.low if allowed.open_low else value >= allowed.low
    high_ok = value < allowed.high if allowed.open_high else value <= allowed.high
    return bool(low_ok and high_ok)


def check_dawid_skene(model: Any) -> None:
    """Range-check every numeric setting of a `DawidSkene` (see `DAWID_SKENE_RANGES`)."""
    for name, allowed in DAWID_SKENE_RANGES.items():
        check_range("DawidSkene", name, getattr(model, name), allowed)
    hidden = model.learner_hidden
    if not hidden or not all(_inside(h, Range(1, 2**16, integer=True)) for h in hidden):
        raise ValueError(
            f"DawidSkene.learner_hidden={hidden!r}: expected one or more layer widths, integers in [1, 65536]"
        )
