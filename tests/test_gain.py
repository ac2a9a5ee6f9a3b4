"""Expected-risk-reduction item selection: the gain against float64 enumeration, its
invariants, the sampler's choice for the HIT's worker, vmap == loop and no retrace."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxanno import gain, sampler, sim, types
from tests import reference
from tests.conftest import annotation_state, random_annotations, tiny_dataset, tiny_static


def _conf(rng, w, k, sharp=3.0):
    """(w, K, K) random confusion matrices with a heavy diagonal."""
    logits = rng.normal(size=(w, k, k)) + sharp * np.eye(k)
    e = np.exp(logits)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _gain(belief, conf, t):
    probs, classes = gain.top_classes(jnp.asarray(belief), t)
    return np.asarray(gain.expected_gain(probs, classes, jnp.asarray(conf)))


@pytest.mark.parametrize("seed", range(3))
def test_gain_with_every_class_is_risk_minus_expected_risk_after_the_answer(seed):
    rng = np.random.default_rng(seed)
    k = 5
    belief = rng.dirichlet(np.ones(k) * 0.7, 20)
    conf = _conf(rng, 1, k)[0]
    got = _gain(belief.astype(np.float32), conf, t=k)
    want = [(1 - b.max()) - reference.expected_risk_after(b, conf) for b in belief]
    np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("seed", range(3))
def test_truncated_gain_matches_the_coarsened_reference_and_bounds_the_exact_gain(seed):
    rng = np.random.default_rng(seed)
    k, t = 9, 4
    belief = rng.dirichlet(np.ones(k) * 0.4, 30)
    conf = _conf(rng, 1, k, sharp=2.0)[0]
    got = _gain(belief.astype(np.float32), conf, t=t)
    np.testing.assert_allclose(got, [reference.coarsened_gain(b, conf, t) for b in belief], atol=2e-6)
    exact = np.array([(1 - b.max()) - reference.expected_risk_after(b, conf) for b in belief])
    assert (got <= exact + 1e-6).all() and (got >= 0).all()
    assert (got > 0).any(), "a sharp worker helps on some items"


def test_gain_is_zero_for_a_worker_who_says_nothing_and_the_risk_for_a_perfect_one():
    rng = np.random.default_rng(0)
    k = 6
    belief = rng.dirichlet(np.ones(k), 10).astype(np.float32)
    uninformative = np.tile(rng.dirichlet(np.ones(k)), (k, 1)).astype(np.float32)  # answer independent of y
    np.testing.assert_allclose(_gain(belief, uninformative, t=k), 0.0, atol=1e-6)
    np.testing.assert_allclose(_gain(belief, np.eye(k, dtype=np.float32), t=k), 1 - belief.max(-1), atol=1e-6)


def test_items_go_where_the_worker_can_tell_the_classes_apart():
    """A worker who tells 0 from 1 but confuses 2 with 3 gains on 0-vs-1 items only."""
    k = 4
    conf = np.array([[0.95, 0.05, 0, 0], [0.05, 0.95, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]], np.float32)
    belief = np.array([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]] * 5, np.float32)
    g = _gain(belief, conf, t=4)
    np.testing.assert_allclose(g[0::2], 0.45, atol=1e-6)
    np.testing.assert_allclose(g[1::2], 0.0, atol=1e-6)
    static = tiny_static(num_items=10, num_classes=k, num_workers=1, hit_size=5, hits_per_step=1,
                         item_score="risk_reduction")  # fmt: skip
    ann = annotation_state(np.full((10, 3), -1, np.int32), np.full((10, 3), -1, np.int32), 1)
    em_state = types.EMState(counts=jnp.zeros((1, k, k)), log_class_prior=jnp.zeros(k), posterior=jnp.asarray(belief),
                             risk=jnp.full(10, 0.5), iterations=jnp.int32(0))  # fmt: skip
    alpha = jnp.asarray(conf[None] * 1000 + 1e-3)
    hits = sampler.select_hits(static, types.make_params(), ann, em_state, alpha, jnp.int32(100), jax.random.key(0))
    assert sorted(np.asarray(hits.items[0]).tolist()) == [0, 2, 4, 6, 8]
    assert np.asarray(hits.valid).all()


N, A, W, K = 40, 3, 6, 4
_select = jax.jit(sampler.select_hits, static_argnums=0)


def _em_state(rng, n=N, k=K):
    post = rng.dirichlet(np.ones(k) * 0.5, size=n).astype(np.float32)
    return types.EMState(counts=jnp.zeros((W, k, k)), log_class_prior=jnp.zeros(k), posterior=jnp.asarray(post),
                         risk=jnp.asarray(1 - post.max(-1)), iterations=jnp.int32(0))  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_each_hit_takes_the_eligible_items_of_highest_gain_for_its_worker(seed):
    """The pool holds every item here (4 H B >= N): each HIT's items are the top-B gains for
    its own worker among the eligible items not yet in a HIT of the step (float64 reference)."""
    rng = np.random.default_rng(seed)
    static = tiny_static(num_items=N, num_workers=W, num_classes=K, hit_size=4, hits_per_step=3,
                         item_score="risk_reduction")  # fmt: skip
    workers_, labels = random_annotations(rng, N, A, W, K, fill=0.4)
    ann = annotation_state(workers_, labels, W)
    em_state = _em_state(rng)
    conf = _conf(rng, W, K)
    alpha = jnp.asarray(conf * 200)
    params = types.make_params(risk_threshold=0.2)
    hits = jax.tree.map(
        np.asarray, _select(static, params, ann, em_state, alpha, jnp.int32(1000), jax.random.key(seed))
    )
    count, risk, post = np.asarray(ann.item_count).copy(), np.asarray(em_state.risk), np.asarray(em_state.posterior)
    picked = np.zeros(N, bool)
    assert len(set(hits.workers.tolist())) == static.hits_per_step
    for h in range(static.hits_per_step):
        room = count < A
        t = reference.lowered_threshold(risk, room, 0.2, static.hit_size)
        eligible = room & (risk > t) if t is not None else room
        c = reference.confusion(alpha)[hits.workers[h]]
        g = np.array([reference.coarsened_gain(b, c, min(gain.GAIN_CLASSES, K)) for b in post])
        rank = np.where(eligible, np.where(picked, g - 1e4, g), -np.inf)
        want = np.sort(rank)[::-1][: static.hit_size]
        items = hits.items[h][hits.valid[h]]
        assert hits.valid[h].all() and len(set(items.tolist())) == len(items)
        np.testing.assert_allclose(np.sort(rank[items])[::-1], want, atol=1e-5)
        np.testing.assert_array_equal(hits.slots[h], count[items])
        count[items] += 1
        picked[items] = True
    assert (count <= A).all()


def test_temperature_spreads_the_choice():
    rng = np.random.default_rng(5)
    static = tiny_static(num_items=N, num_workers=W, num_classes=K, hit_size=4, hits_per_step=1,
                         item_score="risk_reduction")  # fmt: skip
    ann = annotation_state(np.full((N, A), -1, np.int32), np.full((N, A), -1, np.int32), W)
    em_state, alpha = _em_state(rng), jnp.ones((W, K, K)) + 50 * jnp.eye(K)  # every worker alike

    def chosen(temperature):
        params = types.make_params(risk_threshold=0.0, selection_temperature=temperature)
        keys = jax.random.split(jax.random.key(0), 20)
        return {frozenset(np.asarray(_select(static, params, ann, em_state, alpha, jnp.int32(99), k).items[0]).tolist())
                for k in keys}  # fmt: skip

    assert len(chosen(0.0)) == 1, "by gain alone, every draw takes the same items"
    assert len(chosen(1.0)) > 5


@pytest.fixture(scope="module")
def gain_run():
    static = tiny_static(item_score="risk_reduction")
    return static, tiny_dataset(static)


@pytest.mark.slow
def test_vmap_over_seeds_equals_a_loop_of_single_runs(gain_run):
    static, data = gain_run
    params = types.make_params(selection_temperature=0.05)
    keys = jax.random.split(jax.random.key(0), 3)
    run = jax.jit(sim.simulate, static_argnums=(0, 4))
    batched = jax.jit(jax.vmap(sim.simulate, in_axes=(None, None, None, 0, None)), static_argnums=(0, 4))(
        static, params, data, keys, 8
    )
    looped = jax.tree.map(lambda *x: jnp.stack(x), *[run(static, params, data, k, 8) for k in keys])
    np.testing.assert_array_equal(batched[0].annotations.worker, looped[0].annotations.worker)
    np.testing.assert_array_equal(batched[0].annotations.label, looped[0].annotations.label)
    np.testing.assert_allclose(batched[0].em.posterior, looped[0].em.posterior, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(batched[1].cost, looped[1].cost)
    assert int(looped[1].cost[0, -1]) > 0


@pytest.mark.slow
def test_online_step_traces_once_for_new_temperatures(gain_run):
    static, data = gain_run

    def step(p, s, k):
        return sim.online_step(static, p, data, s, k)

    jstep = jax.jit(chex.assert_max_traces(step, n=1))
    key = jax.random.key(1)
    state = sim.init_state(static, types.make_params(), data, key)
    for t in (0.0, 0.1, 2.0):
        state, _ = jstep(types.make_params(selection_temperature=t), state, key)
    assert int(state.step) == 2
