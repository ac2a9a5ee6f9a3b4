"""Choosing HITs: which items go to which worker, and recording the answers.

One online step issues `hits_per_step` HITs of `hit_size` items. An item is eligible when
its risk is above the threshold and it has fewer than A labels; when fewer than `hit_size`
items are eligible the threshold is lowered in steps of 0.01 until enough are. Where that
rule alone would loop forever (fewer than `hit_size` items have room at all), jaxanno issues
a smaller, masked HIT with every item that has room. Items of one HIT are distinct; HITs
of one step go to distinct workers; counters are updated after every HIT.

Which eligible items a HIT gets is `Static.item_score`: 'random' (uniform, the original)
or 'risk_reduction' (the items with the highest expected risk reduction for the HIT's
worker, from its estimated confusion matrix; see `jaxanno.gain`). The latter ranks, per
HIT, only a pool of the step's best candidates for the average worker, and an item already
in a HIT of the step ranks after every other eligible one.

Selection is fixed-shape: a masked score fed to `top_k`, with a `valid` mask on the
lanes that did not get an item.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxanno import dawid_skene, gain, ops
from jaxanno.types import AnnotationState, EMState, Params, Static, WorkerPool

THRESHOLD_STEP = 0.01  # the risk threshold is lowered by this much at a time


class Hits(NamedTuple):
    """One step's HITs, (H, B) lanes: H = hits_per_step, B = hit_size."""

    items: jax.Array  # (H, B) i32 item index per lane
    workers: jax.Array  # (H,) i32 worker of each HIT
    slots: jax.Array  # (H, B) i32 annotation slot each lane fills
    valid: jax.Array  # (H, B) bool, lanes that carry a label


MAX_THRESHOLD_STEPS = 102  # risks lie in [0, 1]: at most 1 / 0.01 + 1 lowerings ever matter
CANDIDATES_PER_SLOT = 4  # expected candidates per HIT lane before the final draw (see `draw_hit_items`)


def lowered_threshold(risk: jax.Array, room: jax.Array, threshold: jax.Array, hit_size: int) -> jax.Array:
    """The risk threshold after lowering it by 0.01 until `hit_size` items with room qualify.

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


def eligible_items(risk: jax.Array, room: jax.Array, threshold: jax.Array, hit_size: int) -> jax.Array:
    """(N,) bool items with room whose risk is above the `lowered_threshold` (every item with
    room when fewer than `hit_size` have room)."""
    return room & (risk > lowered_threshold(risk, room, threshold, hit_size))


def draw_hit_items(
    risk: jax.Array, room: jax.Array, threshold: jax.Array, hit_size: int, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The items of one HIT, drawn uniformly from the eligible ones, and lane validity.

    Eligible: items with room whose risk is above the threshold after `lowered_threshold`
    (every item with room when fewer than `hit_size` have room: a smaller, masked HIT).

    Every item gets a hashed random priority and the B eligible items with the smallest
    win: a uniform draw without replacement. Sorting all N priorities for that (top_k over
    N) costs a full sort on a CPU, so only a random candidate subset is compacted first:
    each eligible item enters with probability min(1, 4B / #eligible), and the candidates
    hold the B smallest priorities unless fewer than B of them (or more than the 8B slots)
    are drawn, which for B = 40 has a probability below 1e-19.

    Args:
      risk: (N,) f32; room: (N,) bool items that may take another label;
      threshold: () f32 risk threshold before lowering; hit_size: B (static); key: the draw.
    Returns:
      items: (B,) i32 distinct item indices (any index on invalid lanes);
      valid: (B,) bool lanes that carry an item.
    """
    n, b = risk.shape[0], hit_size
    eligible = eligible_items(risk, room, threshold, b)
    salt = jax.random.bits(key, (), jnp.uint32)
    priority = (ops.hash32(jnp.arange(n, dtype=jnp.uint32) ^ salt) >> 1).astype(jnp.int32)  # uniform in [0, 2^31)
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
    diag = jnp.diagonal(dawid_skene.confusion(alpha), axis1=1, axis2=2)  # (W, K)
    per_item = belief @ diag.T  # (B, W)
    return (per_item * valid[:, None]).sum(0) / jnp.maximum(valid.sum(), 1)


class HitCounters(NamedTuple):
    """What the HITs of one step have used up so far (the scan carry of `select_hits`)."""

    item_count: jax.Array  # (N,) i32 labels per item, counting earlier HITs of this step
    worker_count: jax.Array  # (W,) i32 labels per worker, counting earlier HITs of this step
    used: jax.Array  # (W,) bool workers that already got a HIT in this step
    issued: jax.Array  # () i32 labels issued in this step
    picked: jax.Array  # (N,) bool items already in a HIT of this step


def pool_size(static: Static) -> int:
    """P: candidate items per step for 'risk_reduction' (`gain.POOL_PER_SLOT` per label, at most N)."""
    return min(static.num_items, gain.POOL_PER_SLOT * static.labels_per_step)


def step_pool(
    static: Static, params: Params, annotations: AnnotationState, em_state: EMState, mean_conf: jax.Array, key
) -> gain.Pool:
    """The step's candidate pool: eligible items (as for the first HIT) ranked by expected
    gain for the average worker (`mean_conf`: (K, K) mean estimated confusion)."""
    room = annotations.item_count < static.max_annotations
    eligible = eligible_items(em_state.risk, room, params.risk_threshold, static.hit_size)
    return gain.candidate_pool(em_state.posterior, eligible, mean_conf, params.selection_temperature,
                               pool_size(static), key)  # fmt: skip


def gain_hit_items(
    static: Static, params: Params, risk: jax.Array, pool: gain.Pool, c: HitCounters, conf: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One HIT's items for a worker with confusion `conf` (K, K): the currently eligible
    pool items of highest expected gain, items already in a HIT of this step last.

    Returns:
      items: (B,) i32 distinct item indices; valid: (B,) bool lanes that carry an item.
    """
    eligible = eligible_items(risk, c.item_count < static.max_annotations, params.risk_threshold, static.hit_size)
    score = gain.expected_gain(pool.probs, pool.classes, conf)
    score = jnp.where(c.picked[pool.items], score - 1e4, score)  # gains lie in [0, 1]: the offset orders two tiers
    lanes, valid = gain.best_items(jnp.where(pool.valid & eligible[pool.items], score, -jnp.inf), static.hit_size)
    return pool.items[lanes], valid


def select_hits(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    em_state: EMState,
    alpha: jax.Array,
    labels_left: jax.Array,
    key: jax.Array,
) -> Hits:
    """Draw one step's HITs under the label budget.

    Each HIT's items come from `draw_hit_items` ('random' item score) or `gain_hit_items`
    ('risk_reduction', for the HIT's worker; for the average worker under greedy
    assignment, whose worker is chosen after the items), with the counters updated by the
    HITs before it. 'random' sampler: the HITs go to the first `hits_per_step` workers of a
    random permutation. 'greedy_task_assignment': to the worker, not yet used in this step
    and with room for a whole HIT under ``params.max_annotation_per_worker``, with the
    highest expected accuracy on the HIT's items (`worker_accuracy_on`, ties broken at random).

    Args:
      annotations: current slots (N, A) and counters.
      em_state: current posterior (N, K) and risk (N,).
      alpha: (W, K, K) current pseudo-counts (greedy assignment and 'risk_reduction').
      labels_left: () i32 labels the budget still allows.
    Returns:
      `Hits`; lanes beyond the budget, without an eligible item or without an available
      worker are invalid.
    """
    n, w, k = static.num_items, static.num_workers, static.num_classes
    ops.assert_shape([annotations.item_count, annotations.worker_count], [(n,), (w,)])
    ops.assert_shape([em_state.posterior, em_state.risk, alpha], [(n, k), (n,), (w, k, k)])
    ops.assert_shape(labels_left, ())
    k_order, k_hits = jax.random.split(key)
    k_pool = jax.random.fold_in(k_order, 1)  # a separate stream: the 'random' draws stay as they were
    order = jax.random.permutation(k_order, w)
    greedy = static.sampler == "greedy_task_assignment"
    by_gain = static.item_score == "risk_reduction"
    if by_gain:
        conf = dawid_skene.confusion(alpha)  # (W, K, K)
        mean_conf = conf.mean(0)  # the average worker: the pool, and every HIT under greedy assignment
        pool = step_pool(static, params, annotations, em_state, mean_conf, k_pool)

    def one_hit(c: HitCounters, h):
        k_items, k_worker = jax.random.split(jax.random.fold_in(k_hits, h))
        worker = order[h]
        if by_gain:  # greedy: the worker is chosen after the items, which serve the average worker
            items, valid = gain_hit_items(static, params, em_state.risk, pool, c, mean_conf if greedy else conf[worker])
        else:
            room = c.item_count < static.max_annotations
            items, valid = draw_hit_items(em_state.risk, room, params.risk_threshold, static.hit_size, k_items)
        if greedy:
            free = ~c.used & (c.worker_count + static.hit_size <= params.max_annotation_per_worker)
            score = worker_accuracy_on(em_state.posterior[items], valid, alpha)
            worker = ops.random_argmax(score, free, k_worker)
            valid = valid & free.any()
        valid = valid & (c.issued + jnp.cumsum(valid) <= labels_left)
        slots = c.item_count[items]
        new = HitCounters(
            item_count=c.item_count.at[items].add(valid.astype(jnp.int32)),
            worker_count=c.worker_count.at[worker].add(valid.sum(dtype=jnp.int32)),
            used=c.used.at[worker].set(True),
            issued=c.issued + valid.sum(),
            picked=c.picked.at[items].max(valid),
        )
        return new, Hits(items=items, workers=worker, slots=slots, valid=valid)

    start = HitCounters(annotations.item_count, annotations.worker_count, jnp.zeros(w, bool), jnp.int32(0),
                        jnp.zeros(n, bool))  # fmt: skip
    _, hits = jax.lax.scan(one_hit, start, jnp.arange(static.hits_per_step))
    return hits._replace(workers=hits.workers.astype(jnp.int32))


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
