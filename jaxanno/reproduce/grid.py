"""The paper's experiment grid: for every figure, its panels, curves and the runs behind them.

A `RunSpec` is one launch (one workdir): experiment, method, simulation, config overrides,
sweep lanes and seeds. A `CurveSpec` is one curve of a paper panel: the run that makes it
and, when that run sweeps a setting, the lane (grid point) it reads. Runs are shared: two
curves (or figures) that need the same launch name the same `RunSpec`, which runs once.

Settings that do not change array shapes (risk threshold, prior strength) are sweep lanes
of one run; the curve for the default value reads the plain run of the same method, so
that the default is not run twice. ``quick`` shrinks every run to a CPU-sized version
(fewer items per class, a label budget in labels per image, one seed) and keeps at least
one panel of every figure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from ml_collections import config_dict

from jaxanno import config as config_lib
from jaxanno.data import amt, standin

# Paper subset -> (experiments.json split, name in the paper), as the paper's Table 3 maps them.
SUBSETS: dict[str, tuple[str, str]] = {
    "dog": ("imagenet_split_0", "Dog"),
    "vertebrate": ("imagenet_split_1", "Vertebrate"),
    "insect_fungus": ("imagenet_split_2", "Insect+Fungus"),
    "commodity": ("imagenet_split_4", "Commodity"),
    "dog_vertebrate": ("imagenet_animal", "Dog+Vertebrate"),
    "imagenet100": ("imagenet_100_classes", "ImageNet100"),
}
FOUR_SUBSETS = ("dog", "vertebrate", "insect_fungus", "commodity")  # Fig 7, Fig 12's supplement panels
SUPPLEMENT_SUBSETS = ("dog", "dog_vertebrate", "insect_fungus", "commodity")  # Fig 6 and the supplement
TOP1, TOP5 = "aggregate/all/top1", "aggregate/all/top5"
# Worker prior of the supplement: None, A (class identity), B (worker identity), A+B.
PRIORS = {
    "None": "homegeneous_workers",
    "A": "homegeneous_workers_diagonal_perfect",
    "B": "heterogeneous_workers",
    "AB": "heterogeneous_workers_diagonal_perfect",
}
PRIOR_LABELS = {"None": "None", "A": "A", "B": "B", "AB": "A+B"}
LABELS_PER_STEP = (4000, 2000, 1000, 600, 200)  # the supplement's update frequencies
WORKERS = (10, 50, 100, 500, 1000)
RISKS = (0.1, 0.2, 0.3, 0.5)
HIT_SIZE = 40

# Quick mode: items per class of the subsets (Dog+Vertebrate has twice the classes), and the
# label budget in labels per image. A learner's per-step cost grows with the items it trains
# on and its steps with the items to label, so a run costs about items squared: ImageNet100's
# learner methods run on 300 images per class (a quarter of the stand-in). Online DS has no
# learner and keeps the full set, so the paper's x@80 for it is checked at full size.
QUICK_ITEMS_PER_CLASS = {"imagenet_animal": 150}
QUICK_ITEMS_DEFAULT = 300
QUICK_FULL_SIZE = (("imagenet_100_classes", "ds_model"),)  # (experiment, method) kept at full size
QUICK_CHUNK = 10  # run.chunk_steps; quick runs end on a whole chunk, so one program serves every chunk
# MixMatch trains on mixed batches: about 4x the CPU of pseudo-labels per step.
QUICK_BUDGET = {"ds_model": 2.6, "efficient_annotation_mixmatch": 0.6, "learner": 1.2}
# Lean fits 3 cross-validation models per step: on ImageNet100 it costs 4x the CPU of the others.
QUICK_BUDGET_IMAGENET100 = {"ds_model": 2.5, "lean": 0.5, "learner": 1.0}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One launch: the settings of its config and the seeds it runs."""

    experiment: str
    method: str
    simulation: str = "amt_structured_noise"
    overrides: tuple[tuple[str, Any], ...] = ()  # (config path, value), sorted
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (Params field, values)
    seeds: int = 3

    def key(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def name(self) -> str:
        """A readable, unique folder name: experiment-method[-simulation]-<hash of everything>."""
        digest = hashlib.sha1(json.dumps(self.key(), sort_keys=True, default=str).encode()).hexdigest()[:8]
        sim = "" if self.simulation == "amt_structured_noise" else "-uniform"
        return f"{self.experiment}-{self.method}{sim}-{digest}"

    @property
    def lanes(self) -> int:
        points = 1
        for _, values in self.sweep:
            points *= len(values)
        return points * self.seeds

    def config(self) -> config_dict.ConfigDict:
        """The launch's config (unresolved: presets fill the rest)."""
        cfg = config_lib.default_config()
        cfg.experiment, cfg.method, cfg.simulation = self.experiment, self.method, self.simulation
        for path, value in self.overrides:
            config_lib.set_field(cfg, path, value)
        for name, values in self.sweep:
            cfg.sweep[name] = tuple(values)
        cfg.run.num_seeds = self.seeds
        return cfg

    def labels_per_step(self) -> int:
        exp, over = amt.experiments()[self.experiment], dict(self.overrides)
        hits = over.get("online.n_hits_per_step", exp["online"]["n_hits_per_step"])
        return int(hits * over.get("online.hit_size", exp["online"]["hit_size"]))

    def items(self) -> int:
        """Images the run labels (from the experiment's stand-in sizes; no data is loaded)."""
        exp = amt.experiments()[self.experiment]
        cap = dict(self.overrides).get("n_data_per_class", exp.get("n_data_per_class"))
        return int(standin.class_counts(self.experiment, len(exp["wnids"]), cap).sum())


@dataclasses.dataclass(frozen=True)
class CurveSpec:
    """One curve of a panel: the paper's curve id, a label, the run and its lane."""

    id: str  # the curve's key in the packaged paper data
    label: str
    run: RunSpec
    lane: tuple[tuple[str, float], ...] = ()  # (swept setting, value) selecting a grid point
    in_paper: bool = True  # False: a jaxanno method drawn beside the paper's, with no paper numbers
    paper_id: str = ""  # claims check this curve against the paper's curve of that id ('': its own id)


@dataclasses.dataclass(frozen=True)
class Panel:
    figure: str
    id: str  # the panel's key in the packaged paper data (a subset, or top1 / top5)
    title: str
    curves: tuple[CurveSpec, ...]
    column: str = TOP1  # metrics.csv column on the y axis
    targets: tuple[float, ...] = (70.0, 80.0, 90.0)  # x@T, percent
    budgets: tuple[float, ...] = (0.25, 0.5, 1.0)  # acc@b, labels per image


@dataclasses.dataclass(frozen=True)
class Figure:
    id: str
    title: str
    panels: tuple[Panel, ...]
    notes: tuple[str, ...] = ()  # settings without a config field, choices made where the paper is silent


@dataclasses.dataclass(frozen=True)
class Mode:
    """Full grid or the CPU-sized quick subset, and the seeds of every run."""

    quick: bool = False
    seeds: int = 3


def _budget(mode: Mode, experiment: str, method: str, items: int) -> int | None:
    """The quick mode's label budget (None in the full grid: runs end by their own stop rules)."""
    if not mode.quick:
        return None
    table = QUICK_BUDGET_IMAGENET100 if experiment == "imagenet_100_classes" else QUICK_BUDGET
    return int(round(table.get(method, table["learner"]) * items))


def spec(
    mode: Mode, panel: str, method: str, simulation: str = "amt_structured_noise", sweep=(), **overrides
) -> RunSpec:
    """The run of `method` on a panel's subset with `overrides` ({'a__b': v} for config path a.b)."""
    experiment = SUBSETS[panel][0]
    over = {k.replace("__", "."): v for k, v in overrides.items()}
    if mode.quick and (experiment, method) not in QUICK_FULL_SIZE:
        over["n_data_per_class"] = QUICK_ITEMS_PER_CLASS.get(experiment, QUICK_ITEMS_DEFAULT)
    base = RunSpec(experiment, method, simulation, tuple(sorted(over.items())), tuple(sweep), mode.seeds)
    budget = _budget(mode, experiment, method, base.items())
    if budget is not None:
        over["online.budget"] = budget
        over["run.max_steps"] = _whole_chunks(budget, base.labels_per_step())
    return dataclasses.replace(base, overrides=tuple(sorted(over.items())))


def _whole_chunks(budget: int, per_step: int) -> int:
    """Steps enough to spend the budget (plus the stop rules' slack), rounded up to whole chunks:
    a shorter last chunk would be a second compiled program."""
    steps = -(-budget // per_step) + 4
    return -(-steps // QUICK_CHUNK) * QUICK_CHUNK


def curve(
    curve_id: str, label: str, run: RunSpec, in_paper: bool = True, paper_id: str = "", **lane: float
) -> CurveSpec:
    return CurveSpec(curve_id, label, run, tuple(sorted(lane.items())), in_paper, paper_id)


def labels_per_step(n: int) -> dict[str, int]:
    """HITs per step and HIT size for `n` labels per step with 50 workers: HITs of 40 while
    there are workers for them, then larger HITs (one HIT per worker per step)."""
    hits = min(n // HIT_SIZE, 50)
    return {"online__n_hits_per_step": hits, "online__hit_size": n // hits}
