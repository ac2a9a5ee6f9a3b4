"""The online annotation loop: `init_state`, `online_step`, `simulate`, `run_chunk`.

One online step, for step index t = state.step + 1:

1. t > 0 only (`stopping.check_stop`): record the confident count in the early stopper;
   stop when every item is confident or full, the budget is spent, (greedy) no worker has
   room, or the early stopper fires and `Static.early_stop` is set.
2. t > 0 only: draw HITs, let the simulated workers answer, store the labels.
3. EM with the previous learner probabilities as the learner term (skipped while there
   are no labels), then the posterior with the final counts.
4. With a learner: refit it on that posterior, then recompute the posterior with the new
   learner probabilities. Risk = 1 - max posterior.
5. Stop the run with ``numerical_error`` if its beliefs or counts became NaN or inf
   (`stopping.check_finite`); the row of that step is still logged.
6. Log `StepMetrics`.

Step 0 is the initial fit: no HITs, no EM, the learner trains on half the prototypes.
A stopped run is frozen: every later step returns its state unchanged (with
``active=False`` in the metrics), which is what lets seeds stop independently under vmap.

Keys: every function here takes the seed's *run key*, never a per-step key. It is split
once into a pool key and a step key; step t uses ``fold_in(step_key, t)``. Item
difficulties (``item_difficulty`` workers) come from ``fold_in(run_key, DIFFICULTY_STREAM)``,
one item at a time. Nothing random is stored, so a resumed run is bit-identical.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxanno import dawid_skene, em, learner, metrics, sampler, stopping, workers
from jaxanno.types import Dataset, EMState, Params, SimState, Static, StepMetrics

DIFFICULTY_STREAM = 0x1D1FF  # folded into the run key for the items' difficulties


def difficulty_key(run_key: jax.Array) -> jax.Array:
    """The key of one seed's item difficulties (`workers.item_difficulty`)."""
    return jax.random.fold_in(run_key, DIFFICULTY_STREAM)


def _keys(run_key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(pool key, step key) of one seed's run key."""
    k_pool, k_steps = jax.random.split(run_key)
    return k_pool, k_steps


def init_state(static: Static, params: Params, data: Dataset, run_key: jax.Array) -> SimState:
    """The state before the initial fit: a fresh worker pool, no labels, uniform beliefs.

    Args:
      run_key: the seed's run key.
    Returns:
      `SimState` with step = -1.
    """
    k_pool, _ = _keys(run_key)
    return SimState(
        step=jnp.int32(-1),
        done=jnp.bool_(False),
        stop_reason=jnp.int32(0),
        workers=workers.init_pool(static, params, data.crowd, k_pool),
        annotations=sampler.init_annotations(static),
        em=em.init_state(static),
        learner=learner.init_output(static),
        stopper=stopping.init_stopper(),
    )


def _collect_labels(static: Static, params: Params, data: Dataset, state: SimState, key: jax.Array, run_key: jax.Array):
    """Step 2: draw HITs and store the simulated answers (nothing at the initial step)."""
    k_hits, k_answer = jax.random.split(key)
    cost = state.annotations.item_count.sum()
    alpha = sampler.pool_alpha(state.workers, state.em)
    hits = sampler.select_hits(static, params, state.annotations, state.em, alpha, params.budget - cost, k_hits)
    hits = hits._replace(valid=hits.valid & (state.step >= 0))
    lane_workers = jnp.broadcast_to(hits.workers[:, None], hits.items.shape)
    difficulty = None  # every item alike, except for 'item_difficulty' workers
    if static.worker_type == "item_difficulty":
        difficulty = workers.item_difficulty(params, difficulty_key(run_key), hits.items)
    true_label = data.labels[hits.items]
    conf = state.workers.true_confusion
    answers = workers.answer(conf, lane_workers, true_label, k_answer, difficulty, params.difficulty_mean)
    return sampler.record_answers(state.annotations, hits, answers)


def _aggregate(static: Static, params: Params, data: Dataset, state: SimState, annotations, key: jax.Array) -> SimState:
    """Steps 3-4: EM, learner refit and the final posterior."""
    k_em, k_learn = jax.random.split(key)
    prior = state.workers.prior_alpha
    log_learner = dawid_skene.learner_log_prior(state.learner.probs if state.learner else None, static.num_items)
    counts, log_class_prior, iterations = state.em.counts, state.em.log_class_prior, jnp.int32(0)
    if static.em.aggregator == "bayes":
        k_init, k_iter = jax.random.split(k_em)
        counts, log_class_prior = em.initial_counts(static, annotations, counts, log_class_prior, k_init)
        result = em.run(static, params, annotations, prior, counts, log_class_prior, log_learner, k_iter)
        counts, log_class_prior, iterations = result.counts, result.log_class_prior, result.iterations
    belief = em.posterior(static, params, annotations, prior + counts, log_class_prior, log_learner)
    learner_out = state.learner
    if learner_out is not None:
        annotated = annotations.item_count > 0
        learner_out = learner.fit_predict(
            static, params, data.features, belief, data.labels[static.num_items :], annotated, learner_out, k_learn
        )
        new_log_learner = dawid_skene.learner_log_prior(learner_out.probs, static.num_items)
        belief = em.posterior(static, params, annotations, prior + counts, log_class_prior, new_log_learner)
    em_state = EMState(
        counts=counts, log_class_prior=log_class_prior, posterior=belief, risk=em.risk(belief), iterations=iterations
    )
    return state.replace(step=state.step + 1, annotations=annotations, em=em_state, learner=learner_out)


def step_metrics(static: Static, params: Params, data: Dataset, state: SimState, active: jax.Array) -> StepMetrics:
    """The row logged for one step of one seed."""
    labels = data.labels[: static.num_items]
    confident = state.em.risk < params.risk_threshold
    cost = state.annotations.item_count.sum()
    return StepMetrics(
        step=state.step,
        active=active,
        cost=cost.astype(jnp.int32),
        cost_per_item=cost / static.num_items,
        frac_labelled=(state.annotations.item_count > 0).mean(),
        num_confident=confident.sum().astype(jnp.int32),
        open_slots=jnp.where(confident, 0, static.max_annotations - state.annotations.item_count)
        .sum()
        .astype(jnp.int32),
        em_iterations=state.em.iterations,
        early_stop_fired=state.stopper.fired_step >= 0,
        aggregate=metrics.belief_metrics(state.em.posterior, labels, confident),
        learner=metrics.learner_metrics(state.learner.probs if state.learner else None, labels, confident),
    )


def online_step(
    static: Static, params: Params, data: Dataset, state: SimState, run_key: jax.Array
) -> tuple[SimState, StepMetrics]:
    """Advance one seed by one online step (or leave a stopped run frozen).

    Args:
      run_key: the seed's run key, the same at every step (the step's own key is derived
        from it and ``state.step``).
    Returns:
      The new state and the step's metrics row.
    """
    _, k_steps = _keys(run_key)
    k_collect, k_aggregate = jax.random.split(jax.random.fold_in(k_steps, state.step + 1))
    checked = stopping.check_stop(static, params, state)
    annotations = _collect_labels(static, params, data, checked, k_collect, run_key)
    stepped = stopping.check_finite(_aggregate(static, params, data, checked, annotations, k_aggregate))
    out = jax.tree.map(lambda old, new: jnp.where(checked.done, old, new), checked, stepped)
    return out, step_metrics(static, params, data, out, ~checked.done)


def simulate(
    static: Static, params: Params, data: Dataset, run_key: jax.Array, num_steps: int
) -> tuple[SimState, StepMetrics]:
    """A whole run of one seed: initial fit plus `num_steps - 1` online steps.

    Args:
      run_key: the seed's run key.
    Returns:
      The final state and metrics with a leading (num_steps,) axis.
    """
    state = init_state(static, params, data, run_key)
    step = lambda s, _: online_step(static, params, data, s, run_key)  # noqa: E731
    return jax.lax.scan(step, state, None, length=num_steps)


def run_chunk(
    static: Static,
    params: Params,
    data: Dataset,
    state: SimState,
    run_key: jax.Array,
    start: jax.Array,
    num_steps: int,
) -> tuple[SimState, StepMetrics]:
    """`num_steps` online steps from `state`; the run starts afresh when `start` is 0.

    `start` is shared by every lane (not vmapped), so the initialisation is a true branch
    under vmap and a whole run, chunk after chunk, is one compiled program.

    Args:
      run_key: the seed's run key.
    Returns:
      The state after the chunk and metrics with a leading (num_steps,) axis.
    """
    state = jax.lax.cond(start == 0, lambda: init_state(static, params, data, run_key), lambda: state)
    step = lambda s, _: online_step(static, params, data, s, run_key)  # noqa: E731
    return jax.lax.scan(step, state, None, length=num_steps)
