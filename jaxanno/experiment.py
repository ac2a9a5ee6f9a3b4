"""Running experiments: from a config to a placed `Problem`, the vmapped and sharded lanes,
the jitted chunk and the driver loop. No absl and no files here (see `runner`).

`prepare` resolves and validates a config (`config`), loads the data, converts the config
to `Static` and the sweep grid of `Params` through `config.SCHEMA`, and places everything.

Lanes: a launch's (grid point, seed) pairs are flattened into one lane axis,
``lane = grid * S + seed_index``, padded to a multiple of the device count and sharded
over every device (`distributed.lane_mesh`). Each device vmaps `sim.run_chunk` over its
lanes, so a whole sweep is one compiled program, and the lanes never communicate. Every
grid point uses the same seeds (common random numbers), which makes comparisons across
sweep values paired. Results are reshaped to ``[grid point, seed, ...]`` on the host.

The driver calls the compiled chunk (``run.chunk_steps`` online steps) repeatedly until
every lane has stopped; between calls it reports progress and writes checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from ml_collections import config_dict

from jaxanno import config as config_lib
from jaxanno import data as data_lib
from jaxanno import distributed, results, sim, types


@dataclasses.dataclass
class Problem:
    """Everything one launch needs, converted from a resolved config and placed on devices."""

    cfg: config_dict.ConfigDict  # resolved and validated
    static: types.Static
    points: list[dict[str, Any]]  # the swept settings of each grid point
    features: data_lib.FeatureSet
    seeds: list[int]
    max_steps: int
    mesh: Mesh
    data: types.Dataset  # replicated on every device
    lane_params: types.Params  # leaves (L_pad,), sharded over lanes
    lane_seeds: jax.Array  # (L_pad,) uint32, sharded over lanes

    @property
    def num_grid(self) -> int:
        return len(self.points)

    @property
    def num_lanes(self) -> int:
        """L = G * S real lanes (the padded lanes after them are dropped)."""
        return self.num_grid * len(self.seeds)

    def by_grid_seed(self, tree: Any) -> Any:
        """Host arrays with a leading (L_pad,) lane axis -> leading (G, S) axes."""
        shape = (self.num_grid, len(self.seeds))
        return jax.tree.map(lambda x: np.asarray(x)[: self.num_lanes].reshape(shape + np.shape(x)[1:]), tree)


def data_spec(cfg: config_dict.ConfigDict) -> data_lib.DataSpec:
    """Where a config's features come from (the source inferred as `data_source` does)."""
    d = cfg.data
    return data_lib.DataSpec(
        source=data_source(cfg),
        experiment=cfg.experiment or None,
        wnids=tuple((cfg.wnids or "").split()),
        n_data_per_class=cfg.n_data_per_class,
        n_prototype_per_class=cfg.n_prototype_per_class,
        n_data_distraction_per_class=cfg.n_data_distraction_per_class,
        feature_dim=d.feature_dim,
        seed=d.seed,
        features=d.features,
        image_list=d.image_list,
        labels=d.labels,
        cache_dir=d.cache_dir,
        standin_geometry=d.standin_geometry,
    )


def _file_kind(path: str) -> str | None:
    """'npy' or 'npz' for ``data.features`` by its first bytes (by suffix if unreadable); None when neither."""
    try:
        kind = data_lib.inputs.file_kind(path) if os.path.isfile(path) else None
    except data_lib.DataError:  # unreadable: the loader names the file and the fix
        kind = None
    return kind if kind in ("npy", "npz") else {".npy": "npy", ".npz": "npz"}.get(pathlib.Path(path).suffix.lower())


def _npy_source(d: config_dict.ConfigDict) -> str:
    """'reference' for a .npy with ``data.image_list``, 'npy' for one with ``data.labels``."""
    if d.image_list and d.labels:
        raise config_lib.ConfigError(
            f"settings data.image_list and data.labels: both set for the .npy features {d.features!r}; set "
            "data.labels (one label per row: source 'npy') or data.image_list (the reference image list: source "
            "'reference'), or choose with data.source"
        )
    if not (d.image_list or d.labels):
        raise config_lib.ConfigError(
            f"setting data.features={d.features!r}: a .npy array needs its labels; set data.labels=FILE (one "
            "integer label per row) or data.image_list=FILE (the reference 'wnid/file.JPEG label' list)"
        )
    return "reference" if d.image_list else "npy"


def _no_features_source(cfg: config_dict.ConfigDict, given: str | None) -> str:
    """The source of a config without ``data.features``: the stand-in, checked for what it needs."""
    d = cfg.data
    if given not in (None, "standin"):
        return given  # the loader names the missing data.features
    stray = [f for f in ("labels", "image_list") if d[f]]
    if stray:
        raise config_lib.ConfigError(
            f"setting data.{stray[0]}={d[stray[0]]!r}: found no data.features to go with it; set data.features "
            f"to the features file, or drop data.{stray[0]} to use the stand-in features"
        )
    if not cfg.experiment and not cfg.wnids:
        raise config_lib.ConfigError(
            "settings experiment='' and wnids: neither is set, so the stand-in features have no classes; set "
            "wnids='n01440764 n01443537 ...' (ImageNet wnids, space-separated), choose an experiment (`jaxanno "
            "list` shows them), or give your own features with data.features=FILE.npz"
        )
    return "standin"


def data_source(cfg: config_dict.ConfigDict) -> str:
    """The feature source of a config: ``data.source``, or for 'auto' the one ``data.features`` implies.

    No ``data.features``: the stand-in ('standin'). An ``.npz``: 'npz'. A ``.npy``: 'npy' with
    ``data.labels``, 'reference' with ``data.image_list``. Files are recognised by their first
    bytes when they exist, else by suffix.

    Raises:
      config.ConfigError: an explicit ``data.source`` that contradicts the file, label or image
        files without features, or a stand-in without a class list.
    """
    d = cfg.data
    given = None if d.source == "auto" else d.source
    if not d.features:
        return _no_features_source(cfg, given)
    kind = _file_kind(d.features)
    what = {"npy": "a .npy array", "npz": "an .npz archive", None: "neither a .npy array nor an .npz archive"}[kind]
    if given is None:
        if kind is None:
            raise config_lib.ConfigError(
                f"setting data.features={d.features!r}: cannot tell its format ({what}, by content or suffix); "
                "save it with numpy.save (.npy) or numpy.savez (.npz), or set data.source"
            )
        return "npz" if kind == "npz" else _npy_source(d)
    if given == "standin":
        raise config_lib.ConfigError(
            f"setting data.source='standin': contradicts data.features={d.features!r}; drop data.features to use "
            "the stand-in, or set data.source='auto' to read the file"
        )
    if kind is not None and (given == "npz") != (kind == "npz"):
        raise config_lib.ConfigError(
            f"setting data.source={given!r}: contradicts data.features={d.features!r} ({what}); set "
            "data.source='auto' to read the file as what it is"
        )
    return given


def lane_inputs(grid: types.Params, num_grid: int, seeds: Sequence[int], padded: int):
    """Per-lane host params and seeds, lane = grid * S + seed index, padded with lane 0.

    Args:
      grid: host `Params` with leaves of shape (G,); seeds: the S seeds; padded: L_pad >= G * S.

    Returns:
      (`Params` with leaves (L_pad,), (L_pad,) uint32 seeds).
    """
    s = len(seeds)
    order = np.arange(padded) % (num_grid * s)
    params = jax.tree.map(lambda col: np.asarray(col)[order // s], grid)
    lane_seeds = np.asarray(seeds, np.uint32)[order % s]
    return params, lane_seeds


def _model(cfg: config_dict.ConfigDict, num_classes: int):
    """The flax module of the learner: the default MLP or a user's 'module:Class'."""
    from jaxanno import learner  # the learner pulls in optax; only needed with a learner

    if not cfg.learner.module:
        hidden = (cfg.learner.hidden_size,) * cfg.learner.n_hidden_layer
        return learner.MLP(num_classes=num_classes, hidden_sizes=hidden)
    mod_name, _, cls_name = cfg.learner.module.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise config_lib.ConfigError(
            f"setting learner.module={cfg.learner.module!r}: cannot import ({err}); "
            "expected 'package.module:Class' of a flax.linen.Module"
        ) from None
    return cls(num_classes=num_classes)


def to_static(
    cfg: config_dict.ConfigDict, num_items: int, num_prototypes: int, num_classes: int, feature_dim: int
) -> types.Static:
    """The `Static` of a resolved config and its data sizes (each field through `config.SCHEMA`)."""
    fields: dict[str, dict[str, Any]] = {"Static": {}, "EMStatic": {}, "LearnerStatic": {}}
    for path, f in config_lib.SCHEMA.items():
        owner, _, name = f.target.partition(".")
        if owner in fields:
            fields[owner][name] = config_lib.get_field(cfg, path)
    learner_static = None
    if cfg.learner.algo == "mlp":
        kind, folds = config_lib.calibration_kind(cfg.learner.calibrate)
        learner_static = types.LearnerStatic(
            model=_model(cfg, num_classes),
            calibrate=kind,
            **({"cv_folds": folds} if folds else {}),
            **fields["LearnerStatic"],
        )
    em = types.EMStatic(item_block=item_block(cfg.optimizer.item_block), **fields["EMStatic"])
    sizes = dict(num_items=num_items, num_prototypes=num_prototypes, num_classes=num_classes, feature_dim=feature_dim)
    return types.Static(**sizes, em=em, learner=learner_static, **fields["Static"])


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
    return 1 if jax.default_backend() == "cpu" else 0


def item_block(setting: int) -> int:
    """The E-step block size: `setting`, or for -1 the backend's best (blocks on CPU only)."""
    if setting >= 0:
        return setting
    return CPU_ITEM_BLOCK if jax.default_backend() == "cpu" else 0


def param_values(cfg: config_dict.ConfigDict) -> dict[str, Any]:
    """Base (unswept) value of every `Params` field."""
    return {name: config_lib.get_field(cfg, path) for name, path in config_lib.PARAM_PATHS.items()}


def to_params(cfg: config_dict.ConfigDict) -> types.Params:
    """The base (unswept) `Params` of a resolved config."""
    return types.make_params(**param_values(cfg))


def sweep_points(cfg: config_dict.ConfigDict) -> list[dict[str, Any]]:
    """The cartesian sweep grid as a list of {field: value}, swept fields only.

    One point (an empty dict) when nothing is swept.
    """
    axes = {name: tuple(cfg.sweep[name]) for name in config_lib.PARAM_PATHS if len(cfg.sweep[name])}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def sweep_grid(cfg: config_dict.ConfigDict, host: bool = False) -> tuple[types.Params, list[dict[str, Any]]]:
    """`Params` with a leading (G,) grid axis, and each grid point's swept settings."""
    base = param_values(cfg)
    points = sweep_points(cfg)
    columns = {name: np.array([p.get(name, base[name]) for p in points]) for name in base}
    return types.make_params(host=host, **columns), points


def default_max_steps(cfg: config_dict.ConfigDict, num_items: int) -> int:
    """Online steps after which every item has A labels or the budget is spent."""
    slots = num_items * cfg.sampler.max_annotation_per_example
    labels = min(slots, max(cfg.online.budget, 0))
    for point in sweep_points(cfg):
        labels = max(labels, min(slots, point.get("budget", 0)))
    per_step = cfg.online.hit_size * cfg.online.n_hits_per_step
    # + A: the last few items may need one small HIT per remaining label.
    return math.ceil(labels / per_step) + cfg.sampler.max_annotation_per_example + 1


def prepare(cfg: config_dict.ConfigDict, mesh: Mesh | None = None) -> Problem:
    """Resolve presets and the data source, validate, load data, convert and place: everything before compiling.

    Raises:
      config.ConfigError: an impossible setting (nothing has been compiled or written).
    """
    cfg = config_lib.resolve(cfg)  # a copy
    cfg.data.source = data_source(cfg)  # 'auto' becomes the source read, so config.json records it
    config_lib.validate(cfg)  # its rules keep run.seed ... run.seed + num_seeds - 1 within uint32
    try:
        features = data_lib.load_features(data_spec(cfg))
        host_data = data_lib.make_dataset(
            features, cfg.worker.type, cfg.worker.prior.type, cfg.n_data_distraction_per_class > 0, host=True
        )
    except (ValueError, OSError) as err:
        raise config_lib.ConfigError(f"data: {err}") from None
    if cfg.online.hit_size > features.num_items:
        raise config_lib.ConfigError(
            f"setting online.hit_size={cfg.online.hit_size!r}: expected at most the number of items to label "
            f"({features.num_items})"
        )
    static = to_static(
        cfg, features.num_items, features.num_prototypes, features.num_classes, features.features.shape[1]
    )
    grid, points = sweep_grid(cfg, host=True)
    max_steps = cfg.run.max_steps if cfg.run.max_steps > 0 else default_max_steps(cfg, features.num_items)
    seeds = [cfg.run.seed + i for i in range(cfg.run.num_seeds)]
    mesh = mesh or distributed.lane_mesh()
    params, lane_seeds = lane_inputs(grid, len(points), seeds, distributed.padded_lanes(len(points) * len(seeds), mesh))
    return Problem(
        cfg=cfg,
        static=static,
        points=points,
        features=features,
        seeds=seeds,
        max_steps=max_steps,
        mesh=mesh,
        data=distributed.put(host_data, mesh, sharded=False),
        lane_params=distributed.put(params, mesh, sharded=True),
        lane_seeds=distributed.put(lane_seeds, mesh, sharded=True),
    )


def _lanes_chunk(static, num_steps, lane_batch, params, state, seeds, data, start):
    """`num_steps` steps of a block of lanes: vmap (or batched `lax.map`) over lanes."""
    keys = jax.vmap(jax.random.key)(seeds)
    one = lambda p, s, k: sim.run_chunk(static, p, data, s, k, start, num_steps)  # noqa: E731
    if lane_batch:  # also for a single lane, so that it compiles exactly as in a wider run
        return jax.lax.map(lambda xs: one(*xs), (params, state, keys), batch_size=lane_batch)
    return jax.vmap(one)(params, state, keys)


def _advance_impl(static, num_steps, lane_batch, mesh, params, state, seeds, data, start):
    """The simulation program: every device runs its own lanes (no communication)."""
    fn = functools.partial(_lanes_chunk, static, num_steps, lane_batch)
    if mesh.size > 1:
        lanes, shared = distributed.lane_spec(), distributed.replicated_spec()
        # check_vma=False: lanes never communicate, and constants inside the initial-state
        # branch need not be marked as varying over lanes.
        fn = jax.shard_map(
            fn, mesh=mesh, in_specs=(lanes, lanes, lanes, shared, shared), out_specs=lanes, check_vma=False
        )
    return fn(params, state, seeds, data, start)


@functools.cache
def _advance_fn(donate: bool) -> Callable:
    """The one compiled program of a run (built once per process and donation mode)."""
    return jax.jit(_advance_impl, static_argnums=(0, 1, 2, 3), donate_argnums=(5,) if donate else ())


def advance(problem: Problem, state: types.SimState, start: int, num_steps: int):
    """Run `num_steps` online steps of every lane from step `start` (0 = a fresh run).

    Returns:
      (new state, StepMetrics with leaves of shape (L_pad, num_steps)), lane-sharded.
    """
    fn = _advance_fn(jax.default_backend() != "cpu")
    return fn(
        problem.static,
        num_steps,
        lane_batch(problem.cfg.run.lane_batch),
        problem.mesh,
        problem.lane_params,
        state,
        problem.lane_seeds,
        problem.data,
        np.int32(start),
    )


def state_shapes(problem: Problem) -> types.SimState:
    """`jax.ShapeDtypeStruct`s of the lane-batched state (no compilation)."""

    def init_all(params, seeds):
        keys = jax.vmap(jax.random.key)(seeds)
        return jax.vmap(lambda p, k: sim.init_state(problem.static, p, problem.data, k))(params, keys)

    return jax.eval_shape(init_all, problem.lane_params, problem.lane_seeds)


def blank_state(problem: Problem) -> types.SimState:
    """A zero state of the right (L_pad, ...) shapes; `advance` from step 0 replaces it."""
    return distributed.put(types.zeros_like_shapes(state_shapes(problem), host=True), problem.mesh, sharded=True)


@dataclasses.dataclass
class RunResult:
    state: types.SimState  # lane-sharded device state
    metrics: list[dict[str, np.ndarray]]  # per chunk: {metric name: (G, S, chunk)}
    steps_run: int
    wall_seconds: float


ChunkCallback = Callable[[int, types.SimState, list[dict[str, np.ndarray]], np.ndarray], None]


def run(
    problem: Problem,
    *,
    state: types.SimState | None = None,
    start_step: int = 0,
    metrics: list[dict[str, np.ndarray]] | None = None,
    on_chunk: ChunkCallback | None = None,
) -> RunResult:
    """Drive the compiled chunk until every lane has stopped, or exactly `max_steps` steps.

    Chunks have ``run.chunk_steps`` steps; when fewer are left before `max_steps`, the last
    chunk is shorter (a second program, compiled only for a run that gets that far).

    Args:
      state, start_step, metrics: resume from a checkpoint (defaults: a fresh run).
      on_chunk: called after every chunk with (steps done, state, metrics so far, host
        (G, S) done flags).
    """
    chunk = problem.cfg.run.chunk_steps
    state = blank_state(problem) if state is None else state
    metrics = list(metrics or [])
    step, t0 = start_step, time.perf_counter()
    while step < problem.max_steps:
        num_steps = min(chunk, problem.max_steps - step)
        state, m = advance(problem, state, step, num_steps)
        metrics.append(results.flatten_metrics(problem.by_grid_seed(distributed.gather(m))))
        step += num_steps
        done = problem.by_grid_seed(distributed.gather(state.done))
        if on_chunk is not None:
            on_chunk(step, state, metrics, done)
        if bool(np.all(done)):
            break
    return RunResult(state=state, metrics=metrics, steps_run=step, wall_seconds=time.perf_counter() - t0)
