"""The configuration boundary: ml_collections configs in, `Static` / `Params` out.

Library modules never see a ConfigDict. This module

* builds the default config tree (named after the reference's config.yaml sections, so its
  launch lines translate one to one),
* resolves the named presets: ``experiment`` (class list and online settings, from the
  packaged experiments.json), ``method`` (REFERENCE section 6) and ``simulation``. Every
  field a preset governs starts as a typed placeholder (None); a value set in a config file
  or on the command line always wins over the preset,
* validates every setting before anything compiles, with messages that name the setting,
  the value and what is allowed,
* converts to `Static`, `Params` and the sweep grid (sweep values are vmap axes).
"""

from __future__ import annotations

import copy
import importlib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ml_collections import config_dict

from jaxanno import types
from jaxanno.data import amt

placeholder = config_dict.placeholder


class ConfigError(ValueError):
    """An impossible or inconsistent setting, found before anything compiles."""


METHODS: dict[str, dict[str, Any]] = {
    "ds_model": {"optimizer.criterion": "soft", "learner.algo": "dummy"},
    "lean": {
        "optimizer.criterion": "hard",
        "learner.algo": "mlp",
        "learner.calibrate": "cv_3",
        "learner.semi_supervised": "none",
        "learner.early_stop_scope": "local",
        "learner.prototype_as_val": False,
    },
    "improved_lean": {
        "optimizer.criterion": "soft",
        "learner.algo": "mlp",
        "learner.calibrate": "temperature",
        "learner.semi_supervised": "none",
        "learner.early_stop_scope": "global",
        "learner.prototype_as_val": True,
    },
    "efficient_annotation": {
        "optimizer.criterion": "soft",
        "learner.algo": "mlp",
        "learner.calibrate": "temperature",
        "learner.semi_supervised": "pseudolabel",
        "learner.early_stop_scope": "global",
        "learner.prototype_as_val": True,
    },
    "efficient_annotation_mixmatch": {
        "optimizer.criterion": "soft",
        "learner.algo": "mlp",
        "learner.calibrate": "temperature",
        "learner.semi_supervised": "mixmatch",
        "learner.early_stop_scope": "global",
        "learner.prototype_as_val": True,
    },
}

SIMULATIONS: dict[str, dict[str, Any]] = {
    "amt_structured_noise": {"worker.type": "structured_noise"},
    "amt_uniform_noise": {"worker.type": "uniform_noise"},
}

# Values used when neither a file, the command line nor a preset sets a field.
FALLBACKS: dict[str, Any] = {
    "optimizer.criterion": "soft",
    "learner.algo": "dummy",
    "learner.calibrate": "temperature",
    "learner.semi_supervised": "none",
    "learner.early_stop_scope": "local",
    "learner.prototype_as_val": True,
    "worker.type": "structured_noise",
    "n_data_distraction_per_class": 0,
    "n_prototype_per_class": 10,
    "risk_thres": 0.1,
    "online.n_hits_per_step": 5,
    "online.hit_size": 40,
    "online.budget": 400000,
}

# Params field -> config path. Every one can be swept: ``--config.sweep.<field>='(a,b)'``.
PARAM_PATHS: dict[str, str] = {
    "risk_threshold": "risk_thres",
    "budget": "online.budget",
    "max_annotation_per_worker": "sampler.max_annotation_per_worker",
    "prior_strength": "worker.prior.strength",
    "prior_pos_count": "worker.prior.pos_count",
    "prior_neg_count": "worker.prior.neg_count",
    "em_epsilon": "optimizer.likelihood_epsilon",
    "log_epsilon": "optimizer.log_epsilon",
    "reliability_mean": "worker.reliability.mean",
    "reliability_std": "worker.reliability.std",
    "out_of_group_noise": "worker.out_of_group_noise",
    "lr_ratio": "learner.lr_ratio",
    "weight_decay": "learner.weight_decay",
    "pseudo_label_threshold": "learner.risk_thres",
    "mixmatch_alpha": "learner.mixmatch.alpha",
    "mixmatch_weight": "learner.mixmatch.mixmatch_w",
}


def default_config() -> config_dict.ConfigDict:
    """The full config tree with the reference's defaults (Vertebrate, Online DS)."""
    c = config_dict.ConfigDict()
    c.experiment = "imagenet_split_1"
    c.method = "ds_model"
    c.simulation = "amt_structured_noise"
    c.early_stop = False
    c.risk_thres = placeholder(float)
    c.n_data_per_class = placeholder(int)
    c.n_data_distraction_per_class = placeholder(int)
    c.n_prototype_per_class = placeholder(int)
    c.wnids = placeholder(str)  # space-separated class list; from the experiment by default

    c.online = config_dict.ConfigDict()
    c.online.n_hits_per_step = placeholder(int)
    c.online.hit_size = placeholder(int)
    c.online.budget = placeholder(int)

    c.data = config_dict.ConfigDict()
    c.data.source = "standin"  # 'standin', 'reference', 'npz' or 'npy'
    c.data.features = ""  # .npy (reference / npy) or .npz file
    c.data.image_list = ""  # reference image list: 'wnid/file.JPEG label' per line
    c.data.labels = ""  # npy source: labels as .npy or one integer per line
    c.data.feature_dim = 128  # stand-in feature width
    c.data.seed = 0  # item / prototype selection and stand-in generation
    c.data.cache_dir = ""  # stand-in cache ('' = ~/.cache/jaxanno)

    c.worker = config_dict.ConfigDict()
    c.worker.type = placeholder(str)
    c.worker.n = 50
    c.worker.out_of_group_noise = 0.03
    c.worker.reliability = config_dict.ConfigDict({"mean": 0.8, "std": 0.1})
    c.worker.prior = config_dict.ConfigDict(
        {"type": "homegeneous_workers", "strength": 10.0, "pos_count": 2.0, "neg_count": 1.0}
    )

    c.aggregator = config_dict.ConfigDict({"algo": "bayes"})

    c.optimizer = config_dict.ConfigDict()
    c.optimizer.max_em_steps = 10
    c.optimizer.likelihood_epsilon = 1e-3
    c.optimizer.criterion = placeholder(str)
    c.optimizer.m_step = "hard"
    c.optimizer.class_prior = "uniform"
    c.optimizer.init = "prior"
    c.optimizer.warm_start = False
    c.optimizer.log_epsilon = 1e-8
    c.optimizer.item_block = -1  # items per E-step block; -1: 2048 on CPU, all at once elsewhere

    c.learner = config_dict.ConfigDict()
    c.learner.algo = placeholder(str)
    c.learner.module = ""  # 'package.module:Class' to plug in any flax module
    c.learner.n_hidden_layer = 1
    c.learner.hidden_size = 64
    c.learner.batch_size = 1024
    c.learner.max_epochs = 300
    c.learner.eval_every = 10
    c.learner.lr_ratio = 1e-4
    c.learner.weight_decay = 1e-3
    c.learner.risk_thres = 0.1
    c.learner.calibrate = placeholder(str)
    c.learner.temperature_solver = "reference"
    c.learner.semi_supervised = placeholder(str)
    c.learner.early_stop_scope = placeholder(str)
    c.learner.prototype_as_val = placeholder(bool)
    c.learner.mixmatch = config_dict.ConfigDict({"mu": 5, "alpha": 0.75, "mixmatch_w": 75.0})

    c.sampler = config_dict.ConfigDict()
    c.sampler.algo = "random"
    c.sampler.max_annotation_per_example = 3
    c.sampler.max_annotation_per_worker = 2000

    c.run = config_dict.ConfigDict()
    c.run.num_seeds = 4
    c.run.seed = 0
    c.run.chunk_steps = 10  # online steps per compiled call (progress / checkpoint grain)
    c.run.checkpoint_every = 50  # steps between checkpoints (rounded up to whole chunks)
    c.run.max_steps = -1  # -1: enough for every item to reach A labels
    # (grid point, seed) lanes vmapped at once per device: 0 = all, -1 = automatic (1 on a
    # CPU: each lane alone, so a seed's result never depends on the other lanes; all on GPU)
    c.run.lane_batch = -1

    c.sweep = config_dict.ConfigDict({name: () for name in PARAM_PATHS})
    return c


def _get(cfg: config_dict.ConfigDict, path: str) -> Any:
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _set(cfg: config_dict.ConfigDict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value


def _experiment_preset(name: str) -> dict[str, Any]:
    exps = amt.experiments()
    if name not in exps:
        raise ConfigError(f"setting experiment={name!r}: unknown; allowed: {sorted(exps)} or ''")
    e = exps[name]
    return {
        "wnids": " ".join(e["wnids"]),
        "n_data_per_class": e["n_data_per_class"],
        "n_data_distraction_per_class": e["n_data_distraction_per_class"],
        "n_prototype_per_class": e["n_prototype_per_class"],
        "risk_thres": e["risk_thres"],
        **{f"online.{k}": v for k, v in e["online"].items()},
    }


def _preset(table: Mapping[str, dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    if name not in table:
        raise ConfigError(f"setting {kind}={name!r}: unknown; allowed: {sorted(table)}")
    return table[name]


def resolve(cfg: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """A copy with every placeholder filled from the named presets, then the fallbacks.

    Explicit values (file or command line) are never overwritten.
    """
    out = copy.deepcopy(cfg)
    presets: dict[str, Any] = {}
    if cfg.experiment:
        presets.update(_experiment_preset(cfg.experiment))
    presets.update(_preset(METHODS, "method", cfg.method))
    presets.update(_preset(SIMULATIONS, "simulation", cfg.simulation))
    for path, value in {**FALLBACKS, **presets}.items():
        if _get(out, path) is None:
            _set(out, path, value)
    return out


def _require(ok: bool, setting: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"setting {setting}={value!r}: expected {allowed}")


def _check_choice(cfg, path: str, allowed: Sequence[str]) -> None:
    value = _get(cfg, path)
    _require(value in allowed, path, value, f"one of {list(allowed)}")


def calibration_kind(calibrate: str) -> tuple[str, int]:
    """'cv_3' -> ('cv', 3); 'temperature' -> ('temperature', 0); 'none' -> ('none', 0)."""
    if calibrate.startswith("cv_") and calibrate[3:].isdigit():
        return "cv", int(calibrate[3:])
    return calibrate, 0


def validate(cfg: config_dict.ConfigDict) -> None:
    """Check a resolved config for impossible or inconsistent settings (no data needed)."""
    missing = [
        p
        for p in ("wnids", "risk_thres", "online.hit_size", "online.n_hits_per_step", "online.budget")
        if _get(cfg, p) is None and not (p == "wnids" and cfg.data.source != "standin")
    ]
    if missing:
        raise ConfigError(f"settings {missing} are unset: set them or choose an experiment")
    _check_choice(cfg, "worker.type", types.WORKER_TYPES)
    _check_choice(cfg, "worker.prior.type", types.PRIOR_TYPES)
    _check_choice(cfg, "aggregator.algo", types.AGGREGATORS)
    _check_choice(cfg, "optimizer.criterion", types.EM_CRITERIA)
    _check_choice(cfg, "optimizer.m_step", types.M_STEPS)
    _check_choice(cfg, "optimizer.class_prior", types.CLASS_PRIORS)
    _check_choice(cfg, "optimizer.init", types.EM_INITS)
    _check_choice(cfg, "sampler.algo", types.SAMPLERS)
    _check_choice(cfg, "learner.algo", types.LEARNER_ALGOS)
    _check_choice(cfg, "learner.temperature_solver", types.TEMPERATURE_SOLVERS)
    _check_choice(cfg, "learner.semi_supervised", types.SEMI_SUPERVISED)
    _check_choice(cfg, "learner.early_stop_scope", types.EARLY_STOP_SCOPES)
    _check_choice(cfg, "data.source", ("standin", "reference", "npz", "npy"))
    kind, folds = calibration_kind(cfg.learner.calibrate)
    _require(
        kind in types.CALIBRATIONS and (kind != "cv" or folds >= 2),
        "learner.calibrate",
        cfg.learner.calibrate,
        "'none', 'temperature' or 'cv_<k>' with k >= 2",
    )
    _require(
        not (kind == "cv" and cfg.learner.prototype_as_val),
        "learner.calibrate",
        cfg.learner.calibrate,
        "'cv_<k>' only with learner.prototype_as_val=False (the folds need the prototypes)",
    )
    _require(0 < cfg.risk_thres < 1, "risk_thres", cfg.risk_thres, "a value in (0, 1)")
    _require(0 < cfg.learner.risk_thres < 1, "learner.risk_thres", cfg.learner.risk_thres, "a value in (0, 1)")
    _require(
        cfg.sampler.max_annotation_per_example >= 1,
        "sampler.max_annotation_per_example",
        cfg.sampler.max_annotation_per_example,
        "an integer >= 1",
    )
    _require(cfg.online.budget >= 0, "online.budget", cfg.online.budget, "a non-negative number of labels")
    _require(cfg.online.hit_size >= 1, "online.hit_size", cfg.online.hit_size, "an integer >= 1")
    _require(cfg.online.n_hits_per_step >= 1, "online.n_hits_per_step", cfg.online.n_hits_per_step, "an integer >= 1")
    _require(cfg.worker.n >= 1, "worker.n", cfg.worker.n, "an integer >= 1")
    _require(
        cfg.online.n_hits_per_step <= cfg.worker.n,
        "online.n_hits_per_step",
        cfg.online.n_hits_per_step,
        f"at most worker.n={cfg.worker.n} (each HIT of a step goes to a different worker)",
    )
    _require(
        cfg.sampler.max_annotation_per_worker >= cfg.online.hit_size,
        "sampler.max_annotation_per_worker",
        cfg.sampler.max_annotation_per_worker,
        f"at least online.hit_size={cfg.online.hit_size}",
    )
    _require(cfg.worker.prior.strength >= 0, "worker.prior.strength", cfg.worker.prior.strength, "a value >= 0")
    _require(
        cfg.optimizer.item_block >= -1,
        "optimizer.item_block",
        cfg.optimizer.item_block,
        "-1 (automatic), 0 (all items at once) or a block size",
    )
    _require(cfg.optimizer.max_em_steps >= 1, "optimizer.max_em_steps", cfg.optimizer.max_em_steps, "an integer >= 1")
    _require(
        cfg.optimizer.likelihood_epsilon >= 0,
        "optimizer.likelihood_epsilon",
        cfg.optimizer.likelihood_epsilon,
        "a value >= 0",
    )
    _require(cfg.learner.batch_size >= 1, "learner.batch_size", cfg.learner.batch_size, "an integer >= 1")
    _require(cfg.learner.eval_every >= 1, "learner.eval_every", cfg.learner.eval_every, "an integer >= 1")
    _require(
        cfg.learner.max_epochs >= cfg.learner.eval_every,
        "learner.max_epochs",
        cfg.learner.max_epochs,
        f"at least learner.eval_every={cfg.learner.eval_every}",
    )
    _require(cfg.learner.n_hidden_layer >= 0, "learner.n_hidden_layer", cfg.learner.n_hidden_layer, "an integer >= 0")
    _require(cfg.learner.mixmatch.mu >= 1, "learner.mixmatch.mu", cfg.learner.mixmatch.mu, "an integer >= 1")
    _require(
        cfg.n_prototype_per_class >= 2 or cfg.learner.algo == "dummy",
        "n_prototype_per_class",
        cfg.n_prototype_per_class,
        "at least 2 with a learner (half of them train at step 0)",
    )
    _require(
        cfg.n_data_distraction_per_class >= 0,
        "n_data_distraction_per_class",
        cfg.n_data_distraction_per_class,
        "an integer >= 0",
    )
    _require(cfg.data.feature_dim >= 1, "data.feature_dim", cfg.data.feature_dim, "an integer >= 1")
    _require(cfg.run.num_seeds >= 1, "run.num_seeds", cfg.run.num_seeds, "an integer >= 1")
    _require(cfg.run.chunk_steps >= 1, "run.chunk_steps", cfg.run.chunk_steps, "an integer >= 1")
    _require(cfg.run.lane_batch >= -1, "run.lane_batch", cfg.run.lane_batch, "-1 (automatic), 0 (all) or a count")
    _validate_sweep(cfg)


def _validate_sweep(cfg: config_dict.ConfigDict) -> None:
    for name in PARAM_PATHS:
        values = cfg.sweep[name]
        _require(isinstance(values, (tuple, list)), f"sweep.{name}", values, "a tuple of values, e.g. '(0.05,0.1)'")
        for v in values:
            probe = copy.deepcopy(cfg)
            _set(probe, PARAM_PATHS[name], type(_get(cfg, PARAM_PATHS[name]))(v))
            for k in PARAM_PATHS:
                probe.sweep[k] = ()
            try:
                validate(probe)
            except ConfigError as err:
                raise ConfigError(f"sweep.{name} value {v!r}: {err}") from None


def check_against_data(cfg: config_dict.ConfigDict, num_items: int) -> None:
    """Settings that only the data can rule out (e.g. HITs larger than the item set)."""
    _require(
        cfg.online.hit_size <= num_items,
        "online.hit_size",
        cfg.online.hit_size,
        f"at most the number of items to label ({num_items})",
    )


def _model(cfg: config_dict.ConfigDict, num_classes: int):
    """The flax module of the learner: the reference MLP or a user's 'module:Class'."""
    from jaxanno import learner  # the learner pulls in optax; only needed with a learner

    if not cfg.learner.module:
        return learner.MLP(
            num_classes=num_classes, hidden_sizes=(cfg.learner.hidden_size,) * cfg.learner.n_hidden_layer
        )
    mod_name, _, cls_name = cfg.learner.module.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(
            f"setting learner.module={cfg.learner.module!r}: cannot import ({err}); "
            "expected 'package.module:Class' of a flax.linen.Module"
        ) from None
    return cls(num_classes=num_classes)


def to_static(
    cfg: config_dict.ConfigDict, num_items: int, num_prototypes: int, num_classes: int, feature_dim: int
) -> types.Static:
    """The `Static` of a resolved config and the sizes of its data."""
    kind, folds = calibration_kind(cfg.learner.calibrate)
    learner_static = None
    if cfg.learner.algo == "mlp":
        learner_static = types.LearnerStatic(
            model=_model(cfg, num_classes),
            batch_size=cfg.learner.batch_size,
            max_epochs=cfg.learner.max_epochs,
            eval_every=cfg.learner.eval_every,
            calibrate=kind,
            cv_folds=folds or 3,
            temperature_solver=cfg.learner.temperature_solver,
            semi_supervised=cfg.learner.semi_supervised,
            early_stop_scope=cfg.learner.early_stop_scope,
            prototype_as_val=cfg.learner.prototype_as_val,
            mixmatch_mu=cfg.learner.mixmatch.mu,
        )
    return types.Static(
        num_items=num_items,
        num_prototypes=num_prototypes,
        num_classes=num_classes,
        num_workers=cfg.worker.n,
        feature_dim=feature_dim,
        max_annotations=cfg.sampler.max_annotation_per_example,
        hit_size=cfg.online.hit_size,
        hits_per_step=cfg.online.n_hits_per_step,
        n_prototype_per_class=cfg.n_prototype_per_class,
        sampler=cfg.sampler.algo,
        worker_type=cfg.worker.type,
        prior_type=cfg.worker.prior.type,
        early_stop=cfg.early_stop,
        em=types.EMStatic(
            aggregator=cfg.aggregator.algo,
            max_em_steps=cfg.optimizer.max_em_steps,
            criterion=cfg.optimizer.criterion,
            m_step=cfg.optimizer.m_step,
            class_prior=cfg.optimizer.class_prior,
            init=cfg.optimizer.init,
            warm_start=cfg.optimizer.warm_start,
            item_block=item_block(cfg.optimizer.item_block),
        ),
        learner=learner_static,
    )


CPU_ITEM_BLOCK = 2048  # (2048, K) float32 blocks stay in a CPU's cache


def lane_batch(setting: int) -> int:
    """Lanes vmapped at once: `setting`, or for -1 one at a time on CPU and all elsewhere.

    XLA vectorises a vmapped program differently for different lane counts, so float
    results can differ in the last bit with the number of lanes, and a simulation run
    long enough amplifies that into a different (statistically equivalent) trajectory.
    One lane at a time makes every lane's result independent of the others; on a CPU it
    costs little throughput (one lane already keeps the cores busy).
    """
    if setting >= 0:
        return setting
    import jax

    return 1 if jax.default_backend() == "cpu" else 0


def item_block(setting: int) -> int:
    """The E-step block size: `setting`, or for -1 the backend's best (blocks on CPU only)."""
    if setting >= 0:
        return setting
    import jax

    return CPU_ITEM_BLOCK if jax.default_backend() == "cpu" else 0


def param_values(cfg: config_dict.ConfigDict) -> dict[str, Any]:
    """Base (unswept) value of every `Params` field."""
    return {name: _get(cfg, path) for name, path in PARAM_PATHS.items()}


def to_params(cfg: config_dict.ConfigDict) -> types.Params:
    """The base `Params` of a resolved config."""
    return types.make_params(**param_values(cfg))


def sweep_points(cfg: config_dict.ConfigDict) -> list[dict[str, Any]]:
    """The cartesian sweep grid as a list of {field: value}, swept fields only.

    One point (an empty dict) when nothing is swept.
    """
    axes = {name: tuple(cfg.sweep[name]) for name in PARAM_PATHS if len(cfg.sweep[name])}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def sweep_grid(cfg: config_dict.ConfigDict, host: bool = False) -> tuple[types.Params, list[dict[str, Any]]]:
    """`Params` with a leading (G,) grid axis, and each grid point's swept settings."""
    base = param_values(cfg)
    points = sweep_points(cfg)
    columns = {name: np.array([p.get(name, base[name]) for p in points]) for name in base}
    return types.make_params(host=host, **columns), points


def default_max_steps(cfg: config_dict.ConfigDict, num_items: int) -> int:
    """Online steps after which every item has A labels or the budget is spent."""
    labels = min(num_items * cfg.sampler.max_annotation_per_example, max(cfg.online.budget, 0))
    for point in sweep_points(cfg):
        labels = max(labels, min(num_items * cfg.sampler.max_annotation_per_example, point.get("budget", 0)))
    per_step = cfg.online.hit_size * cfg.online.n_hits_per_step
    # + A: the last few items may need one small HIT per remaining label.
    return math.ceil(labels / per_step) + cfg.sampler.max_annotation_per_example + 1


def to_dict(cfg: config_dict.ConfigDict) -> dict[str, Any]:
    """Plain nested dict of a config (for JSON output)."""
    return cfg.to_dict()


def from_dict(d: Mapping[str, Any]) -> config_dict.ConfigDict:
    """Rebuild a config from `to_dict` output onto the default tree (types preserved)."""
    cfg = default_config()
    _merge(cfg, d, "")
    return cfg


def _merge(cfg, d: Mapping[str, Any], prefix: str) -> None:
    for key, value in d.items():
        path = f"{prefix}{key}"
        if key not in cfg:
            raise ConfigError(f"unknown config key {path!r}")
        if isinstance(value, Mapping) and isinstance(cfg[key], config_dict.ConfigDict):
            _merge(cfg[key], value, path + ".")
        elif key in ("sweep",) or prefix == "sweep.":
            cfg[key] = tuple(value)
        else:
            cfg[key] = tuple(value) if isinstance(value, list) else value


def apply_preset_names(cfg: config_dict.ConfigDict, names: str) -> config_dict.ConfigDict:
    """Set experiment / method / simulation from a comma-separated list of preset names."""
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name in amt.experiments():
            cfg.experiment = name
        elif name in METHODS:
            cfg.method = name
        elif name in SIMULATIONS:
            cfg.simulation = name
        else:
            raise ConfigError(
                f"preset {name!r} is not an experiment {sorted(amt.experiments())}, method "
                f"{sorted(METHODS)} or simulation {sorted(SIMULATIONS)}"
            )
    return cfg
