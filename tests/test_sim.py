"""The whole online step: vmap over seeds equals a loop, no retracing, outcomes, freezing."""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxanno import dawid_skene, em, sim, stopping, types
from tests.conftest import tiny_dataset, tiny_learner, tiny_static

STEPS = 10

LEARNER = tiny_learner()


LEAN = dataclasses.replace(
    LEARNER, calibrate="cv", cv_folds=2, prototype_as_val=False, semi_supervised="none", early_stop_scope="local"
)
METHODS = {"ds_model": None, "efficient_annotation": LEARNER, "lean": LEAN}


# The learner methods are the long end-to-end cases: slow; ds_model stays in the fast subset.
@pytest.fixture(
    scope="module", params=[m if m == "ds_model" else pytest.param(m, marks=pytest.mark.slow) for m in sorted(METHODS)]
)
def setup(request):
    # blocks of 20 over 48 items (2 + a remainder) exercise the blocked E-step in the loop
    em_static = types.EMStatic(criterion="hard" if request.param == "lean" else "soft", item_block=20)
    static = tiny_static(learner=METHODS[request.param], em=em_static)
    return static, tiny_dataset(static)


_simulate = jax.jit(sim.simulate, static_argnums=(0, 4))


def _ints(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_]


def _floats(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


@pytest.mark.slow
def test_vmap_over_seeds_equals_a_loop_of_single_runs(setup, params):
    static, data = setup
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.jit(jax.vmap(sim.simulate, in_axes=(None, None, None, 0, None)), static_argnums=(0, 4))(
        static, params, data, keys, STEPS
    )
    looped = jax.tree.map(lambda *x: jnp.stack(x), *[_simulate(static, params, data, k, STEPS) for k in keys])
    for got, want in zip(_ints(batched), _ints(looped)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(_floats(batched), _floats(looped)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_chunks_resume_exactly_where_a_whole_run_would_be(setup, params):
    static, data = setup
    key = jax.random.key(7)
    whole = _simulate(static, params, data, key, STEPS)
    chunk = jax.jit(sim.run_chunk, static_argnums=(0, 6))
    blank = types.zeros_like_shapes(jax.eval_shape(functools.partial(sim.init_state, static), params, data, key))
    s1, m1 = chunk(static, params, data, blank, key, jnp.int32(0), STEPS // 2)
    s2, m2 = chunk(static, params, data, s1, key, jnp.int32(STEPS // 2), STEPS // 2)
    halves = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), m1, m2)
    chex.assert_trees_all_equal(whole[0], s2)
    chex.assert_trees_all_equal(whole[1], halves)


@pytest.mark.slow
def test_online_step_traces_once_for_new_params(setup, params):
    static, data = setup

    def step(p, s, k):
        return sim.online_step(static, p, data, s, k)

    jstep = jax.jit(chex.assert_max_traces(step, n=1))
    key = jax.random.key(1)
    state = sim.init_state(static, params, data, key)
    for t in range(3):
        state, _ = jstep(params if t % 2 else types.make_params(risk_threshold=0.2, lr_ratio=3e-4), state, key)
    assert int(state.step) == 2


@pytest.mark.slow
def test_same_key_same_run_and_different_keys_differ(setup, params):
    static, data = setup
    a = _simulate(static, params, data, jax.random.key(3), STEPS)
    b = _simulate(static, params, data, jax.random.key(3), STEPS)
    c = _simulate(static, params, data, jax.random.key(4), STEPS)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a[0].annotations.worker, c[0].annotations.worker)


def test_run_ends_confident_or_full_and_stays_frozen(params):
    static = tiny_static()
    data = tiny_dataset(static)
    final, m = _simulate(static, params, data, jax.random.key(0), 40)
    active = np.asarray(m.active)
    assert bool(final.done) and not active[-1] and active[0]
    stop = int(np.argmin(active))
    assert (~active[stop:]).all(), "once stopped, a run never restarts"
    np.testing.assert_array_equal(np.asarray(m.cost)[stop:], np.asarray(m.cost)[stop - 1])
    assert types.STOP_REASONS[int(final.stop_reason)] == "all_confident_or_full"
    risk, count = np.asarray(final.em.risk), np.asarray(final.annotations.item_count)
    assert ((risk < 0.1) | (count >= 3)).all()
    assert (count <= 3).all()


@pytest.mark.slow
def test_em_beats_majority_vote_on_the_same_labels():
    """Outcome check: with workers of very unequal skill (reliability 0.7 +- 0.3), the DS
    posterior on the labels a run collected beats majority vote on the same labels."""
    static = tiny_static(
        num_items=300,
        worker_type="uniform",
        prior_type="predefined_homegeneous",
        hit_size=20,
        hits_per_step=3,
        em=types.EMStatic(criterion="hard"),
    )
    params = types.make_params(reliability_mean=0.7, reliability_std=0.3, risk_threshold=0.01, prior_strength=1.0)
    data = tiny_dataset(static)
    truth = np.asarray(data.labels[: static.num_items])
    ds, mv = [], []
    for seed in range(4):
        final, _ = _simulate(static, params, data, jax.random.key(seed), 20)
        ds.append((np.asarray(final.em.posterior).argmax(-1) == truth).mean())
        mv.append((np.asarray(dawid_skene.majority_vote(final.annotations, 4)).argmax(-1) == truth).mean())
    assert np.mean(ds) >= np.mean(mv) + 0.02, (ds, mv)
    assert all(d >= m - 0.01 for d, m in zip(ds, mv)), (ds, mv)


@pytest.mark.slow
def test_learner_at_step_zero_trains_on_half_the_prototypes(params):
    static = tiny_static(learner=LEARNER)
    data = tiny_dataset(static, separation=4.0)
    params = types.make_params(lr_ratio=0.05)  # 20 epochs only: a larger step than the default
    state = sim.init_state(static, params, data, jax.random.key(0))
    state, m = jax.jit(sim.online_step, static_argnums=0)(static, params, data, state, jax.random.key(0))
    assert int(m.cost) == 0
    assert float(m.learner.all.top1) > 0.9, "well separated blobs are learnt from 2 prototypes per class"
    np.testing.assert_allclose(
        state.em.posterior,
        state.learner.probs[: static.num_items] / state.learner.probs[: static.num_items].sum(-1, keepdims=True),
        atol=1e-5,
    )


@pytest.mark.slow
@pytest.mark.parametrize("early_stop", [False, True])
def test_early_stopper_ends_the_run_only_when_asked(early_stop, params):
    """A stopper whose maximum is older than its window fires; the run stops only with the flag."""
    static = dataclasses.replace(tiny_static(), early_stop=early_stop)
    data = tiny_dataset(static)
    state = sim.init_state(static, params, data, jax.random.key(0))
    count = jnp.full((static.num_items,), 2, jnp.int32)  # N/2 labels collected, nobody full
    annotations = state.annotations.replace(item_count=count)
    window = stopping.early_stopper_window(static)  # 5000 // 10 labels per step = 500 steps
    stopper = state.stopper.replace(history_len=jnp.int32(window + 10), max_confident=jnp.int32(30),
                                    last_max_index=jnp.int32(3))  # fmt: skip
    state = state.replace(step=jnp.int32(window + 9), annotations=annotations, stopper=stopper)
    checked = stopping.check_stop(static, params, state)
    assert int(checked.stopper.fired_step) == window + 9
    assert bool(checked.done) == early_stop
    assert types.STOP_REASONS[int(checked.stop_reason)] == ("early_stop" if early_stop else "running")


@pytest.mark.slow
def test_warm_start_begins_em_from_the_previous_counts(params):
    static = tiny_static(em=types.EMStatic(warm_start=True))
    previous = jnp.ones((static.num_workers, 4, 4)) * 3.0
    state = sim.init_state(static, params, tiny_dataset(static), jax.random.key(0))
    counts, _ = em.initial_counts(static, state.annotations, previous, jnp.zeros(4), jax.random.key(0))
    np.testing.assert_array_equal(counts, previous)
    cold, _ = em.initial_counts(tiny_static(), state.annotations, previous, jnp.zeros(4), jax.random.key(0))
    np.testing.assert_array_equal(cold, 0.0)
