"""Simulated workers and priors against NumPy constructions from the packaged AMT data."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxanno import types, workers
from jaxanno.data import amt
from tests import reference
from tests.conftest import tiny_static

ANIMAL = amt.experiment_wnids("imagenet_animal")  # two groups: the out-of-group move applies


def _crowd(wnids, with_other=False):
    arrays = amt.crowd_arrays(wnids, with_other)
    return arrays, types.CrowdStats(**{k: jnp.asarray(v) for k, v in arrays.items()})


def _static(kind, k, **kw):
    return tiny_static(num_classes=k, worker_type=kind, num_workers=8, **kw)


@pytest.mark.parametrize(
    "kind",
    ["perfect", "adversarial"]
    + [pytest.param(k, marks=pytest.mark.slow) for k in ("uniform", "structured_noise", "uniform_noise")],
)
def test_worker_rows_sum_to_one(kind):
    arrays, crowd = _crowd(ANIMAL)
    static = _static(kind, len(ANIMAL))
    pool = jax.jit(workers.init_pool, static_argnums=0)(static, types.make_params(), crowd, jax.random.key(3))
    m = np.asarray(pool.true_confusion)
    assert m.shape == (8, len(ANIMAL), len(ANIMAL))
    assert (m >= 0).all()
    np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-5)


def _picked_indices(arrays, key):
    """The per-group worker indices `_real_worker_counts` draws for `key`."""
    logits = jnp.where(jnp.asarray(arrays["worker_valid"]), 0.0, -jnp.inf)
    return np.asarray(jax.random.categorical(key, logits, axis=-1))


@pytest.mark.parametrize("kind", ["structured_noise", pytest.param("uniform_noise", marks=pytest.mark.slow)])
def test_real_workers_match_numpy_construction(kind):
    arrays, crowd = _crowd(ANIMAL)
    key = jax.random.key(11)
    got = workers.sample_confusion(_static(kind, len(ANIMAL)), types.make_params(), crowd, key)
    picked = _picked_indices(arrays, key)
    want = reference.real_worker_matrix(
        arrays["group_totals"].astype(np.float64),
        arrays["worker_counts"].astype(np.float64),
        picked,
        arrays["class_group"],
        0.03,
        diagonal_only=(kind == "uniform_noise"),
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_structured_and_uniform_noise_share_the_diagonal():
    arrays, crowd = _crowd(ANIMAL)
    params = types.make_params()
    k = len(ANIMAL)
    for seed in range(3):
        key = jax.random.key(seed)
        s = workers.sample_confusion(_static("structured_noise", k), params, crowd, key)
        u = workers.sample_confusion(_static("uniform_noise", k), params, crowd, key)
        np.testing.assert_allclose(jnp.diagonal(s), jnp.diagonal(u), rtol=1e-5)
        assert not np.allclose(s, u), "off-diagonal structure must differ"


@pytest.mark.slow
def test_real_workers_have_the_human_accuracy_of_the_split():
    """Real workers are as accurate as the people behind the counts: dogs (split 0) are hard
    (~45%), split 5 is easy (~87%)."""
    accs = {}
    for name in ("imagenet_split_0", "imagenet_split_5"):
        wnids = amt.experiment_wnids(name)
        _, crowd = _crowd(wnids)
        static = _static("structured_noise", len(wnids))
        pool = workers.init_pool(static, types.make_params(), crowd, jax.random.key(0))
        accs[name] = float(jnp.diagonal(pool.true_confusion, axis1=1, axis2=2).mean())
    assert 0.35 < accs["imagenet_split_0"] < 0.55
    assert 0.8 < accs["imagenet_split_5"] < 0.95


@pytest.mark.slow
def test_out_of_group_move_only_applies_across_groups():
    """Vertebrate is one group: no mass moves; the 'other' class row never moves."""
    wnids = amt.experiment_wnids("imagenet_split_1")
    arrays, crowd = _crowd(wnids, with_other=True)
    key = jax.random.key(5)
    k = len(wnids) + 1
    got = np.asarray(workers.sample_confusion(_static("structured_noise", k), types.make_params(), crowd, key))
    picked = _picked_indices(arrays, key)
    raw = sum(arrays["group_totals"][g] + 10.0 * arrays["worker_counts"][g, picked[g]] for g in range(len(picked)))
    raw = raw / raw.sum(1, keepdims=True)
    np.testing.assert_allclose(got[-1], raw[-1], rtol=1e-5)  # 'other' row untouched
    # real rows: 3% of the in-group mass moved onto the single out-of-group class 'other'
    np.testing.assert_allclose(got[:-1, -1], raw[:-1, -1] + 0.03 * raw[:-1, :-1].sum(1), rtol=1e-4)


@pytest.mark.parametrize("kind", types.PRIOR_TYPES)
def test_priors_match_reference(kind):
    arrays, crowd = _crowd(ANIMAL)
    k = len(ANIMAL)
    static = dataclasses.replace(_static("structured_noise", k), prior_type=kind)
    params = types.make_params(prior_strength=7.0, prior_pos_count=3.0, prior_neg_count=2.0)
    own = np.random.default_rng(0).dirichlet(np.ones(k), size=(8, k)).astype(np.float32)
    got = np.asarray(workers.prior_alpha(static, params, crowd, jnp.asarray(own)))
    for j in (0, 5):
        want = reference.prior(
            kind, arrays["global_counts"].astype(np.float64), own[j].astype(np.float64), 7.0, 3.0, 2.0
        )
        np.testing.assert_allclose(got[j], want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_answers_follow_the_true_confusion():
    conf = jnp.asarray([[[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]]])
    n = 40000
    z = workers.answer(conf, jnp.zeros(n, jnp.int32), jnp.full(n, 2, jnp.int32), jax.random.key(0))
    np.testing.assert_allclose(np.bincount(np.asarray(z), minlength=3) / n, [0.25, 0.25, 0.5], atol=0.01)
    z1 = workers.answer(conf, jnp.zeros(100, jnp.int32), jnp.ones(100, jnp.int32), jax.random.key(1))
    assert (np.asarray(z1) == 1).all()


@pytest.mark.slow
def test_each_seed_draws_its_own_pool():
    _, crowd = _crowd(ANIMAL)
    static = _static("structured_noise", len(ANIMAL))
    a = workers.init_pool(static, types.make_params(), crowd, jax.random.key(1)).true_confusion
    b = workers.init_pool(static, types.make_params(), crowd, jax.random.key(2)).true_confusion
    shared = [bool(np.allclose(a[i], b[j])) for i in range(8) for j in range(8)]
    assert sum(shared) < 8, "pools of different seeds must not coincide worker for worker"
