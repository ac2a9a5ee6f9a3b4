"""The configuration language: one schema of fields, the named presets, the rules.

* `SCHEMA` lists every config field once: its dotted path (after the original system's
  config.yaml sections, so its launch lines translate one to one), default, allowed values
  and the `Static` / `EMStatic` / `LearnerStatic` / `Params` field it becomes (through which
  `experiment` converts). Such a field takes its default and choices from `types` (dataclass
  defaults, `types.PARAM_DEFAULTS`, the option tuples), never from a second literal here:
  the simulator and the crowd API run without a config, so the lowest layer owns them.
* Presets are chosen by three fields: ``experiment`` (class list, sizes and online settings
  from the packaged experiments.json; '' for none), ``method`` and ``simulation``. A field a
  preset governs starts unset (None); `resolve` fills only unset fields, so a value from a
  config file or the command line always wins, and what no preset sets gets its default.
* `RULES` checks a resolved config: a table of (path, predicate, what is expected).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
from collections.abc import Callable
from typing import Any

from ml_collections import config_dict

from jaxanno import data as data_lib
from jaxanno import types, workers
from jaxanno.data import amt


class ConfigError(ValueError):
    """An impossible or inconsistent setting, found before anything compiles."""


@dataclasses.dataclass(frozen=True)
class Field:
    default: Any  # used when neither a file, the command line nor a preset sets the field
    target: str = ""  # 'Static.x', 'EMStatic.x', 'LearnerStatic.x' or 'Params.x' it becomes
    preset: bool = False  # governed by a preset: starts unset, presets fill it, then `default`
    kind: type | None = None  # type of a field whose default is None
    choices: tuple[str, ...] = ()  # allowed values (empty: any value of the type)


def _static(owner: str, name: str, choices: tuple[str, ...] = (), preset: bool = False) -> Field:
    default = {f.name: f.default for f in dataclasses.fields(getattr(types, owner))}[name]
    return Field(default, f"{owner}.{name}", preset, choices=choices)


def _param(name: str, preset: bool = False) -> Field:
    return Field(types.PARAM_DEFAULTS[name], f"Params.{name}", preset)


SCHEMA: dict[str, Field] = {
    "experiment": Field("imagenet_split_1"),  # packaged experiment preset, '' for none
    "method": Field("ds_model"),  # a key of METHODS
    "simulation": Field("amt_structured_noise"),  # a key of SIMULATIONS
    "early_stop": _static("Static", "early_stop"),
    "early_stopper": _static("Static", "early_stopper", types.EARLY_STOPPERS),
    "risk_thres": _param("risk_threshold", preset=True),
    "wnids": Field(None, preset=True, kind=str),  # space-separated class list
    "n_data_per_class": Field(None, preset=True, kind=int),
    "n_data_distraction_per_class": Field(0, preset=True),
    "n_prototype_per_class": _static("Static", "n_prototype_per_class", preset=True),
    "online.n_hits_per_step": _static("Static", "hits_per_step", preset=True),
    "online.hit_size": _static("Static", "hit_size", preset=True),
    "online.budget": _param("budget", preset=True),
    "data.source": Field("auto", choices=("auto", *data_lib.SOURCES)),  # auto: from data.features (or stand-in)
    "data.features": Field(""),  # .npy (reference / npy) or .npz file
    "data.image_list": Field(""),  # reference image list: 'wnid/file.JPEG label' per line
    "data.labels": Field(""),  # npy source: labels as .npy or one integer per line
    "data.feature_dim": Field(128),  # stand-in feature width
    "data.seed": Field(0),  # item / prototype selection and stand-in generation
    "data.cache_dir": Field(""),  # stand-in cache ('' = ~/.cache/jaxanno)
    "data.standin_geometry": Field("compact", choices=data_lib.STANDIN_GEOMETRIES),  # see jaxanno.data.standin
    "worker.type": _static("Static", "worker_type", types.WORKER_TYPES, preset=True),
    "worker.n": Field(50, "Static.num_workers"),
    "worker.out_of_group_noise": _param("out_of_group_noise"),
    "worker.reliability.mean": _param("reliability_mean"),
    "worker.reliability.std": _param("reliability_std"),
    "worker.difficulty.mean": _param("difficulty_mean"),  # 'item_difficulty' workers only
    "worker.difficulty.spread": _param("difficulty_spread"),
    "worker.prior.type": _static("Static", "prior_type", types.PRIOR_TYPES),
    "worker.prior.strength": _param("prior_strength"),
    "worker.prior.pos_count": _param("prior_pos_count"),
    "worker.prior.neg_count": _param("prior_neg_count"),
    "aggregator.algo": _static("EMStatic", "aggregator", types.AGGREGATORS),
    "optimizer.max_em_steps": _static("EMStatic", "max_em_steps"),
    "optimizer.likelihood_epsilon": _param("em_epsilon"),
    "optimizer.criterion": _static("EMStatic", "criterion", types.EM_CRITERIA, preset=True),
    "optimizer.m_step": _static("EMStatic", "m_step", types.M_STEPS),
    "optimizer.class_prior": _static("EMStatic", "class_prior", types.CLASS_PRIORS),
    "optimizer.init": _static("EMStatic", "init", types.EM_INITS),
    "optimizer.warm_start": _static("EMStatic", "warm_start"),
    "optimizer.log_epsilon": _param("log_epsilon"),
    "optimizer.item_block": Field(-1),  # E-step block: -1 = 2048 on CPU, all at once elsewhere
    "learner.algo": Field("dummy", preset=True, choices=types.LEARNER_ALGOS),  # 'dummy': no learner
    "learner.module": Field(""),  # 'package.module:Class' to plug in any flax module
    "learner.n_hidden_layer": Field(1),
    "learner.hidden_size": Field(64),
    "learner.batch_size": _static("LearnerStatic", "batch_size"),
    "learner.max_epochs": _static("LearnerStatic", "max_epochs"),
    "learner.eval_every": _static("LearnerStatic", "eval_every"),
    "learner.lr_ratio": _param("lr_ratio"),
    "learner.weight_decay": _param("weight_decay"),
    "learner.risk_thres": _param("pseudo_label_threshold"),
    "learner.calibrate": Field(_static("LearnerStatic", "calibrate").default, preset=True),  # or 'cv_<folds>'
    "learner.temperature_solver": _static(
        "LearnerStatic", "temperature_solver", types.TEMPERATURE_SOLVERS, preset=True
    ),
    "learner.semi_supervised": _static("LearnerStatic", "semi_supervised", types.SEMI_SUPERVISED, preset=True),
    "learner.early_stop_scope": _static("LearnerStatic", "early_stop_scope", types.EARLY_STOP_SCOPES, preset=True),
    "learner.prototype_as_val": _static("LearnerStatic", "prototype_as_val", preset=True),
    "learner.mixmatch.mu": _static("LearnerStatic", "mixmatch_mu"),
    "learner.mixmatch.alpha": _param("mixmatch_alpha"),
    "learner.mixmatch.mixmatch_w": _param("mixmatch_weight"),
    "sampler.algo": _static("Static", "sampler", types.SAMPLERS),
    "sampler.item_score": _static("Static", "item_score", types.ITEM_SCORES, preset=True),
    "sampler.temperature": _param("selection_temperature"),
    "sampler.max_annotation_per_example": _static("Static", "max_annotations"),
    "sampler.max_annotation_per_worker": _param("max_annotation_per_worker"),
    "run.num_seeds": Field(4),
    "run.seed": Field(0),
    "run.chunk_steps": Field(10),  # online steps per compiled call (progress / checkpoint grain)
    "run.checkpoint_every": Field(50),  # steps between checkpoints (rounded up to whole chunks)
    "run.max_steps": Field(-1),  # -1: enough for every item to reach its label slots
    "run.lane_batch": Field(-1),  # lanes vmapped at once per device: 0 = all, -1 = automatic
}

# Params field -> config path, in `types.PARAM_DEFAULTS` order; each is a sweep axis ``sweep.<field>``.
PARAM_PATHS: dict[str, str] = {
    name: path for name in types.PARAM_DEFAULTS for path, f in SCHEMA.items() if f.target == f"Params.{name}"
}

# A method sets these fields, in this order (ds_model only the first two: it has no learner;
# a method without the last ones keeps their defaults: the original uniform item draw and the
# original temperature solver).
_METHOD_FIELDS = ("optimizer.criterion", "learner.algo", "learner.calibrate", "learner.semi_supervised",
                  "learner.early_stop_scope", "learner.prototype_as_val", "sampler.item_score",
                  "learner.temperature_solver")  # fmt: skip
# fmt: off
METHODS: dict[str, dict[str, Any]] = {
    name: dict(zip(_METHOD_FIELDS, values))
    for name, values in {
        "ds_model": ("soft", "dummy"),
        "lean": ("hard", "mlp", "cv_3", "none", "local", False),
        "improved_lean": ("soft", "mlp", "temperature", "none", "global", True),
        "efficient_annotation": ("soft", "mlp", "temperature", "pseudolabel", "global", True),
        "efficient_annotation_mixmatch": ("soft", "mlp", "temperature", "mixmatch", "global", True),
        "efficient_annotation_plus": ("soft", "mlp", "temperature", "pseudolabel", "global", True, "risk_reduction"),
        "efficient_annotation_calibrated": ("soft", "mlp", "temperature", "pseudolabel", "global", True, "random",
                                            "exact"),
    }.items()
}
# fmt: on
SIMULATIONS: dict[str, dict[str, Any]] = {
    "amt_structured_noise": {"worker.type": "structured_noise"},
    "amt_uniform_noise": {"worker.type": "uniform_noise"},
    "amt_item_difficulty": {"worker.type": "item_difficulty"},
}
PATHS: tuple[str, ...] = (*SCHEMA, *(f"sweep.{name}" for name in PARAM_PATHS))  # every leaf of a config


def get_field(cfg: config_dict.ConfigDict, path: str) -> Any:
    """The value at a dotted path, e.g. ``get_field(cfg, 'online.budget')``."""
    for part in path.split("."):
        cfg = cfg[part]
    return cfg


def set_field(cfg: config_dict.ConfigDict, path: str, value: Any) -> None:
    """Set the value at a dotted path (an existing field of the schema)."""
    parent, _, leaf = path.rpartition(".")
    (get_field(cfg, parent) if parent else cfg)[leaf] = value


def default_config() -> config_dict.ConfigDict:
    """The config tree of `SCHEMA`, locked: a misspelt field is an error, not a new key."""
    cfg = config_dict.ConfigDict()
    for path, f in SCHEMA.items():
        node = cfg
        for part in path.split(".")[:-1]:
            if part not in node:
                node[part] = config_dict.ConfigDict()
            node = node[part]
        node[path.rpartition(".")[2]] = config_dict.placeholder(f.kind or type(f.default)) if f.preset else f.default
    cfg.sweep = config_dict.ConfigDict({name: () for name in PARAM_PATHS})
    cfg.lock()
    return cfg


def check_key(path: str) -> None:
    """Raise a `ConfigError` naming the closest field if `path` is not a config field."""
    if path not in PATHS:
        close = difflib.get_close_matches(path, PATHS, n=1)
        raise ConfigError(f"unknown config key {path!r}" + (f"; did you mean {close[0]!r}?" if close else ""))


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: value} of the leaves of a (nested) dict or ConfigDict."""
    out = {}
    for key, child in node.items():
        nested = isinstance(child, (dict, config_dict.ConfigDict))
        out.update(_flatten(child, f"{prefix}{key}.") if nested else {f"{prefix}{key}": child})
    return out


def _presets(cfg: config_dict.ConfigDict) -> dict[str, Any]:
    """{path: value} of the chosen experiment, method and simulation presets."""
    exps = amt.experiments()
    for kind, table in {"experiment": {"": {}, **exps}, "method": METHODS, "simulation": SIMULATIONS}.items():
        if cfg[kind] not in table:
            raise ConfigError(f"setting {kind}={cfg[kind]!r}: unknown; allowed: {sorted(table)}")
    # experiments.json uses the config's own names ('risk_thres', 'online': {'budget': ...}).
    exp = {**exps[cfg.experiment], "wnids": " ".join(exps[cfg.experiment]["wnids"])} if cfg.experiment else {}
    exp = {path: value for path, value in _flatten(exp).items() if path in SCHEMA}
    return {**exp, **METHODS[cfg.method], **SIMULATIONS[cfg.simulation]}


def resolve(cfg: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """A copy with every unset field filled from the presets, then the defaults (set fields stay)."""
    found = _flatten(cfg)
    for path in found:
        check_key(path)
    if len(found) < len(PATHS):
        missing = sorted(set(PATHS) - set(found))
        raise ConfigError(f"config keys {missing} are missing: start config files from config.default_config()")
    out = copy.deepcopy(cfg)
    _whole_sweep_values(out)
    fallbacks = {path: f.default for path, f in SCHEMA.items() if f.preset and f.default is not None}
    for path, value in {**fallbacks, **_presets(cfg)}.items():
        if get_field(out, path) is None:
            set_field(out, path, value)
    return out


def _whole_sweep_values(cfg: config_dict.ConfigDict) -> None:
    """Sweep values of an integer field given as whole floats (1e3) become ints, so that the
    recorded config shows what runs; other values are left for `validate` to judge."""
    for name, path in PARAM_PATHS.items():
        values = cfg.sweep[name]
        if type(SCHEMA[path].default) is int:
            if isinstance(values, (tuple, list)):
                whole = lambda v: isinstance(v, float) and v.is_integer()  # noqa: E731
                cfg.sweep[name] = tuple(int(v) if whole(v) else v for v in values)


def calibration_kind(calibrate: str) -> tuple[str, int]:
    """'cv_3' -> ('cv', 3); 'temperature' -> ('temperature', 0); 'none' -> ('none', 0)."""
    if calibrate.startswith("cv_") and calibrate[3:].isdigit():
        return "cv", int(calibrate[3:])
    return calibrate, 0


def _calibration_ok(calibrate: str) -> bool:
    kind, folds = calibration_kind(calibrate)
    return kind in types.CALIBRATIONS and (kind != "cv" or folds >= 2)


INT32_MAX = types.INT32_MAX
UINT32_MAX = 2**32 - 1
METRICS_BUFFER_CAP = 2**31  # bytes of one chunk's metrics (lanes x steps x columns x 4 bytes)
_INF = float("inf")

# (path, low, high, kind, why): kind 'int' (whole numbers) or 'float' (finite numbers);
# a '(' / ')' in kind's place opens that end: ('float', '(]') is low < v <= high.
RANGES: tuple[tuple[str, float, float, str, str], ...] = (
    ("online.budget", 0, INT32_MAX, "int", "labels are counted in int32"),
    ("sampler.max_annotation_per_worker", 1, INT32_MAX, "int", "labels are counted in int32"),
    ("sampler.max_annotation_per_example", 1, 64, "int", "label slots per item are an unrolled array shape"),
    ("online.hit_size", 1, 10**6, "int", "items per HIT"),
    ("online.n_hits_per_step", 1, 10**4, "int", "HITs per step"),
    ("worker.n", 1, 10**4, "int", "every lane holds (worker.n, K, K) confusion matrices"),
    ("n_data_distraction_per_class", 0, 10**6, "int", "items per class"),
    ("n_prototype_per_class", 0, 10**4, "int", "prototypes per class"),
    ("data.feature_dim", 1, 65536, "int", "stand-in feature width"),
    ("data.seed", 0, UINT32_MAX, "int", "a uint32 seed"),
    ("optimizer.max_em_steps", 1, 10**4, "int", "EM iterations per step"),
    ("optimizer.item_block", -1, 2**24, "int", "-1 automatic, 0 all items at once, else items per block"),
    ("learner.n_hidden_layer", 0, 64, "int", "hidden layers"),
    ("learner.hidden_size", 1, 65536, "int", "units per hidden layer"),
    ("learner.batch_size", 1, 2**20, "int", "rows per learner batch"),
    ("learner.max_epochs", 1, 10**6, "int", "epochs per fit"),
    ("learner.eval_every", 1, 10**6, "int", "epochs between validations"),
    ("learner.mixmatch.mu", 1, 64, "int", "unlabelled batches per labelled batch"),
    ("run.num_seeds", 1, 65536, "int", "lanes of one compiled program"),
    ("run.seed", 0, UINT32_MAX, "int", "seeds are uint32"),
    ("run.chunk_steps", 1, 10**4, "int", "online steps per compiled call"),
    ("run.checkpoint_every", 0, INT32_MAX, "int", "steps between checkpoints"),
    ("run.max_steps", -1, INT32_MAX, "int", "-1 automatic, else the step count (an int32 counter)"),
    ("run.lane_batch", -1, 65536, "int", "-1 automatic, 0 all lanes at once, else lanes per batch"),
    ("risk_thres", 0, 1, "float()", "a risk threshold: 1 - max posterior"),
    ("learner.risk_thres", 0, 1, "float()", "a risk threshold: 1 - max posterior"),
    ("worker.prior.strength", 0, 10**6, "float", "a multiplier of Dirichlet pseudo-counts; larger overflows float32"),
    ("worker.prior.pos_count", 0, 10**6, "float", "a Dirichlet pseudo-count"),
    ("worker.prior.neg_count", 0, 10**6, "float", "a Dirichlet pseudo-count"),
    ("worker.reliability.mean", 0, 1, "float(]", "a worker's probability of a right answer"),
    ("worker.reliability.std", 0, 1, "float", "the spread of a probability"),
    ("worker.out_of_group_noise", 0, 1, "float", "a fraction of each confusion row"),
    ("worker.difficulty.mean", 0, 1, "float()", "the mean of the items' difficulty"),
    ("worker.difficulty.spread", 0, 1, "float", "the standard deviation of a difficulty in [0, 1]"),
    ("optimizer.likelihood_epsilon", 0, _INF, "float", "a convergence tolerance"),
    ("optimizer.log_epsilon", 0, 1, "float()", "added inside log p(z | y): <= 0 takes the log of 0 or less"),
    ("learner.lr_ratio", 0, 1, "float(]", "learning rate = lr_ratio * sqrt(batch size)"),
    ("learner.weight_decay", 0, _INF, "float", "an L2 weight"),
    ("learner.mixmatch.alpha", 0, _INF, "float(", "the parameter of Beta(alpha, alpha)"),
    ("learner.mixmatch.mixmatch_w", 0, _INF, "float", "a loss weight"),
    ("sampler.temperature", 0, 100, "float", "the Gumbel noise scale of item selection (gains lie in [0, 1])"),
)


def _in_range(low: float, high: float, kind: str) -> Callable[[Any, Any], bool]:
    """A RULES predicate: a number of the right kind within [low, high] (or an open end)."""
    whole = kind.startswith("int")

    def ok(v, c) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (whole and v != int(v)):
            return False
        above = low < v if "(" in kind else low <= v
        below = v < high if ")" in kind else v <= high
        return above and below

    return ok


def _range_text(low: float, high: float, kind: str, why: str) -> str:
    name = "an integer" if kind.startswith("int") else "a finite number"
    if high == _INF:
        return f"{name} {'>' if '(' in kind else '>='} {low} ({why})"
    ends = ("(" if "(" in kind else "[", ")" if ")" in kind else "]")
    return f"{name} in {ends[0]}{low}, {high}{ends[1]} ({why})"


def _max_spread(mean: float) -> float:
    """The largest difficulty spread at this mean (`workers.max_difficulty_spread`), 0 outside (0, 1)."""
    return workers.max_difficulty_spread(mean) if 0 < mean < 1 else 0.0


def _duplicates(wnids: str | None) -> list[str]:
    ids = (wnids or "").split()
    return sorted({w for w in ids if ids.count(w) > 1})


def grid_size(cfg: config_dict.ConfigDict) -> int:
    """Grid points of a config's sweep (1 when nothing is swept)."""
    return math.prod(max(len(cfg.sweep[name]), 1) for name in PARAM_PATHS)


def metric_columns(cfg: config_dict.ConfigDict) -> int:
    """Columns of a step's metrics row (`types.StepMetrics` flattened)."""
    beliefs = 1 + (cfg.learner.algo != "dummy")  # the aggregate's, and the learner's
    per_belief = len(types.BeliefMetrics._fields) * len(types.SubsetMetrics._fields)
    return len(types.StepMetrics._fields) - 2 + beliefs * per_belief


def metrics_buffer_bytes(cfg: config_dict.ConfigDict) -> int:
    """Bytes of one chunk's metrics: lanes x chunk_steps x columns x 4."""
    return grid_size(cfg) * cfg.run.num_seeds * cfg.run.chunk_steps * metric_columns(cfg) * 4


def _buffer_text(cfg) -> str:
    lanes = grid_size(cfg) * cfg.run.num_seeds
    return (
        f"a chunk's metrics within {METRICS_BUFFER_CAP / 2**30:g} GiB: {lanes} lanes x {cfg.run.chunk_steps} steps x "
        f"{metric_columns(cfg)} columns x 4 bytes = {metrics_buffer_bytes(cfg) / 2**30:.3g} GiB; "
        "lower run.chunk_steps, run.num_seeds or the sweep"
    )


# (path, predicate(value, resolved config), what is expected): a text in which '{a.b}' is the
# value of a.b, or a function of the config giving the text.
RULES: tuple[tuple[str, Callable[[Any, Any], bool], Any], ...] = (
    ("wnids", lambda v, c: v is not None or c.data.source != "standin", "a class list: set it or choose an experiment"),
    ("wnids", lambda v, c: not _duplicates(v), lambda c: f"distinct class ids; repeated: {_duplicates(c.wnids)}"),
    *((path, lambda v, c, ok=f.choices: v in ok, f"one of {list(f.choices)}")
      for path, f in SCHEMA.items() if f.choices),
    ("learner.calibrate", lambda v, c: _calibration_ok(v), "'none', 'temperature' or 'cv_<k>' with k >= 2"),
    ("learner.calibrate", lambda v, c: not (v.startswith("cv_") and c.learner.prototype_as_val),
     "'cv_<k>' only with learner.prototype_as_val=False (the folds need the prototypes)"),
    *((path, _in_range(low, high, kind), _range_text(low, high, kind, why)) for path, low, high, kind, why in RANGES),
    ("n_data_per_class", lambda v, c: v is None or _in_range(-INT32_MAX, 10**6, "int")(v, c),
     "None or an integer <= 1000000 (items per class; <= 0 means all)"),
    ("online.n_hits_per_step", lambda v, c: v <= c.worker.n,
     "at most worker.n={worker.n} (each HIT of a step goes to a different worker)"),
    ("sampler.max_annotation_per_worker", lambda v, c: v >= c.online.hit_size,
     "at least online.hit_size={online.hit_size}"),
    ("run.seed", lambda v, c: v + c.run.num_seeds - 1 <= UINT32_MAX,
     f"run.seed + run.num_seeds - 1 <= {UINT32_MAX} (seeds are uint32)"),
    ("run.max_steps", lambda v, c: v != 0, "-1 (automatic) or at least 1 step"),
    ("worker.difficulty.spread", lambda v, c: v <= _max_spread(c.worker.difficulty.mean),
     lambda c: f"at most mean * sqrt((1 - mean) / (1 + mean)) = {_max_spread(c.worker.difficulty.mean):.4g} "
     f"for worker.difficulty.mean={c.worker.difficulty.mean} (the spread of Beta(1, (1 - mean) / mean))"),
    ("learner.max_epochs", lambda v, c: v >= c.learner.eval_every, "at least learner.eval_every={learner.eval_every}"),
    ("n_prototype_per_class", lambda v, c: v >= 2 or c.learner.algo == "dummy",
     "at least 2 with a learner (half of them train at step 0)"),
    *((f"sweep.{name}", lambda v, c: isinstance(v, (tuple, list)), "a tuple of values, e.g. '(0.05,0.1)'")
      for name in PARAM_PATHS),
    ("run.chunk_steps", lambda v, c: metrics_buffer_bytes(c) <= METRICS_BUFFER_CAP, _buffer_text),
)  # fmt: skip


def _check_sweep_value(name: str, path: str, base: Any, v: Any) -> None:
    """A sweep value must be a number, a whole one for an integer field (never cast silently)."""
    whole = isinstance(base, int) and not isinstance(base, bool)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (whole and not float(v).is_integer()):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"sweep.{name} value {v!r}: expected {kind}, like {path}")


def validate(cfg: config_dict.ConfigDict) -> None:
    """Check a resolved config against `RULES`, then every sweep value (no data needed)."""
    for path, ok, expected in RULES:
        value = get_field(cfg, path)
        if not ok(value, cfg):
            text = expected(cfg) if callable(expected) else expected.format_map(cfg)
            raise ConfigError(f"setting {path}={value!r}: expected {text}")
    for name, path in PARAM_PATHS.items():
        base = get_field(cfg, path)
        for v in cfg.sweep[name]:
            _check_sweep_value(name, path, base, v)
            probe = copy.deepcopy(cfg)
            set_field(probe, path, type(base)(v))
            probe.sweep = config_dict.ConfigDict({k: () for k in PARAM_PATHS})
            try:
                validate(probe)
            except ConfigError as err:
                raise ConfigError(f"sweep.{name} value {v!r}: {err}") from None
