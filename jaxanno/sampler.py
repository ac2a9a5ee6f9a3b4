"""Choosing HITs: which items go to which worker, stop rules and the early stopper.

One online step issues `hits_per_step` HITs of `hit_size` items. An item is eligible when
its risk is above the threshold and it has fewer than A labels; when fewer than `hit_size`
items are eligible the threshold is lowered in steps of 0.01 until enough are. Where the
reference would loop forever (fewer than `hit_size` items have room at all), jaxanno issues
a smaller, masked HIT with every item that has room. Items of one HIT are distinct; HITs
of one step go to distinct workers; counters are updated after every HIT.

Selection is fixed-shape: a masked random score fed to `top_k`, with a `valid` mask on the
lanes that did not get an item.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxanno import em
from jaxanno.types import AnnotationState, EMState, Params, SimState, Static, StopperState, WorkerPool

THRESHOLD_STEP = 0.01  # the reference lowers the risk threshold by this much at a time
EARLY_STOP_WINDOW_LABELS = 5000  # the early stopper looks back this many labels' worth of steps


class Hits(NamedTuple):
    """One step's HITs, (H, B) lanes: H = hits_per_step, B = hit_size."""

    items: jax.Array  # (H, B) i32 item index per lane
    workers: jax.Array  # (H,) i32 worker of each HIT
    slots: jax.Array  # (H, B) i32 annotation slot each lane fills
    valid: jax.Array  # (H, B) bool, lanes that carry a label


MAX_THRESHOLD_STEPS = 102  # risks lie in [0, 1]: at most 1 / 0.01 + 1 lowerings ever matter
CANDIDATES_PER_SLOT = 4  # expected candidates per HIT lane before the final draw (see `_pick_items`)


def lowered_threshold(risk: jax.Array, room: jax.Array, threshold: jax.Array, hit_size: int) -> jax.Array:
    """The reference's threshold after lowering it by 0.01 until `hit_size` items qualify.

    Closed form without sorting: an item with room first qualifies after
    m_i = max(0, floor((threshold - risk_i) / 0.01) + 1) lowerings; a histogram of m_i
    gives the least m with `hit_size` qualifying items, and the result is
    threshold - 0.01 m. It is -inf when fewer than `hit_size` items have room (every item
    with room qualifies: a masked HIT).
    """
    steps = jnp.floor((threshold - risk) / THRESHOLD_STEP).astype(jnp.int32) + 1
    steps = jnp.clip(steps, 0, MAX_THRESHOLD_STEPS)
    counts = jnp.cumsum(jax.ops.segment_sum(room.astype(jnp.int32), steps, MAX_THRESHOLD_STEPS + 1))
    enough = counts >= hit_size
    lowered = threshold - THRESHOLD_STEP * jnp.argmax(enough).astype(jnp.float32)
    return jnp.where(enough[-1], lowered, -jnp.inf)


def _pick_items(risk, item_count, threshold, static: Static, key):
    """(B,) items of one HIT drawn uniformly from the eligible ones, and lane validity.

    Every item gets a hashed random priority and the B eligible items with the smallest
    win: a uniform draw without replacement. Sorting all N priorities for that (top_k over
    N) costs a full sort on a CPU, so only a random candidate subset is compacted first:
    each eligible item enters with probability min(1, 4B / #eligible), and the candidates
    hold the B smallest priorities unless fewer than B of them (or more than the 8B slots)
    are drawn, which for B = 40 has a probability below 1e-19.
    """
    n, b = risk.shape[0], static.hit_size
    room = item_count < static.max_annotations
    eligible = room & (risk > lowered_threshold(risk, room, threshold, b))
    salt = jax.random.bits(key, (), jnp.uint32)
    priority = (em.hash32(jnp.arange(n, dtype=jnp.uint32) ^ salt) >> 1).astype(jnp.int32)  # uniform in [0, 2^31)
    keep = jnp.minimum(1.0, CANDIDATES_PER_SLOT * b / jnp.maximum(eligible.sum(), 1).astype(jnp.float32))
    candidates = eligible & (priority.astype(jnp.float32) < keep * 2.0**31)
    rows = jnp.nonzero(candidates, size=2 * CANDIDATES_PER_SLOT * b, fill_value=n)[0]
    none = jnp.iinfo(jnp.int32).max
    cand_priority = jnp.where(rows < n, priority[jnp.minimum(rows, n - 1)], none)
    neg_best, order = jax.lax.top_k(-cand_priority, b)
    items = jnp.minimum(rows[order], n - 1).astype(jnp.int32)
    return items, -neg_best < none


def worker_accuracy_on(belief: jax.Array, valid: jax.Array, alpha: jax.Array) -> jax.Array:
    """(W,) expected accuracy of every worker on a HIT: mean_i sum_y b_i(y) p(y | y, j).

    Args:
      belief: (B, K) posterior of the HIT's items; valid: (B,) lanes that count.
      alpha: (W, K, K) current Dirichlet pseudo-counts.
    """
    diag = jnp.diagonal(em.confusion(alpha), axis1=1, axis2=2)  # (W, K)
    per_item = belief @ diag.T  # (B, W)
    return (per_item * valid[:, None]).sum(0) / jnp.maximum(valid.sum(), 1)


def random_argmax(scores: jax.Array, allowed: jax.Array, key: jax.Array) -> jax.Array:
    """() i32 index of the largest allowed score, ties broken uniformly at random."""
    scores = jnp.where(allowed, scores, -jnp.inf)
    is_max = allowed & (scores == scores.max())
    return jnp.argmax(jnp.where(is_max, jax.random.uniform(key, scores.shape, minval=0.5), 0.0)).astype(jnp.int32)


def select_hits(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    em_state: EMState,
    alpha: jax.Array,
    labels_left: jax.Array,
    key: jax.Array,
) -> Hits:
    """Draw one step's HITs (REFERENCE section 7) under the label budget.

    Args:
      annotations: current slots and counters.
      em_state: current posterior and risk.
      alpha: (W, K, K) current pseudo-counts (greedy assignment only).
      labels_left: () i32 labels the budget still allows.
    Returns:
      `Hits`; lanes beyond the budget, without an eligible item or without an available
      worker are invalid.
    """
    k_order, k_hits = jax.random.split(key)
    order = jax.random.permutation(k_order, static.num_workers)
    greedy = static.sampler == "greedy_task_assignment"

    def one_hit(carry, h):
        item_count, worker_count, used, issued = carry
        k_items, k_worker = jax.random.split(jax.random.fold_in(k_hits, h))
        items, valid = _pick_items(em_state.risk, item_count, params.risk_threshold, static, k_items)
        if greedy:
            free = ~used & (worker_count + static.hit_size <= params.max_annotation_per_worker)
            score = worker_accuracy_on(em_state.posterior[items], valid, alpha)
            worker = random_argmax(score, free, k_worker)
            valid = valid & free.any()
        else:
            worker = order[h]
        valid = valid & (issued + jnp.cumsum(valid) <= labels_left)
        slots = item_count[items]
        item_count = item_count.at[items].add(valid.astype(jnp.int32))
        worker_count = worker_count.at[worker].add(valid.sum(dtype=jnp.int32))
        used = used.at[worker].set(True)
        return (item_count, worker_count, used, issued + valid.sum()), (items, worker, slots, valid)

    start = (
        annotations.item_count,
        annotations.worker_count,
        jnp.zeros(static.num_workers, bool),
        jnp.int32(0),
    )
    _, (items, workers, slots, valid) = jax.lax.scan(one_hit, start, jnp.arange(static.hits_per_step))
    return Hits(items=items, workers=workers.astype(jnp.int32), slots=slots, valid=valid)


def record_answers(annotations: AnnotationState, hits: Hits, answers: jax.Array) -> AnnotationState:
    """Write the answers of valid lanes into their slots and update the counters.

    Args:
      answers: (H, B) i32 given labels.
    """
    n, a = annotations.worker.shape
    items = jnp.where(hits.valid, hits.items, n).ravel()  # row n is out of range: dropped
    slots = hits.slots.ravel()
    workers = jnp.broadcast_to(hits.workers[:, None], hits.items.shape).ravel()
    ones = hits.valid.astype(jnp.int32)
    return AnnotationState(
        worker=annotations.worker.at[items, slots].set(workers, mode="drop"),
        label=annotations.label.at[items, slots].set(answers.ravel(), mode="drop"),
        item_count=annotations.item_count.at[items].add(ones.ravel(), mode="drop"),
        worker_count=annotations.worker_count.at[hits.workers].add(ones.sum(-1)),
    )


def all_finished(static: Static, params: Params, state: SimState) -> jax.Array:
    """() every item is confident or has A labels (the reference's stop rule)."""
    confident = state.em.risk < params.risk_threshold
    full = state.annotations.item_count >= static.max_annotations
    return jnp.all(confident | full)


def no_worker_left(static: Static, params: Params, annotations: AnnotationState) -> jax.Array:
    """() greedy assignment only: no worker can take another full HIT."""
    if static.sampler != "greedy_task_assignment":
        return jnp.bool_(False)
    room = annotations.worker_count + static.hit_size <= params.max_annotation_per_worker
    return ~room.any()


def init_stopper() -> StopperState:
    minus_one = jnp.int32(-1)
    return StopperState(
        history_len=jnp.int32(0),
        max_confident=minus_one,
        last_max_index=minus_one,
        fired_step=minus_one,
        fired_cost=minus_one,
    )


def early_stopper_window(static: Static) -> int:
    """Steps without a new maximum of confident items after which the stopper fires."""
    return max(EARLY_STOP_WINDOW_LABELS // static.labels_per_step, 5)


def update_stopper(
    static: Static, stopper: StopperState, num_confident: jax.Array, cost: jax.Array, step: jax.Array
) -> tuple[StopperState, jax.Array]:
    """Record this step's confident count; report whether the early stopper fires.

    It fires when at least `window` entries exist, at least N/2 labels were collected and
    the maximum confident count was not reached within the last `window` entries.
    """
    index = stopper.history_len
    is_max = num_confident >= stopper.max_confident
    length = index + 1
    max_confident = jnp.maximum(stopper.max_confident, num_confident)
    last_max = jnp.where(is_max, index, stopper.last_max_index)
    window = early_stopper_window(static)
    fires = (length > window) & (length > 3) & (cost >= static.num_items / 2.0) & (last_max < length - window)
    first = fires & (stopper.fired_step < 0)
    new = StopperState(
        history_len=length,
        max_confident=max_confident,
        last_max_index=last_max,
        fired_step=jnp.where(first, step, stopper.fired_step),
        fired_cost=jnp.where(first, cost, stopper.fired_cost),
    )
    return new, fires


def init_annotations(static: Static) -> AnnotationState:
    n, a = static.num_items, static.max_annotations
    return AnnotationState(
        worker=jnp.full((n, a), -1, jnp.int32),
        label=jnp.full((n, a), -1, jnp.int32),
        item_count=jnp.zeros(n, jnp.int32),
        worker_count=jnp.zeros(static.num_workers, jnp.int32),
    )


def pool_alpha(pool: WorkerPool, em_state: EMState) -> jax.Array:
    """(W, K, K) current pseudo-counts: prior plus the latest EM counts."""
    return pool.prior_alpha + em_state.counts
