"""Edge cases never produce NaN or inf: prior strength 0 and 1e6, no labels at all,
perfect and adversarial workers, one class dominating (with and without a learner)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from jaxanno import sim, types
from tests.conftest import tiny_dataset, tiny_learner, tiny_static

LEARNER = tiny_learner(max_epochs=10)
_simulate = jax.jit(sim.simulate, static_argnums=(0, 4))


def _assert_finite(final, metrics):
    for leaf in jax.tree.leaves(final):
        if np.issubdtype(leaf.dtype, np.floating) and leaf.size:
            finite = np.isfinite(np.asarray(leaf)) | np.isposinf(np.asarray(leaf))  # best_loss may be +inf
            assert finite.all()
    post = np.asarray(final.em.posterior)
    np.testing.assert_allclose(post.sum(-1), 1.0, rtol=1e-5)
    for name in ("all", "confident", "unconfident"):
        sub = getattr(metrics.aggregate, name)
        defined = np.asarray(sub.n_items) > 0
        assert np.isfinite(np.asarray(sub.top1)[defined]).all()
        assert np.isfinite(np.asarray(sub.ece)[defined]).all()
        assert np.isnan(np.asarray(sub.top1)[~defined]).all()


def _dominated(static):
    data = tiny_dataset(static)
    labels = np.asarray(data.labels).copy()
    labels[: static.num_items] = np.where(np.arange(static.num_items) % 10 == 0, labels[: static.num_items], 0)
    return data.replace(labels=jax.device_put(labels))


@pytest.mark.parametrize("with_learner", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("worker_type", ["structured_noise", "perfect", "adversarial"])
def test_no_nan_at_the_edges(worker_type, with_learner):
    static = tiny_static(worker_type=worker_type, learner=LEARNER if with_learner else None)
    data = tiny_dataset(static)
    cases = [
        (types.make_params(prior_strength=0.0), data),
        (types.make_params(prior_strength=1e6), data),
        (types.make_params(), _dominated(static)),
        (types.make_params(budget=0), data),  # no annotations ever
    ]
    for params, d in cases:
        final, metrics = _simulate(static, params, d, jax.random.key(0), 8)
        _assert_finite(final, metrics)
    assert int(final.annotations.item_count.sum()) == 0 and types.STOP_REASONS[int(final.stop_reason)] == "budget_spent"


def test_zero_prior_strength_with_majority_vote_start_recovers_perfect_labels():
    """Without a prior, EM must start from majority vote (from the prior it has no way to
    tell classes apart and may settle on a permutation, as any unanchored DS would)."""
    static = dataclasses.replace(
        tiny_static(worker_type="perfect"), em=types.EMStatic(criterion="hard", init="majority_vote")
    )
    data = tiny_dataset(static)
    final, m = _simulate(static, types.make_params(prior_strength=0.0), data, jax.random.key(1), 30)
    labelled = np.asarray(final.annotations.item_count) > 0
    truth = np.asarray(data.labels[: static.num_items])
    assert (np.asarray(final.em.posterior).argmax(-1)[labelled] == truth[labelled]).all()
