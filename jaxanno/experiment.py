"""Running experiments: problem set-up, the vmaps over grid and seeds, the jitted chunk,
the driver loop, and result tables. No absl here; `launch.py` is the command line.

Layout of every batched array: ``[grid point, seed, ...]``; per-step metrics are
``[grid point, seed, step]``. Seeds are the inner vmap and the sweep grid the outer one,
so a whole sweep is one compiled program. Every grid point uses the same seeds (common
random numbers), which makes comparisons across sweep values paired.

The driver calls the compiled chunk (``run.chunk_steps`` online steps) repeatedly until
every lane has stopped; between calls it reports progress and writes checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from ml_collections import config_dict

from jaxanno import config as config_lib
from jaxanno import data as data_lib
from jaxanno import sim, types


@dataclasses.dataclass
class Problem:
    """Everything one launch needs, converted from a resolved config."""

    cfg: config_dict.ConfigDict  # resolved and validated
    static: types.Static
    grid: types.Params  # leaves with a leading (G,) axis
    points: List[Dict[str, Any]]  # the swept settings of each grid point
    data: types.Dataset
    features: data_lib.FeatureSet
    seeds: List[int]
    max_steps: int

    @property
    def seed_array(self) -> jax.Array:
        """(S,) uint32 seeds; each lane's run key is ``jax.random.key(seed)``."""
        return jax.device_put(np.asarray(self.seeds, np.uint32))

    @property
    def num_grid(self) -> int:
        return len(self.points)


def data_spec(cfg: config_dict.ConfigDict) -> data_lib.DataSpec:
    d = cfg.data
    return data_lib.DataSpec(
        source=d.source, experiment=cfg.experiment or None,
        wnids=tuple((cfg.wnids or "").split()), n_data_per_class=cfg.n_data_per_class,
        n_prototype_per_class=cfg.n_prototype_per_class,
        n_data_distraction_per_class=cfg.n_data_distraction_per_class,
        feature_dim=d.feature_dim, seed=d.seed, features=d.features, image_list=d.image_list,
        labels=d.labels, cache_dir=d.cache_dir,
    )


def prepare(cfg: config_dict.ConfigDict) -> Problem:
    """Resolve presets, validate, load data and convert: everything before compiling.

    Raises:
      config.ConfigError: an impossible setting (nothing has been compiled or written).
    """
    cfg = config_lib.resolve(cfg)
    config_lib.validate(cfg)
    try:
        features = data_lib.load_features(data_spec(cfg))
        data = data_lib.make_dataset(
            features, cfg.worker.type, cfg.worker.prior.type, cfg.n_data_distraction_per_class > 0
        )
    except (ValueError, OSError) as err:
        raise config_lib.ConfigError(f"data: {err}") from None
    config_lib.check_against_data(cfg, features.num_items)
    static = config_lib.to_static(
        cfg, features.num_items, features.num_prototypes, features.num_classes, features.features.shape[1]
    )
    grid, points = config_lib.sweep_grid(cfg)
    max_steps = cfg.run.max_steps if cfg.run.max_steps > 0 else config_lib.default_max_steps(cfg, features.num_items)
    seeds = [cfg.run.seed + i for i in range(cfg.run.num_seeds)]
    return Problem(cfg=cfg, static=static, grid=grid, points=points, data=data, features=features,
                   seeds=seeds, max_steps=max_steps)


def _per_grid_point(static, data, start, num_steps, params, state, keys):
    """All seeds of one grid point (the inner vmap)."""
    one = lambda s, k: sim.run_chunk(static, params, data, s, k, start, num_steps)  # noqa: E731
    return jax.vmap(one)(state, keys)


def _advance_impl(static, grid, data, state, seeds, start, num_steps, grid_batch):
    """`num_steps` steps of every (grid point, seed) lane: the outer vmap over the grid."""
    keys = jax.vmap(jax.random.key)(seeds)
    per_point = functools.partial(_per_grid_point, static, data, start, num_steps)
    if grid_batch and grid_batch < jax.tree.leaves(grid)[0].shape[0]:
        return jax.lax.map(lambda xs: per_point(xs[0], xs[1], keys), (grid, state), batch_size=grid_batch)
    return jax.vmap(per_point, in_axes=(0, 0, None))(grid, state, keys)


@functools.lru_cache(maxsize=None)
def _advance_fn(donate: bool) -> Callable:
    """The one compiled program of a run (built once per process and donation mode)."""
    return jax.jit(_advance_impl, static_argnums=(0, 6, 7), donate_argnums=(3,) if donate else ())


def advance(problem: Problem, state: types.SimState, start: int, num_steps: int):
    """Run `num_steps` online steps of every lane from step `start` (0 = a fresh run).

    Returns:
      (new state, StepMetrics with leaves of shape (G, S, num_steps)).
    """
    fn = _advance_fn(jax.default_backend() != "cpu")
    return fn(problem.static, problem.grid, problem.data, state, problem.seed_array, np.int32(start),
              num_steps, int(problem.cfg.run.grid_batch))


def blank_state(problem: Problem) -> types.SimState:
    """A zero state of the right (G, S, ...) shapes; `advance` from step 0 replaces it.

    Built from `jax.eval_shape`, so it costs no compilation.
    """
    def init_all(grid, seeds):
        keys = jax.vmap(jax.random.key)(seeds)
        per_seed = lambda p: jax.vmap(lambda k: sim.init_state(problem.static, p, problem.data, k))(keys)  # noqa: E731
        return jax.vmap(per_seed)(grid)

    return types.zeros_like_shapes(jax.eval_shape(init_all, problem.grid, problem.seed_array))


@dataclasses.dataclass
class RunResult:
    state: types.SimState
    metrics: List[Dict[str, np.ndarray]]  # per chunk: {metric name: (G, S, chunk)}
    steps_run: int
    wall_seconds: float


ChunkCallback = Callable[[int, types.SimState, List[Dict[str, np.ndarray]]], None]


def run(
    problem: Problem,
    *,
    state: Optional[types.SimState] = None,
    start_step: int = 0,
    metrics: Optional[List[Dict[str, np.ndarray]]] = None,
    on_chunk: Optional[ChunkCallback] = None,
) -> RunResult:
    """Drive the compiled chunk until every lane has stopped (or `max_steps`).

    Args:
      state, start_step, metrics: resume from a checkpoint (defaults: a fresh run).
      on_chunk: called after every chunk with (steps done, state, metrics so far).
    """
    chunk = problem.cfg.run.chunk_steps
    state = blank_state(problem) if state is None else state
    metrics = list(metrics or [])
    step, t0 = start_step, time.perf_counter()
    while step < problem.max_steps:
        state, m = advance(problem, state, step, chunk)
        metrics.append(flatten_metrics(jax.device_get(m)))
        step += chunk
        if on_chunk is not None:
            on_chunk(step, state, metrics)
        if bool(np.all(jax.device_get(state.done))):
            break
    return RunResult(state=state, metrics=metrics, steps_run=step, wall_seconds=time.perf_counter() - t0)


def flatten_metrics(tree: Any, prefix: str = "") -> Dict[str, np.ndarray]:
    """NamedTuple metrics -> {'aggregate/all/top1': array, ...} (None fields skipped)."""
    if hasattr(tree, "_fields"):
        out: Dict[str, np.ndarray] = {}
        for name in tree._fields:
            value = getattr(tree, name)
            if value is not None:
                out.update(flatten_metrics(value, f"{prefix}{name}/"))
        return out
    return {prefix.rstrip("/"): np.asarray(tree)}


def metrics_frame(problem: Problem, metrics: Sequence[Dict[str, np.ndarray]]) -> pd.DataFrame:
    """Long table, one row per (grid point, seed, logged step); inactive rows dropped.

    Columns: grid, seed, the grid point's swept settings, then every metric
    ('cost', 'aggregate/all/top1', 'learner/confident/ece', ...).
    """
    cols = {name: np.concatenate([m[name] for m in metrics], axis=-1) for name in metrics[0]}
    g, s, t = cols["step"].shape
    frame = pd.DataFrame({k: v.reshape(-1) for k, v in cols.items()})
    frame.insert(0, "seed", np.repeat(np.asarray(problem.seeds), t)[None].repeat(g, 0).reshape(-1))
    frame.insert(0, "grid", np.repeat(np.arange(g), s * t))
    for field in sorted({k for p in problem.points for k in p}):
        frame.insert(2, field, np.repeat([p[field] for p in problem.points], s * t))
    frame = frame[frame["active"]].drop(columns="active")
    return frame.reset_index(drop=True)


def accuracy_at(frame: pd.DataFrame, levels: Sequence[float], column: str = "aggregate/all/top1") -> pd.DataFrame:
    """Accuracy of every (grid, seed) run at given labels-per-item levels (interpolated).

    NaN where a run stopped before reaching a level.
    """
    rows = []
    for (grid, seed), run in frame.groupby(["grid", "seed"]):
        x, y = run["cost_per_item"].to_numpy(), run[column].to_numpy()
        row = {"grid": grid, "seed": seed}
        for level in levels:
            row[f"{level:g}"] = float(np.interp(level, x, y)) if level <= x.max() else np.nan
        row["end"] = float(y[-1])
        row["end_cost_per_item"] = float(x[-1])
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(problem: Problem, frame: pd.DataFrame, levels: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 2.5)) -> str:
    """Markdown: mean +- std over seeds of top-1 accuracy at a few labels-per-item levels."""
    acc = accuracy_at(frame, levels)
    cols = [f"{lv:g}" for lv in levels] + ["end"]
    header = "| grid | settings | " + " | ".join(f"acc@{c}" for c in cols) + " | labels/item at end |"
    lines = [header, "|" + "---|" * (len(cols) + 3)]
    for grid, runs in acc.groupby("grid"):
        settings = ", ".join(f"{k}={v:g}" for k, v in problem.points[grid].items()) or "-"
        cells = []
        for c in cols:
            v = runs[c].dropna()
            cells.append(f"{100 * v.mean():.1f} ± {100 * v.std(ddof=0):.1f}" if len(v) else "-")
        end = runs["end_cost_per_item"]
        lines.append(f"| {grid} | {settings} | " + " | ".join(cells) + f" | {end.mean():.2f} ± {end.std(ddof=0):.2f} |")
    return "\n".join(lines)


def runs_frame(problem: Problem, state: types.SimState, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (grid point, seed): how the run ended and where the early stopper fired.

    Columns: grid, seed, swept settings, steps, stop_reason, cost_per_item,
    'aggregate/all/top1' (and 'learner/all/top1') at the end, early_stop_step and
    early_stop_cost_per_item (NaN when the stopper never fired).
    """
    st = jax.device_get(state)
    n = problem.static.num_items
    last = frame.groupby(["grid", "seed"]).tail(1).set_index(["grid", "seed"])
    rows = []
    for g, point in enumerate(problem.points):
        for s, seed in enumerate(problem.seeds):
            fired = int(st.stopper.fired_step[g, s])
            end = last.loc[(g, seed)]
            row = {"grid": g, "seed": seed, **point, "steps": int(st.step[g, s]),
                   "stop_reason": types.STOP_REASONS[int(st.stop_reason[g, s])],
                   "cost_per_item": float(end["cost_per_item"]),
                   "aggregate/all/top1": float(end["aggregate/all/top1"]),
                   "early_stop_step": fired if fired >= 0 else np.nan,
                   "early_stop_cost_per_item": int(st.stopper.fired_cost[g, s]) / n if fired >= 0 else np.nan}
            if "learner/all/top1" in end:
                row["learner/all/top1"] = float(end["learner/all/top1"])
            rows.append(row)
    return pd.DataFrame(rows)
