"""jaxanno: efficient online image-classification annotation, simulated in JAX.

The public API, by what a user does (everything else is reachable as a submodule, e.g.
``jaxanno.em``, but only these names are promised to stay):

Simulate annotation runs (many seeds and sweep values as lanes of one compiled program)::

    cfg = jaxanno.default_config()              # ml_collections schema; set fields, then
    cfg.experiment, cfg.method = "imagenet_split_1", "efficient_annotation"
    jaxanno.run_launch(cfg, "runs/demo")        # what `launch.py` / `jaxanno run` do
    problem = jaxanno.prepare(cfg)              # or drive it yourself:
    result = jaxanno.run_experiment(problem)    # final state + per-step metrics of every lane

One seed, as pure functions of frozen pytrees (`Static` fixes shapes, `Params` is swept)::

    state, metrics = jaxanno.simulate(static, params, dataset, jax.random.key(0), num_steps)

Aggregate a real crowd project (crowd-kit compatible)::

    jaxanno.DawidSkene(n_iter=100).fit_predict(labels_df)
    jaxanno.next_batch(fitted_model, n_hits=5, hit_size=40)

Report: ``jaxanno.write_report([workdir, ...], out_dir)``.

Names are imported on first use, so ``import jaxanno`` stays fast (no flax, optax or
matplotlib until needed). The persistent compilation cache is configured at import, before
anything compiles (see `jaxanno.compile_cache`).
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxanno import compile_cache

compile_cache.configure()  # before anything compiles; where and why: jaxanno/compile_cache.py

# public name -> (module, attribute)
_PUBLIC: dict[str, tuple[str, str]] = {
    # configuration and launches
    "default_config": ("jaxanno.config", "default_config"),
    "ConfigError": ("jaxanno.config", "ConfigError"),
    "run_launch": ("jaxanno.runner", "run_launch"),
    "prepare": ("jaxanno.experiment", "prepare"),
    "run_experiment": ("jaxanno.experiment", "run"),
    # the simulator as pure functions
    "Static": ("jaxanno.types", "Static"),
    "EMStatic": ("jaxanno.types", "EMStatic"),
    "LearnerStatic": ("jaxanno.types", "LearnerStatic"),
    "Params": ("jaxanno.types", "Params"),
    "make_params": ("jaxanno.types", "make_params"),
    "Dataset": ("jaxanno.types", "Dataset"),
    "SimState": ("jaxanno.types", "SimState"),
    "StepMetrics": ("jaxanno.types", "StepMetrics"),
    "init_state": ("jaxanno.sim", "init_state"),
    "online_step": ("jaxanno.sim", "online_step"),
    "simulate": ("jaxanno.sim", "simulate"),
    # real crowd projects
    "DawidSkene": ("jaxanno.crowd", "DawidSkene"),
    "MajorityVote": ("jaxanno.crowd", "MajorityVote"),
    "next_batch": ("jaxanno.crowd", "next_batch"),
    # reports
    "load_run": ("jaxanno.report", "load_run"),
    "write_report": ("jaxanno.report", "write_report"),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'jaxanno' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
