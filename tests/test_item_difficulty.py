"""The per-image difficulty workers (``item_difficulty``): difficulties, hardened answer rows,
calibration against the real Mechanical Turk counts, the online loop (vmap == loop, no
retrace, resume, spread 0 == structured_noise) and a launch of every method on them."""

from __future__ import annotations

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxanno import cli, config, sim, types, workers
from jaxanno.data import amt
from tests import reference
from tests.conftest import tiny_dataset, tiny_static

PARAMS = types.make_params()
MEAN, SPREAD = types.PARAM_DEFAULTS["difficulty_mean"], types.PARAM_DEFAULTS["difficulty_spread"]
_difficulty = jax.jit(workers.item_difficulty)
_harden = jax.jit(workers.harden_rows)


def test_difficulties_have_the_configured_mean_and_spread_and_are_fixed_per_item():
    n = 200_000
    d = np.asarray(_difficulty(PARAMS, jax.random.key(0), jnp.arange(n)))
    assert d.shape == (n,) and d.dtype == np.float32 and (d >= 0).all() and (d <= 1).all()
    # mean within 5 standard errors; the sample std of 200k draws within 2% of the spread
    assert abs(d.mean() - MEAN) < 5 * SPREAD / np.sqrt(n)
    assert abs(d.std() - SPREAD) < 0.02 * SPREAD
    assert np.median(d) < MEAN - 0.03, "right-skewed: most images are easier than the mean"
    # an item's difficulty depends on the item alone, not on which items are asked with it
    some = jnp.asarray([[7, 199_999], [3, 7]])
    np.testing.assert_array_equal(_difficulty(PARAMS, jax.random.key(0), some), d[np.asarray(some)])
    other = np.asarray(_difficulty(PARAMS, jax.random.key(1), jnp.arange(1000)))
    assert not np.allclose(other, d[:1000]), "each seed draws its own difficulties"
    flat = np.asarray(_difficulty(types.make_params(difficulty_spread=0.0), jax.random.key(0), jnp.arange(10)))
    np.testing.assert_array_equal(flat, np.float32(MEAN))


def _random_rows(rng, n, k):
    rows = rng.dirichlet(np.full(k, 0.3), size=n)
    rows[:3] = np.eye(k)[:3]  # accuracy 1 (no wrong mass) and 0 (the true class below is 3)
    return rows


def test_hardened_rows_match_the_numpy_rule_and_stay_distributions():
    rng = np.random.default_rng(0)
    n, k = 400, 5
    rows, y = _random_rows(rng, n, k), rng.integers(0, k, n)
    y[:3] = [0, 1, 3]
    d = rng.uniform(0, 1, n)
    d[:4] = [0.0, 1.0, 1.0, 0.0]
    for mean in (0.25, 0.6):
        got = np.asarray(_harden(jnp.asarray(rows, jnp.float32), jnp.asarray(y), jnp.asarray(d, jnp.float32), mean))
        want = np.stack([reference.hardened_row(rows[i], y[i], d[i], mean) for i in range(n)])
        np.testing.assert_allclose(got, want, atol=2e-6)
        assert (got >= 0).all()
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=2e-6)
        acc, base = got[np.arange(n), y], rows[np.arange(n), y]
        assert (acc[d < mean] >= base[d < mean] - 1e-6).all() and (acc[d > mean] <= base[d > mean] + 1e-6).all()
        np.testing.assert_allclose(got[:3], rows[:3], atol=1e-7)  # accuracy 1 or 0: nothing to move


def test_accuracy_is_preserved_for_any_difficulties_with_the_mean():
    """The move is linear in d: two items at 0 and 2 * mean average back to the base row."""
    rng = np.random.default_rng(1)
    rows, y = rng.dirichlet(np.ones(6), size=50), rng.integers(0, 6, 50)
    two = lambda x: jnp.asarray(np.repeat(x, 2, axis=0))  # noqa: E731
    d = jnp.asarray(np.tile([0.0, 2 * MEAN], 50), jnp.float32)
    got = np.asarray(_harden(two(rows).astype(jnp.float32), two(y), d, MEAN)).reshape(50, 2, 6).mean(1)
    np.testing.assert_allclose(got, rows, atol=2e-6)


def test_spread_zero_leaves_every_row_bit_for_bit():
    rng = np.random.default_rng(2)
    rows = jnp.asarray(rng.dirichlet(np.ones(4), size=(3, 7)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 4, (3, 7)))
    d = _difficulty(types.make_params(difficulty_spread=0.0), jax.random.key(0), jnp.arange(21).reshape(3, 7))
    np.testing.assert_array_equal(_harden(rows, y, d, MEAN), rows)


def _group_rows(counts: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """(n_g, n_g + 1) rows of the group's summed counts over its own classes plus one column
    for every other class (accuracy and hardening depend on the diagonal only)."""
    total = counts.sum(0)[class_ids]
    inner = total[:, class_ids]
    rows = np.concatenate([inner, (total.sum(1) - inner.sum(1))[:, None]], 1)
    return rows / rows.sum(1, keepdims=True)


@pytest.mark.parametrize("group", range(len(amt.groups())))
def test_mean_accuracy_of_each_real_worker_group_equals_its_mechanical_turk_counts(group):
    """Calibration with the default spread: averaged over 20000 items of each class, a group's
    accuracy is the float64 accuracy of its real counts. Tolerance: 4 standard errors of the
    Monte-Carlo mean (per-item accuracies vary by at most slope x spread; the test also checks
    that the tolerance is below 0.0025, i.e. tight)."""
    class_ids = amt.class_indices(amt.groups()[group])
    want = reference.group_accuracy(amt.worker_counts()[group], class_ids)
    per_class = 20_000
    y = np.repeat(np.arange(len(class_ids)), per_class)
    rows = jnp.asarray(_group_rows(amt.worker_counts()[group], class_ids)[y], jnp.float32)
    d = _difficulty(PARAMS, jax.random.key(100 + group), jnp.arange(len(y)))
    acc = np.asarray(_harden(rows, jnp.asarray(y), d, MEAN))[np.arange(len(y)), y].astype(np.float64)
    stderr = acc.std() / np.sqrt(len(acc))
    assert 4 * stderr < 2.5e-3
    assert abs(acc.mean() - want) < 4 * stderr + 1e-5, (acc.mean(), want, stderr)
    assert acc.std() > 0.05, "items of one class must differ in difficulty"


@pytest.mark.slow
def test_simulated_answers_keep_each_groups_accuracy_of_the_structured_pool():
    """End to end through `init_pool` and `answer`: the pool is the structured_noise pool of
    the same key, and answers on difficulty-drawn items are right as often as its diagonal
    (per group, within 5 binomial standard errors)."""
    wnids = amt.experiment_wnids("imagenet_animal")
    crowd = types.CrowdStats(**{k: jnp.asarray(v) for k, v in amt.crowd_arrays(wnids).items()})
    k, w, per = len(wnids), 8, 600
    pools = {t: workers.init_pool(tiny_static(num_classes=k, num_workers=w, worker_type=t), PARAMS, crowd,
                                  jax.random.key(4)) for t in ("structured_noise", "item_difficulty")}  # fmt: skip
    chex.assert_trees_all_equal(pools["structured_noise"], pools["item_difficulty"])
    conf = pools["item_difficulty"].true_confusion
    worker, y = (jnp.asarray(a.ravel()) for a in np.meshgrid(np.arange(w), np.arange(k), np.arange(per))[:2])
    d = _difficulty(PARAMS, jax.random.key(5), jnp.arange(worker.size))
    z = np.asarray(jax.jit(workers.answer)(conf, worker, y, jax.random.key(6), d, MEAN))
    expected = np.asarray(conf)[np.asarray(worker), np.asarray(y), np.asarray(y)]
    group = np.asarray(crowd.class_group)[np.asarray(y)]
    for g in np.unique(group):
        lanes = group == g
        got, want = (z[lanes] == np.asarray(y)[lanes]).mean(), expected[lanes].mean()
        assert abs(got - want) < 5 * np.sqrt(0.25 / lanes.sum()), (g, got, want)


STATIC = tiny_static(worker_type="item_difficulty")
STEPS = 8
_simulate = jax.jit(sim.simulate, static_argnums=(0, 4))
_batched = jax.jit(jax.vmap(sim.simulate, in_axes=(None, None, None, 0, None)), static_argnums=(0, 4))
KEYS = jax.random.split(jax.random.key(0), 3)


@pytest.fixture(scope="module")
def data():
    return tiny_dataset(STATIC)


@pytest.mark.slow
def test_vmap_over_seeds_equals_a_loop_of_single_runs(data):
    batched = _batched(STATIC, PARAMS, data, KEYS, STEPS)
    looped = jax.tree.map(lambda *x: jnp.stack(x), *[_simulate(STATIC, PARAMS, data, k, STEPS) for k in KEYS])
    chex.assert_trees_all_close(batched, looped, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(batched[0].annotations, looped[0].annotations)


@pytest.mark.slow
def test_spread_zero_runs_exactly_as_structured_noise(data):
    flat = types.make_params(difficulty_spread=0.0)
    got = _batched(STATIC, flat, data, KEYS, STEPS)
    chex.assert_trees_all_equal(got, _batched(tiny_static(worker_type="structured_noise"), flat, data, KEYS, STEPS))
    hard = _batched(STATIC, PARAMS, data, KEYS, STEPS)[0].annotations.label
    assert not np.array_equal(hard, got[0].annotations.label), "the default spread changes the answers"


@pytest.mark.slow
def test_new_difficulty_values_never_retrace_and_chunks_resume_exactly(data):
    """One compiled chunk serves every difficulty setting, and two chunks end where a whole run does."""
    chunk = jax.jit(chex.assert_max_traces(sim.run_chunk, n=1), static_argnums=(0, 6))
    key = jax.random.key(1)
    blank = types.zeros_like_shapes(jax.eval_shape(functools.partial(sim.init_state, STATIC), PARAMS, data, key))
    for p in (types.make_params(difficulty_mean=0.5, difficulty_spread=0.3), types.make_params(difficulty_spread=0.0)):
        state, _ = chunk(STATIC, p, data, blank, key, jnp.int32(0), STEPS // 2)
        assert int(state.step) == STEPS // 2 - 1
    s1, _ = chunk(STATIC, PARAMS, data, blank, key, jnp.int32(0), STEPS // 2)
    s2, _ = chunk(STATIC, PARAMS, data, s1, key, jnp.int32(STEPS // 2), STEPS // 2)
    chex.assert_trees_all_equal(_simulate(STATIC, PARAMS, data, key, STEPS)[0], s2)


@pytest.mark.parametrize("method", list(config.METHODS))
@pytest.mark.slow
def test_every_method_launches_on_the_preset(method, tmp_path, capsys):
    args = ["jaxanno run", "--config=configs/test.py", "--simulation=amt_item_difficulty", f"--method={method}",
            "--config.run.max_steps=3", "--config.run.num_seeds=1", "--quiet", "--noreport",
            f"--workdir={tmp_path}"]  # fmt: skip
    assert cli.run(args) == 0, capsys.readouterr().err
    resolved = json.loads((tmp_path / "config.json").read_text())
    assert resolved["worker"]["type"] == "item_difficulty" and resolved["method"] == method
    assert (tmp_path / "metrics.csv").exists()
