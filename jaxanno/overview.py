"""What a launch can do and what one would do, without running anything.

* `catalog()`: the experiments, methods, simulations and samplers, every config key with
  its default and allowed values, and the sweepable fields (``jaxanno list``, ``--list``).
* `data_line(problem)`: which data a prepared launch uses, in one line.
* `dry_run(problem, cfg)`: the resolved config (what differs from the defaults, and where
  each value came from) and the problem sizes, with a memory estimate (``--dry_run``).

Nothing here compiles: sizes come from the prepared `experiment.Problem` and the state's
shapes from `jax.eval_shape`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from ml_collections import config_dict

from jaxanno import config, experiment, types
from jaxanno.data import amt, standin
from jaxanno.data import lookalike as lookalike_geometry

_SHOWN_CHARS = 60  # longer values (class lists) are cut in listings


def _name_rows(rows: dict[str, str]) -> list[str]:
    """Listing lines '  NAME  text', the names in one column as wide as the longest listed
    name (experiments, presets, sweepable fields) and two spaces."""
    names = (*amt.experiments(), *config.METHODS, *config.SIMULATIONS, *types.PARAM_DEFAULTS)
    width = 2 + max(map(len, names))
    return [f"  {name:<{width}}{text}" for name, text in rows.items()]


def _short(value: Any) -> str:
    text = repr(value)
    if isinstance(value, str) and len(value.split()) > 3:
        text = repr(" ".join(value.split()[:3]) + " ...") + f" ({len(value.split())} names)"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _flat(cfg: config_dict.ConfigDict) -> dict[str, Any]:
    return {path: config.get_field(cfg, path) for path in config.PATHS}


def _experiment_text(exp: dict[str, Any]) -> str:
    online = exp.get("online", {})
    return (
        f"{len(exp['wnids'])} classes, {exp.get('n_data_per_class')} images per class, "
        f"budget {online.get('budget')} labels, {online.get('n_hits_per_step')} HITs of "
        f"{online.get('hit_size')} per step"
    )


def _key_lines() -> list[str]:
    lines = []
    for path, f in config.SCHEMA.items():
        default = f"{f.default!r}, unless a preset sets it" if f.preset else repr(f.default)
        allowed = f"; one of {', '.join(map(str, f.choices))}" if f.choices else ""
        lines.append(f"  {path:<40}{default}{allowed}")
    return lines


def catalog() -> str:
    """Every preset, config key and sweepable field, as printed by ``jaxanno list``."""

    def fields_text(fields: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in fields.items())

    methods = _name_rows({name: fields_text(fields) for name, fields in config.METHODS.items()})
    sims = _name_rows({name: fields_text(fields) for name, fields in config.SIMULATIONS.items()})
    sweep = _name_rows(
        {
            name: f"{path} (default {types.PARAM_DEFAULTS[name]!r}"
            + (", unless a preset sets it)" if config.SCHEMA[path].preset else ")")
            for name, path in config.PARAM_PATHS.items()
        }
    )
    return "\n".join(
        [
            "experiments (--experiment=NAME; '' for your own classes or features):",
            *_name_rows({name: _experiment_text(exp) for name, exp in amt.experiments().items()}),
            "",
            "methods (--method=NAME) and the fields each sets:",
            *methods,
            "",
            "simulations (--simulation=NAME) and the fields each sets:",
            *sims,
            "",
            f"samplers (--sampler=NAME): {', '.join(types.SAMPLERS)}",
            "",
            "config keys (--config.KEY=VALUE) with their defaults:",
            *_key_lines(),
            "",
            "sweepable fields (--config.sweep.NAME='(v1,v2,...)': one lane per value and seed, one compilation):",
            *sweep,
        ]
    )


def data_line(problem: experiment.Problem) -> str:
    """'data: ...': which features a prepared launch uses, and their sizes."""
    cfg, fs = problem.cfg, problem.features
    sizes = (
        f"{fs.num_items:,} items + {fs.num_prototypes:,} prototypes, {fs.num_classes} classes, "
        f"{fs.features.shape[1]} dims"
    )
    if cfg.data.source == "standin":
        exp, width = cfg.experiment or None, cfg.data.feature_dim
        lookalike = cfg.data.standin_geometry == "lookalike"
        table = lookalike_geometry.CALIBRATION if lookalike else standin.CALIBRATION
        calibrated = (
            f"calibrated to the paper's learner on {exp}"
            if (exp, width) in table and not _custom_classes(cfg)
            else "uncalibrated at this width / class list"
        )
        geometry = ", look-alike geometry" if lookalike else ""
        return f"data: stand-in features (synthetic, not ImageNet; {calibrated}{geometry}): {sizes}"
    files = cfg.data.features + (f" with {cfg.data.image_list}" if cfg.data.source == "reference" else "")
    files += f" and {cfg.data.labels}" if cfg.data.source == "npy" else ""
    return f"data: {files} ({cfg.data.source}: {sizes})"


def _custom_classes(cfg: config_dict.ConfigDict) -> bool:
    """Whether the class list differs from the experiment's own."""
    exp = amt.experiments().get(cfg.experiment)
    return exp is None or (cfg.wnids or "").split() != list(exp["wnids"])


def _config_lines(problem: experiment.Problem, cfg: config_dict.ConfigDict) -> list[str]:
    """Fields of the resolved config that differ from the defaults, each with where it came from."""
    given, unset = _flat(cfg), _flat(config.default_config())
    base = _flat(config.resolve(config.default_config()))
    base["data.source"] = "standin"
    lines = []
    for path, value in _flat(problem.cfg).items():
        if value == base[path] and path not in ("experiment", "method", "simulation"):
            continue
        field = config.SCHEMA.get(path)
        if given[path] is not None and given[path] != unset[path]:
            origin = "set"
        elif path == "data.source":
            origin = "inferred from data.features"
        else:
            origin = "preset" if field is not None and value != field.default else "default"
        lines.append(f"  {path:<40}{_short(value):<30} ({origin})")
    return lines


def _mb(nbytes: float) -> str:
    """A byte count in KiB, MiB or GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes / 2**10:,.1f} KiB"


def _tree_bytes(tree: Any) -> int:
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _size_lines(problem: experiment.Problem) -> list[str]:
    st, fs, cfg = problem.static, problem.features, problem.cfg
    lanes, padded = problem.num_lanes, int(problem.lane_seeds.shape[0])
    batch = experiment.lane_batch(cfg.run.lane_batch)
    at_once = "all at once (vmapped)" if batch == 0 else ("one at a time" if batch == 1 else f"{batch} at a time")
    state = _tree_bytes(experiment.state_shapes(problem))
    data = _tree_bytes(problem.data)
    devices = problem.mesh.size
    return [
        f"  items {fs.num_items:,}, prototypes {fs.num_prototypes:,}, classes {fs.num_classes}, "
        f"feature dims {fs.features.shape[1]}",
        f"  workers {st.num_workers}, up to {st.max_annotations} labels per item, "
        f"{st.hits_per_step} HIT(s) of {st.hit_size} per step ({st.labels_per_step} labels)",
        f"  lanes {problem.num_grid} grid point(s) x {len(problem.seeds)} seed(s) = {lanes} "
        f"(padded to {padded} over {devices} device(s)), run {at_once} per device",
        f"  steps at most {problem.max_steps:,}, {cfg.run.chunk_steps} per compiled call, "
        f"checkpoint every {cfg.run.checkpoint_every}",
        f"  memory (estimate) state {_mb(state / padded)} per lane, {_mb(state / devices)} per device; "
        f"data {_mb(data)} per device; plus the program's working buffers",
    ]


def dry_run(problem: experiment.Problem, cfg: config_dict.ConfigDict) -> str:
    """The resolved config and the problem sizes of a prepared launch (nothing compiled or written).

    Args:
      problem: `experiment.prepare(cfg)`.
      cfg: the config as given (before presets), to tell set values from preset ones.
    """
    return "\n".join(
        [
            "dry run: nothing compiled or written",
            "config (fields that differ from the defaults):",
            *_config_lines(problem, cfg),
            "problem:",
            *_size_lines(problem),
        ]
    )
