"""The learner: masked fit equals sliced fit, accuracy on easy data, calibration solvers,
cross-validation folds, training-set rules, global early stop, MixMatch."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxanno import calibration, learner, types
from tests.conftest import tiny_static

K, D = 4, 6


def _static(**kw):
    ls = dict(model=learner.MLP(num_classes=K, hidden_sizes=(16,)), batch_size=32, max_epochs=40, eval_every=10)
    ls.update(kw)
    return tiny_static(num_items=80, num_prototypes=16, num_classes=K, feature_dim=D, learner=types.LearnerStatic(**ls))


def _blobs(m, separation, seed=0):
    rng = np.random.default_rng(seed)
    labels = (np.arange(m) % K).astype(np.int32)
    means = rng.normal(size=(K, D)) * separation
    return jnp.asarray(means[labels] + rng.normal(size=(m, D)), jnp.float32), jnp.asarray(labels)


_fit = jax.jit(learner.fit, static_argnums=0)


@pytest.mark.slow
def test_masked_fit_equals_fit_on_the_sliced_rows():
    static = _static()
    params = types.make_params(lr_ratio=0.01)
    x, y = _blobs(96, 1.0)
    rng = np.random.default_rng(1)
    train = rng.random(96) < 0.5
    val = ~train & (rng.random(96) < 0.5)
    cap = 40
    val_rows, val_valid = learner.compact(jnp.asarray(val), cap)
    key = jax.random.key(3)
    masked = _fit(static, params, x, y, jnp.asarray(train), val_rows, val_valid, key)
    idx = np.concatenate([np.flatnonzero(train), np.flatnonzero(val)])
    n_train = int(train.sum())
    sliced_val = jnp.arange(n_train, n_train + cap, dtype=jnp.int32)
    sliced_val = jnp.where(val_valid, sliced_val, 0)
    sliced = _fit(static, params, x[idx], y[idx], jnp.arange(len(idx)) < n_train, sliced_val, val_valid, key)
    np.testing.assert_allclose(masked.best_loss, sliced.best_loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(masked.params), jax.tree.leaves(sliced.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_learner_exceeds_99_percent_on_well_separated_data():
    static = _static(max_epochs=100)
    x, y = _blobs(400, 4.0, seed=2)
    train = jnp.arange(400) < 300
    val_rows, val_valid = learner.compact(~train, 100)
    res = _fit(static, types.make_params(lr_ratio=0.01), x, y, train, val_rows, val_valid, jax.random.key(0))
    probs = learner.predict(static, res.params, x, jnp.float32(1.0))
    assert float((probs.argmax(-1) == y).mean()) > 0.99


def _logits(seed, scale):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 300)
    logits = rng.normal(size=(300, 5)) + 2.0 * np.eye(5)[labels]
    flip = rng.random(300) < 0.3  # wrong but confident rows make the model overconfident
    logits[flip] += 3.0 * np.eye(5)[rng.integers(0, 5, flip.sum())]
    return (logits * scale).astype(np.float32), labels.astype(np.int32)


def _nll64(logits, labels, t):
    z = logits.astype(np.float64) / t
    z = z - z.max(-1, keepdims=True)
    return float((np.log(np.exp(z).sum(-1)) - z[np.arange(len(labels)), labels]).mean())


@pytest.mark.parametrize("seed, scale", [(0, 1.0), (1, 3.0), (2, 0.3)])
def test_exact_temperature_reaches_the_grid_minimum(seed, scale):
    logits, labels = _logits(seed, scale)
    t = float(calibration.temperature_exact(jnp.asarray(logits), jnp.asarray(labels), jnp.ones(300)))
    grid = np.exp(np.linspace(np.log(0.05), np.log(50), 20001))
    best = min(_nll64(logits, labels, g) for g in grid)
    assert _nll64(logits, labels, t) <= best + 1e-6


def test_exact_temperature_vmapped_over_seeds_equals_a_loop_and_traces_once():
    problems = [_logits(seed, scale) for seed, scale in [(0, 1.0), (1, 3.0), (2, 0.3)]]
    logits = jnp.asarray(np.stack([p[0] for p in problems]))
    labels = jnp.asarray(np.stack([p[1] for p in problems]))
    weight = jnp.ones((3, 300)).at[1, :150].set(0.0).at[2].set(0.0)  # a masked half, and no data (T = 1)
    solve = chex.assert_max_traces(calibration.temperature_exact, n=1)
    looped = [float(jax.jit(solve)(logits[i], labels[i], weight[i])) for i in range(3)]  # one trace, 3 calls
    batched = jax.jit(jax.vmap(calibration.temperature_exact))(logits, labels, weight)
    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-6)
    assert looped[2] == 1.0 and looped[1] != looped[0]


@pytest.mark.slow
def test_lbfgs_temperature_barely_moves_and_reverts_when_worse():
    logits, labels = _logits(1, 3.0)  # overconfident: larger T is better
    t = float(calibration.temperature_lbfgs(jnp.asarray(logits), jnp.asarray(labels), jnp.ones(300)))
    assert 1.5 < t < 1.6, "L-BFGS with step 0.001 moves T only a little from 1.5"
    under, ulabels = _logits(2, 0.3)  # underconfident: T = 1.5 is worse than 1 -> revert
    t_under = float(calibration.temperature_lbfgs(jnp.asarray(under), jnp.asarray(ulabels), jnp.ones(300)))
    assert t_under == 1.0


@pytest.mark.slow
def test_cross_validation_vmap_over_folds_equals_separate_fits():
    static = _static(calibrate="cv", cv_folds=3, prototype_as_val=False)
    params = types.make_params(lr_ratio=0.01)
    x, y = _blobs(96, 1.5, seed=4)
    split = learner.Split(
        labels=y,
        train=jnp.arange(96) < 70,
        val=(jnp.arange(96) >= 70) & (jnp.arange(96) < 86),
        unlabelled=jnp.zeros(96, bool),
    )
    key = jax.random.key(5)
    got = jax.jit(learner.cross_validate, static_argnums=0)(static, params, x, split, key)
    k_fold, k_fit = jax.random.split(key)
    pool = split.train | split.val
    fold = learner.stratified_folds(y, pool, K, 3, k_fold)
    capacity = learner.fold_capacity(static, 96)
    assert capacity == 32 + K
    preds = [
        jax.jit(learner.fit_calibrate_predict, static_argnums=(0, 6))(
            static, params, x, y, pool & (fold != f), pool & (fold == f), capacity, fk, split.unlabelled
        )
        for f, fk in enumerate(jax.random.split(k_fit, 3))
    ]
    np.testing.assert_allclose(got.probs, np.mean([p.probs for p in preds], 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.loss, np.mean([p.loss for p in preds]), rtol=1e-5)
    sizes = [int((pool & (fold == f)).sum()) for f in range(3)]
    assert max(sizes) - min(sizes) <= K, "folds are stratified by class"


def _split(static, params, post, annotated, seed=0):
    labels = jnp.concatenate(
        [jnp.argmax(post, -1).astype(jnp.int32), jnp.arange(static.num_prototypes, dtype=jnp.int32) % K]
    )
    return learner.make_split(static, params, labels, annotated, 1 - post.max(-1), jax.random.key(seed))


@pytest.mark.slow
def test_initial_split_trains_on_half_the_prototypes():
    for as_val in (True, False):
        static = _static(prototype_as_val=as_val)
        post = jnp.full((80, K), 1.0 / K)
        s = _split(static, types.make_params(), post, jnp.zeros(80, bool))
        n = static.num_items
        assert int(s.train[:n].sum()) == 0 and int(s.val[:n].sum()) == 0
        np.testing.assert_array_equal(np.bincount(np.flatnonzero(s.train) % K, minlength=K), [2] * K)
        np.testing.assert_array_equal(np.bincount(np.flatnonzero(s.val) % K, minlength=K), [2] * K)


@pytest.mark.slow
def test_pseudolabels_are_the_confident_items_and_balancing_tops_up_validation():
    static = _static(semi_supervised="pseudolabel")
    rng = np.random.default_rng(0)
    post = rng.dirichlet(np.ones(K) * 0.2, 80).astype(np.float32)
    post[:10] = np.eye(K)[np.zeros(10, int)] * 0.97 + 0.01  # confident class-0 items
    post = jnp.asarray(post)
    s = _split(static, types.make_params(pseudo_label_threshold=0.1), post, jnp.zeros(80, bool))
    confident = np.asarray(1 - post.max(-1) < 0.1)
    train_items = np.asarray(s.train[:80])
    assert (train_items <= confident).all() and train_items.sum() > 0
    item_train = np.bincount(np.asarray(s.labels)[:80][train_items], minlength=K)
    proto_train = np.bincount(np.flatnonzero(np.asarray(s.train[80:])) % K, minlength=K)
    # prototypes validate, except half of those of classes with fewer training than validation rows
    np.testing.assert_array_equal(proto_train, np.where(item_train < 4, 2, 0))
    per_class_val = np.bincount(np.asarray(s.labels)[np.asarray(s.val)], minlength=K)
    assert (per_class_val >= static.n_prototype_per_class // 2).all()


@pytest.mark.slow
def test_global_scope_keeps_the_best_model_ever():
    static = _static(early_stop_scope="global")
    x, _ = _blobs(96, 2.0)
    post = jax.nn.one_hot(jnp.arange(80) % K, K) * 0.97 + 0.0075
    protos = jnp.arange(16, dtype=jnp.int32) % K
    old = learner.init_output(static)
    fp = jax.jit(learner.fit_predict, static_argnums=0)
    unbeatable = old.replace(best_loss=jnp.float32(-1.0), probs=jnp.full((96, K), 0.25))
    kept = fp(
        static, types.make_params(lr_ratio=0.01), x, post, protos, jnp.ones(80, bool), unbeatable, jax.random.key(0)
    )
    np.testing.assert_array_equal(kept.probs, unbeatable.probs)
    assert float(kept.best_loss) == -1.0 and np.isfinite(kept.last_loss)
    fresh = fp(static, types.make_params(lr_ratio=0.01), x, post, protos, jnp.ones(80, bool), old, jax.random.key(0))
    assert float(fresh.best_loss) == float(fresh.last_loss) < np.inf
    assert not np.allclose(fresh.probs, old.probs)


@pytest.mark.slow
def test_mixmatch_fit_learns_from_few_labels():
    static = _static(semi_supervised="mixmatch", mixmatch_mu=2, max_epochs=60)
    x, y = _blobs(400, 3.0, seed=6)
    train = jnp.arange(400) < 40
    val_rows, val_valid = learner.compact((jnp.arange(400) >= 40) & (jnp.arange(400) < 80), 40)
    unlabelled = jnp.arange(400) >= 80
    params = types.make_params(lr_ratio=0.01, mixmatch_weight=10.0)
    res = _fit(static, params, x, y, train, val_rows, val_valid, jax.random.key(0), unlabelled)
    probs = learner.predict(static, res.params, x, jnp.float32(1.0))
    assert np.isfinite(float(res.best_loss))
    assert float((probs.argmax(-1) == y).mean()) > 0.9
