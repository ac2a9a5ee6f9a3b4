"""Numerics: edge cases never produce NaN or inf (prior strength 0 and 1e6, no labels at
all, perfect and adversarial workers, one class dominating, with and without a learner); a
run whose state does become non-finite stops with ``numerical_error`` and the launch fails;
integer settings never wrap; ``run.max_steps`` is exact."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from configs import test as test_config
from jaxanno import config, experiment, runner, sim, types
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


@pytest.mark.slow  # each case compiles a whole simulation
@pytest.mark.parametrize("with_learner", [False, True])
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


@pytest.mark.slow
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


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("budget", 4294967326, "Params.budget=4294967326: expected a whole number in [-2147483648, 2147483647]"),
        ("budget", 2**31, "Params.budget=2147483648"),
        ("max_annotation_per_worker", 4294967302, "Params.max_annotation_per_worker=4294967302"),
        ("budget", np.array([30.7, 1e12]), "Params.budget=30.7: expected a whole number"),
        ("budget", np.array([30, 2**40]), "Params.budget=1099511627776"),
        ("budget", float("nan"), "Params.budget=nan"),
        ("budget", True, "Params.budget=True: expected a number"),
        ("prior_strength", float("inf"), "Params.prior_strength=inf: expected a finite number"),
        ("prior_strength", 1e40, "Params.prior_strength=1e+40: expected a finite number (stored as float32"),
        ("lr_ratio", np.array([1e-4, np.nan]), "Params.lr_ratio=nan"),
        ("risk_threshold", "0.1", "Params.risk_threshold='0.1': expected a number"),
    ],
)
def test_make_params_refuses_what_a_cast_would_change(field, value, fragment):
    with pytest.raises(ValueError) as err:
        types.make_params(**{field: value})
    assert fragment in str(err.value)


def test_make_params_keeps_values_at_the_limits():
    p = types.make_params(host=True, budget=np.array([2**31 - 1, 0, 30.0]), prior_strength=3e38)
    np.testing.assert_array_equal(p.budget, [2**31 - 1, 0, 30])
    assert p.budget.dtype == np.int32 and np.isfinite(p.prior_strength)


_POISONED = {
    "log_epsilon=-1": types.make_params(log_epsilon=-1.0),
    "prior_strength=1e38": types.make_params(prior_strength=1e38),
    "prior_strength=inf": types.make_params().replace(prior_strength=jnp.float32(jnp.inf)),
}


@pytest.mark.slow
@pytest.mark.parametrize("with_learner", [False, True])
@pytest.mark.parametrize("case", sorted(_POISONED))
def test_a_run_that_turns_non_finite_stops_with_numerical_error(case, with_learner):
    static = tiny_static(learner=LEARNER if with_learner else None)
    final, m = _simulate(static, _POISONED[case], tiny_dataset(static), jax.random.key(0), 8)
    assert types.STOP_REASONS[int(final.stop_reason)] == "numerical_error" and bool(final.done)
    active = np.asarray(m.active)
    broke = int(final.step)  # the state of the step that broke is kept, then frozen
    np.testing.assert_array_equal(active, np.arange(8) <= broke)
    np.testing.assert_array_equal(np.asarray(m.step)[broke:], broke)
    assert not np.isfinite(np.asarray(final.em.posterior)).all() or not np.isfinite(final.workers.prior_alpha).all() \
        or not np.isfinite(np.asarray(final.learner.probs)).all()  # fmt: skip
    # the broken step's row never counts a non-finite belief as right
    rows = np.isnan(np.asarray(final.em.posterior)).any(-1)
    assert int(m.aggregate.all.n_correct[broke]) <= int((~rows).sum())


@pytest.fixture(scope="module")
def short_cfg():
    cfg = test_config.get_config()
    cfg.run.chunk_steps = 2
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("max_steps", [1, 3])
def test_max_steps_runs_exactly_that_many_steps(short_cfg, max_steps):
    cfg = short_cfg.copy_and_resolve_references()
    cfg.run.max_steps = max_steps
    problem = experiment.prepare(cfg)
    result = experiment.run(problem)
    assert result.steps_run == max_steps
    steps = np.concatenate([c["step"] for c in result.metrics], axis=-1)
    np.testing.assert_array_equal(steps, np.broadcast_to(np.arange(max_steps), steps.shape))
    np.testing.assert_array_equal(problem.by_grid_seed(jax.device_get(result.state.step)), max_steps - 1)


@pytest.mark.slow
def test_a_launch_with_non_finite_beliefs_fails_and_names_the_settings(short_cfg, tmp_path, capsys, monkeypatch):
    """log_epsilon=-1 is refused by the config rules; skipping them shows what the guard does."""
    monkeypatch.setattr(config, "validate", lambda cfg: None)
    cfg = short_cfg.copy_and_resolve_references()
    cfg.run.max_steps, cfg.optimizer.log_epsilon = 3, -1.0
    assert runner.run_launch(cfg, str(tmp_path), quiet=True, report=False) == 3
    err = capsys.readouterr().err
    assert "numerical_error" in err and "optimizer.log_epsilon" in err and "learner.lr_ratio" in err
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert (runs["stop_reason"] == "numerical_error").all()
    assert (pd.read_csv(tmp_path / "metrics.csv")["aggregate/all/top1"] < 1.0).all()
