"""When a simulated run ends: the stop rules and the early stopper.

A run stops, before drawing the HITs of an online step, when

* every item is confident (risk below the threshold) or has its A labels;
* the label budget is spent;
* (greedy assignment only) no worker has room for another full HIT;
* the early stopper has fired and `Static.early_stop` is set.

After every step's fit, a run whose posterior, EM counts, learner probabilities or worker
prior became NaN or infinite stops with ``numerical_error`` (`check_finite`): the state of
that step is kept (its metrics row shows the broken beliefs as wrong) and then frozen.

The early stopper watches the number of confident items after every step. It fires when
more than `early_stopper_window` entries exist (and more than 3), at least N/2 labels were
collected, and the maximum watched count was last reached more than a window ago. It is
always updated and logged (`StopperState.fired_step`), whether or not it ends the run.
What it watches (`Static.early_stopper`):

* ``'reference'`` (the original): the confident count itself. A single step whose count
  jumps above every later one (a transient learner that makes many items confident for
  one step) sets a maximum that nothing reaches again, and the stopper fires one window
  after it, as soon as N/2 labels are in.
* ``'sustained'``: the smallest confident count of the latest `SUSTAIN_STEPS` steps, i.e.
  the level the confident set has held for that many consecutive steps. A spike shorter
  than that never becomes the maximum; a real plateau still fires, `SUSTAIN_STEPS - 1`
  steps later at most.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxanno.types import STOP_REASONS, AnnotationState, Params, SimState, Static, StopperState

EARLY_STOP_WINDOW_LABELS = 5000  # the early stopper looks back this many labels' worth of steps
MIN_EARLY_STOP_WINDOW = 5  # ... but never fewer steps than this
SUSTAIN_STEPS = 3  # 'sustained': a confident count must hold this many consecutive steps to count
NUMERICAL_ERROR = STOP_REASONS.index("numerical_error")


def all_finished(static: Static, params: Params, state: SimState) -> jax.Array:
    """() every item is confident or has A labels."""
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
    """An early stopper with an empty history that has not fired."""
    minus_one = jnp.int32(-1)
    return StopperState(
        history_len=jnp.int32(0),
        max_confident=minus_one,
        last_max_index=minus_one,
        fired_step=minus_one,
        fired_cost=minus_one,
        recent=jnp.full((SUSTAIN_STEPS,), -1, jnp.int32),
    )


def early_stopper_window(static: Static) -> int:
    """Steps without a new maximum of confident items after which the stopper fires."""
    return max(EARLY_STOP_WINDOW_LABELS // static.labels_per_step, MIN_EARLY_STOP_WINDOW)


def update_stopper(
    static: Static, stopper: StopperState, num_confident: jax.Array, cost: jax.Array, step: jax.Array
) -> tuple[StopperState, jax.Array]:
    """Record this step's confident count; report whether the early stopper fires.

    Args:
      num_confident: () i32 confident items now; cost: () i32 labels collected so far;
      step: () i32 the step being recorded (logged as `fired_step` when it first fires).
    Returns:
      The updated `StopperState` and () bool: it fires at this entry.
    """
    index = stopper.history_len
    recent = jnp.concatenate([jnp.asarray(num_confident, jnp.int32)[None], stopper.recent[:-1]])
    # 'sustained': entries before the first SUSTAIN_STEPS hold -1, so nothing counts until then
    watched = recent.min() if static.early_stopper == "sustained" else num_confident
    is_max = watched >= stopper.max_confident
    length = index + 1
    max_confident = jnp.maximum(stopper.max_confident, watched)
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
        recent=recent,
    )
    return new, fires


def check_stop(static: Static, params: Params, state: SimState) -> SimState:
    """The first part of an online step: update the early stopper, decide whether the run ends.

    Nothing changes at the initial step (step < 0) or once the run is done. Otherwise the
    stopper records the confident count, and the run is marked done with the first stop
    rule that holds (its index into `types.STOP_REASONS` becomes `stop_reason`).
    """
    initial = state.step < 0
    cost = state.annotations.item_count.sum()
    num_confident = (state.em.risk < params.risk_threshold).sum()
    stopper, fires = update_stopper(static, state.stopper, num_confident, cost, state.step)
    reasons = jnp.stack(
        [  # in the order of types.STOP_REASONS[1:]
            all_finished(static, params, state),
            cost >= params.budget,
            no_worker_left(static, params, state.annotations),
            static.early_stop & fires,
        ]
    )
    stop = ~initial & ~state.done & reasons.any()
    keep_old = initial | state.done
    stopper = jax.tree.map(lambda old, new: jnp.where(keep_old, old, new), state.stopper, stopper)
    reason = jnp.where(stop, jnp.argmax(reasons) + 1, state.stop_reason).astype(jnp.int32)
    return state.replace(stopper=stopper, done=state.done | stop, stop_reason=reason)


def state_is_finite(state: SimState) -> jax.Array:
    """() bool: posterior, EM counts, learner probabilities and worker prior hold no NaN or inf."""
    arrays = [state.em.posterior, state.em.counts, state.workers.prior_alpha]
    if state.learner is not None:
        arrays.append(state.learner.probs)
    return jnp.stack([jnp.isfinite(a).all() for a in arrays]).all()


def check_finite(state: SimState) -> SimState:
    """The last part of an online step: a running run whose state is no longer finite stops
    with reason ``numerical_error`` (a run that stopped earlier keeps its reason)."""
    broken = ~state.done & ~state_is_finite(state)
    reason = jnp.where(broken, NUMERICAL_ERROR, state.stop_reason).astype(jnp.int32)
    return state.replace(done=state.done | broken, stop_reason=reason)
