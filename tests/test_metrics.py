"""Top-k and ECE against the reference's argsort and binning loops."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxanno import metrics
from tests import reference


@pytest.mark.parametrize("seed", range(3))
def test_topk_and_ece_match_reference(seed):
    rng = np.random.default_rng(seed)
    belief = rng.dirichlet(np.ones(12) * 0.3, size=200).astype(np.float32)
    belief[:10] = 1.0 / 12  # uniform rows: ties ranked as the reference's reversed argsort
    labels = rng.integers(0, 12, 200)
    confident = rng.random(200) < 0.4
    got = metrics.belief_metrics(jnp.asarray(belief), jnp.asarray(labels), jnp.asarray(confident))
    for sub, mask in [(got.all, np.ones(200, bool)), (got.confident, confident), (got.unconfident, ~confident)]:
        for k, value in zip((1, 5, 10), (sub.top1, sub.top5, sub.top10)):
            np.testing.assert_allclose(value, reference.topk_accuracy(belief[mask], labels[mask], k).mean(), rtol=1e-6)
        np.testing.assert_allclose(sub.ece, reference.ece(belief[mask], labels[mask]), rtol=1e-5, atol=1e-6)
        assert int(sub.n_items) == mask.sum()
        assert int(sub.n_correct) == reference.topk_accuracy(belief[mask], labels[mask], 1).sum()


@pytest.mark.slow
def test_metrics_of_an_empty_subset_are_nan_not_made_up():
    belief = jnp.full((5, 3), 1 / 3)
    m = metrics.belief_metrics(belief, jnp.zeros(5, jnp.int32), jnp.zeros(5, bool))
    assert np.isnan(m.confident.top1) and np.isnan(m.confident.ece)
    assert int(m.confident.n_items) == 0
    assert np.isfinite(m.all.top1)


def test_uniform_belief_predicts_the_last_class_like_the_reference():
    belief = jnp.full((4, 3), 1 / 3)
    ranks = metrics.true_class_rank(belief, jnp.asarray([0, 1, 2, 2]))
    np.testing.assert_array_equal(ranks, [2, 1, 0, 0])


@pytest.mark.parametrize(
    "broken_row",
    [np.full(3, np.nan), np.array([np.nan, 0.5, 0.5]), np.array([np.inf, 0.0, 0.0]), np.array([1.0, -np.inf, 0.0])],
    ids=["all_nan", "one_nan", "inf", "minus_inf"],
)
@pytest.mark.slow
def test_a_non_finite_belief_is_never_counted_correct(broken_row):
    """NaN compares False with everything, which would rank the true class first."""
    belief = np.tile(np.asarray([0.6, 0.3, 0.1], np.float32), (4, 1))
    belief[1] = broken_row
    labels = jnp.asarray([0, 0, 1, 2])
    ranks = np.asarray(metrics.true_class_rank(jnp.asarray(belief), labels))
    np.testing.assert_array_equal(ranks, [0, metrics.NOT_RANKED, 1, 2])
    m = metrics.belief_metrics(jnp.asarray(belief), labels, jnp.asarray([True, True, False, False]))
    assert float(m.all.top1) == 0.25 and float(m.all.top5) == 0.75 and float(m.all.top10) == 0.75
    assert int(m.all.n_correct) == 1 and int(m.confident.n_correct) == 1
    # ECE counts the broken row as confidence 1 and wrong; the others as the reference does.
    want = reference.ece(np.delete(belief, 1, 0), np.asarray([0, 1, 2])) * 3 / 4 + 1 / 4
    np.testing.assert_allclose(float(m.all.ece), want, rtol=1e-6)
    assert float(m.confident.ece) == pytest.approx((abs(1 - 0.6) + abs(0 - 1)) / 2)
    assert float(m.unconfident.ece) == pytest.approx(reference.ece(belief[2:], np.asarray([1, 2])))
