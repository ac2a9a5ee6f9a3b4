"""The next batch of HITs for a fitted `DawidSkene`: which tasks go to which worker.

`assign` is the compiled rule, `next_batch` its pandas front end. Tasks of a HIT are drawn
with `sampler.draw_hit_items` (the simulator's uniform draw without replacement) among the
eligible tasks; worker choice follows the simulator's samplers, adapted to real workers
(see `assign`).

Shapes: the program is compiled per (bucketed table shape, `BatchStatic`); the HIT count
and size are rounded up to powers of two there and the requested values, like the caps
and the risk threshold, are traced (`BatchLimits`), so a new value does not recompile.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxanno import em, ops, quick_compile, sampler
from jaxanno.crowd import checks
from jaxanno.crowd.estimators import DawidSkene, MajorityVote
from jaxanno.crowd.fitting import host_key
from jaxanno.crowd.table import Problem, bucket_pow2
from jaxanno.types import AnnotationState, pytree_dataclass

ASSIGNMENTS = ("random", "greedy")
NO_CAP = 2**30  # "unlimited" for integer caps that must stay int32


@dataclasses.dataclass(frozen=True)
class BatchStatic:
    """Shapes and control flow of `assign` (a jit static argument)."""

    max_hits: int  # H, HITs the program can issue (>= the requested number)
    max_hit_size: int  # B, lanes per HIT (>= the requested size)
    greedy: bool  # greedy assignment (else random)


@pytree_dataclass
class BatchLimits:
    """The traced settings of one batch."""

    hits: jax.Array  # () i32 HITs wanted, <= H
    hit_size: jax.Array  # () i32 tasks per HIT wanted, <= B
    max_per_worker: jax.Array  # () i32 cap on a worker's labels, existing ones included
    max_per_task: jax.Array  # () i32 cap on a task's labels, existing and assigned ones included
    risk_threshold: jax.Array  # () f32 tasks at or below this risk are not sent


class Batch(NamedTuple):
    """One batch of HITs, (H, B) lanes: H HITs of at most B tasks."""

    items: jax.Array  # (H, B) i32 item per lane
    workers: jax.Array  # (H,) i32 worker of each HIT
    valid: jax.Array  # (H, B) bool lanes that carry a task
    expected_accuracy: jax.Array  # (H,) f32 the worker's expected accuracy on the HIT


class BatchCounters(NamedTuple):
    """What earlier HITs of the batch used up (the scan carry of `assign`)."""

    item_count: jax.Array  # (N,) i32 labels per item, existing and assigned
    worker_count: jax.Array  # (W,) i32 labels per worker, existing and assigned
    used: jax.Array  # (W,) bool workers that already got a HIT


class BatchPool(NamedTuple):
    """What `assign` draws from (fixed during a batch)."""

    annotations: AnnotationState  # (N, A) existing labels
    posterior: jax.Array  # (N, K) f32
    risk: jax.Array  # (N,) f32 1 - max posterior
    alpha: jax.Array  # (W, K, K) f32 pseudo-counts
    worker_ok: jax.Array  # (W,) bool real workers


def check_batch_options(
    n_hits: Any,
    hit_size: Any,
    assignment: str,
    max_per_worker: Any,
    max_per_task: Any,
    hits_name: str = "n_hits",
    risk_threshold: Any = None,
) -> None:
    """Raise ValueError naming the option (`hits_name` for the HIT count) for a bad value.

    Counts are integers (never truncated) below the int32 limit of the batch's counters;
    caps are None (no cap) or at most `NO_CAP`; a threshold is a number in (0, 1).
    """
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment: expected one of {ASSIGNMENTS}, found {assignment!r}")
    size = checks.Range(1, checks.INT32_MAX, integer=True, why="int32 counters; capped at the worker / task count")
    checks.check_range("", hits_name, n_hits, size)
    checks.check_range("", "hit_size", hit_size, size)
    cap = checks.Range(0, NO_CAP, integer=True, why="int32 counters; None means no cap")
    for name, value in (("max_per_worker", max_per_worker), ("max_per_task", max_per_task)):
        if value is not None:
            checks.check_range("", name, value, cap)
    if risk_threshold is not None:
        checks.check_range("", "risk_threshold", risk_threshold, checks.PROBABILITY_THRESHOLD)


def _workers_present(slot_workers: jax.Array, lane_mask: jax.Array, num_workers: int) -> jax.Array:
    """(W,) bool: the worker filled a slot of a masked row ((R, A) slots, (R,) mask)."""
    hit = lane_mask[:, None] & (slot_workers >= 0)
    index = jnp.where(hit, slot_workers, num_workers).ravel()
    return jnp.zeros(num_workers + 1, bool).at[index].set(True)[:num_workers]


def _open_items(annotations: AnnotationState, eligible: jax.Array, num_workers: int) -> jax.Array:
    """(W,) eligible items each worker has not labelled yet."""
    index = jnp.where(annotations.valid, annotations.worker, num_workers).ravel()
    weight = jnp.broadcast_to(eligible[:, None], annotations.worker.shape).ravel().astype(jnp.int32)
    done = jnp.zeros(num_workers + 1, jnp.int32).at[index].add(weight)[:num_workers]
    return eligible.sum() - done


@quick_compile.program(static_argnums=0)
def assign(
    static: BatchStatic,
    limits: BatchLimits,
    annotations: AnnotationState,
    posterior: jax.Array,
    alpha: jax.Array,
    item_ok: jax.Array,
    worker_ok: jax.Array,
    key: jax.Array,
) -> Batch:
    """Choose up to ``limits.hits`` HITs of up to ``limits.hit_size`` tasks.

    Eligible tasks: `item_ok`, risk above ``limits.risk_threshold`` (no lowering: only
    uncertain tasks go out) and fewer than ``limits.max_per_task`` labels, counting this
    batch. Tasks of a HIT are distinct and drawn uniformly from the eligible ones
    (`sampler.draw_hit_items`; its first lanes are themselves a uniform draw, so cutting a
    HIT of B lanes to ``hit_size`` keeps it uniform); HITs go to distinct workers; nobody
    gets a task they already labelled; a worker ends with at most ``max_per_worker`` labels.

    * random: a uniformly random worker among those with room and an eligible task they
      have not labelled, then that worker's tasks, cut to the room the worker has left.
    * greedy: the tasks first, then the allowed worker with the highest expected accuracy
      on them (`sampler.worker_accuracy_on`); a worker is allowed when it has room for the
      whole HIT and labelled none of its tasks.

    Fewer eligible tasks or workers give smaller or empty (all-invalid) HITs, never a hang.

    Args:
      annotations: (N, A) slots and counters; posterior: (N, K); alpha: (W, K, K)
        pseudo-counts; item_ok: (N,) bool real, non-gold items; worker_ok: (W,) bool real
        workers; key: the draws.
    Returns:
      `Batch` with (H, B) lanes of `static`.
    """
    risk = em.risk(posterior)
    pool = BatchPool(annotations, posterior, risk, alpha, worker_ok)

    def one_hit(c: BatchCounters, h):
        k_worker, k_items = jax.random.split(jax.random.fold_in(key, h))
        eligible = item_ok & (risk > limits.risk_threshold) & (c.item_count < limits.max_per_task)
        choose = _greedy_hit if static.greedy else _random_hit
        items, worker, valid, score = choose(static, limits, pool, c, eligible, h, k_worker, k_items)
        taken = valid.sum(dtype=jnp.int32)
        c = BatchCounters(
            item_count=c.item_count.at[items].add(valid.astype(jnp.int32)),
            worker_count=c.worker_count.at[worker].add(taken),
            used=c.used.at[worker].set(c.used[worker] | (taken > 0)),
        )
        return c, (items, worker, valid, score[worker])

    start = BatchCounters(annotations.item_count, annotations.worker_count, jnp.zeros_like(worker_ok))
    _, (items, chosen, valid, accuracy) = jax.lax.scan(one_hit, start, jnp.arange(static.max_hits))
    return Batch(items=items, workers=chosen, valid=valid, expected_accuracy=accuracy)


def _free_workers(limits: BatchLimits, pool: BatchPool, c: BatchCounters, h) -> jax.Array:
    """(W,) bool real workers without a HIT in this batch and below their cap, while HITs remain."""
    return pool.worker_ok & ~c.used & (c.worker_count < limits.max_per_worker) & (h < limits.hits)


def _greedy_hit(
    static: BatchStatic, limits: BatchLimits, pool: BatchPool, c: BatchCounters, eligible, h, k_worker, k_items
):
    """Tasks first, then the allowed worker with the highest expected accuracy on them."""
    items, valid = sampler.draw_hit_items(pool.risk, eligible, limits.risk_threshold, static.max_hit_size, k_items)
    valid = valid & (jnp.arange(static.max_hit_size) < limits.hit_size)
    score = sampler.worker_accuracy_on(pool.posterior[items], valid, pool.alpha)
    seen = _workers_present(pool.annotations.worker[items], valid, pool.worker_ok.shape[0])
    allowed = _free_workers(limits, pool, c, h) & ~seen & (c.worker_count + valid.sum() <= limits.max_per_worker)
    worker = ops.random_argmax(score, allowed, k_worker)
    return items, worker, valid & allowed.any(), score


def _random_hit(
    static: BatchStatic, limits: BatchLimits, pool: BatchPool, c: BatchCounters, eligible, h, k_worker, k_items
):
    """A uniformly random worker with an eligible task left, then that worker's tasks."""
    w = pool.worker_ok.shape[0]
    allowed = _free_workers(limits, pool, c, h) & (_open_items(pool.annotations, eligible, w) > 0)
    worker = ops.random_argmax(jnp.zeros(w), allowed, k_worker)
    mine = (pool.annotations.worker == worker).any(-1)
    b = static.max_hit_size
    items, valid = sampler.draw_hit_items(pool.risk, eligible & ~mine, limits.risk_threshold, b, k_items)
    room = jnp.minimum(limits.hit_size, limits.max_per_worker - c.worker_count[worker])
    valid = valid & allowed.any() & (jnp.arange(b) < room)
    return items, worker, valid, sampler.worker_accuracy_on(pool.posterior[items], valid, pool.alpha)


def next_batch(
    model: DawidSkene,
    n_hits: int = 5,
    hit_size: int = 40,
    assignment: str = "random",
    max_per_worker: int | None = 2000,
    max_per_task: int | None = None,
    risk_threshold: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The next HITs for a fitted `DawidSkene` (see `assign` for the rules).

    Args:
      model: a fitted `DawidSkene`.
      n_hits, hit_size: at most `n_hits` HITs of at most `hit_size` tasks.
      assignment: 'random' or 'greedy'.
      max_per_worker: cap on a worker's labels, existing ones included (None: no cap).
      max_per_task: cap on a task's labels, existing ones included (None: no cap).
      risk_threshold: tasks at or below this risk are not sent (default: the model's).
    Returns:
      DataFrame with columns hit (0..), worker, task, risk, expected_accuracy, one row per
      task sent; HITs that got no task are left out and the rest renumbered. `n_hits` is
      capped at the worker count (HITs go to distinct workers) and `hit_size` at the task
      count, which keeps the program's shapes within the data.
    """
    check_fitted(model)
    check_batch_options(n_hits, hit_size, assignment, max_per_worker, max_per_task, risk_threshold=risk_threshold)
    threshold = model.risk_threshold if risk_threshold is None else risk_threshold
    static, limits, item_ok, worker_ok = _program_inputs(
        model.problem_, n_hits, hit_size, assignment, max_per_worker, max_per_task, threshold
    )
    table = model.table_
    batch = assign(
        static, limits, table.annotations, model.posterior_, model.alpha_, item_ok, worker_ok, host_key(seed)
    )
    return _batch_frame(model, jax.device_get(batch))


def _program_inputs(
    problem: Problem,
    n_hits: int,
    hit_size: int,
    assignment: str,
    max_per_worker: int | None,
    max_per_task: int | None,
    threshold: float,
) -> tuple[BatchStatic, BatchLimits, jax.Array, jax.Array]:
    """`assign`'s static settings, limits and (N,) item / (W,) worker masks for a fit on
    `problem` (options already checked); the same for `next_batch` and `compile_next_batch`."""
    table = problem.table
    n_pad, w_pad = table.annotations.worker.shape[0], table.annotations.worker_count.shape[0]
    n_hits, hit_size = min(int(n_hits), table.num_workers), min(int(hit_size), table.num_items)
    static = BatchStatic(
        max_hits=bucket_pow2(n_hits), max_hit_size=bucket_pow2(hit_size), greedy=assignment == "greedy"
    )
    limits = BatchLimits(
        hits=np.int32(n_hits),
        hit_size=np.int32(hit_size),
        max_per_worker=np.int32(NO_CAP if max_per_worker is None else max_per_worker),
        max_per_task=np.int32(NO_CAP if max_per_task is None else max_per_task),
        risk_threshold=np.float32(threshold),
    )
    item_ok = (np.arange(n_pad) < table.num_items) & (problem.gold_codes < 0)
    worker_ok = np.arange(w_pad) < table.num_workers
    return (static, *jax.device_put((limits, item_ok, worker_ok)))


def compile_next_batch(
    problem: Problem,
    n_hits: int,
    hit_size: int,
    assignment: str,
    max_per_worker: int | None,
    max_per_task: int | None,
    risk_threshold: float,
) -> None:
    """Compile the program `next_batch` will run after a fit on `problem`, before the fit.

    Pass the options of that `next_batch` call (no defaults here, so the two cannot drift
    apart; the fit's padded shapes come from ``problem.table``) and the later call finds the
    program compiled; the command line runs this in a background thread while EM compiles
    (`quick_compile.in_background`).
    """
    check_batch_options(n_hits, hit_size, assignment, max_per_worker, max_per_task, risk_threshold=risk_threshold)
    static, limits, item_ok, worker_ok = _program_inputs(
        problem, n_hits, hit_size, assignment, max_per_worker, max_per_task, risk_threshold
    )
    annotations = problem.table.annotations
    n_pad, w_pad, k = item_ok.shape[0], worker_ok.shape[0], len(problem.table.classes)
    posterior = jax.ShapeDtypeStruct((n_pad, k), jnp.float32)
    alpha = jax.ShapeDtypeStruct((w_pad, k, k), jnp.float32)
    assign.lower(static, limits, annotations, posterior, alpha, item_ok, worker_ok, host_key(0)).compile()


def check_fitted(model: Any) -> None:
    """Raise a ValueError unless `model` is a fitted `DawidSkene` (what `next_batch` needs)."""
    if isinstance(model, MajorityVote):
        raise ValueError(
            "next_batch: model is a MajorityVote, which has no worker confusion matrices to choose workers by; "
            "fit a DawidSkene (e.g. DawidSkene.pooled()) and pass that"
        )
    if not isinstance(model, DawidSkene):
        raise ValueError(f"next_batch: model: expected a fitted DawidSkene, found {type(model).__name__}")
    if getattr(model, "posterior_", None) is None:
        raise ValueError("next_batch: the DawidSkene is not fitted yet; call its fit(labels) first")


def _batch_frame(model: DawidSkene, batch: Batch) -> pd.DataFrame:
    valid = np.asarray(batch.valid)
    hit_ids = np.cumsum(valid.any(1)) - 1  # renumber the non-empty HITs 0, 1, ...
    h, b = np.nonzero(valid)
    items = np.asarray(batch.items)[h, b]
    workers_of = np.asarray(batch.workers)[h]
    return pd.DataFrame(
        {
            "hit": hit_ids[h].astype(np.int64),
            "worker": np.asarray(model.table_.workers, dtype=object)[workers_of],
            "task": np.asarray(model.table_.tasks, dtype=object)[items],
            "risk": model.risks_.to_numpy()[items],
            "expected_accuracy": np.asarray(batch.expected_accuracy)[h],
        }
    )
