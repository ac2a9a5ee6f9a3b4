"""EM and aggregation against float64 NumPy references and crowd-kit."""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxanno import dawid_skene, em, ops, types
from tests import reference
from tests.conftest import annotation_state, random_annotations, tiny_static

N, A, W, K = 30, 3, 5, 4


def _static(**em_fields):
    return tiny_static(num_items=N, num_workers=W, num_classes=K, em=types.EMStatic(**em_fields))


def _problem(seed, accuracy=0.75):
    """Random workers that are right with prob `accuracy`, random positive priors."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, K, N)
    workers, labels = random_annotations(rng, N, A, W, K, fill=0.8)
    right = rng.random((N, A)) < accuracy
    labels = np.where(workers >= 0, np.where(right, truth[:, None], labels), -1).astype(np.int32)
    prior = rng.uniform(0.5, 3.0, size=(W, K, K)) + 4.0 * np.eye(K)
    return workers, labels, prior.astype(np.float32)


_run = jax.jit(em.run, static_argnums=0)


def _em(static, params, workers, labels, prior, learner=None):
    ann = annotation_state(workers, labels, W)
    log_learner = None if learner is None else jnp.log(jnp.asarray(learner, jnp.float32) + 1e-8)
    counts0 = jnp.zeros((W, K, K), jnp.float32)
    log_prior = jnp.full((K,), -np.log(K), jnp.float32)
    return ann, _run(static, params, ann, jnp.asarray(prior), counts0, log_prior, log_learner, jax.random.key(0))


@pytest.mark.parametrize("block", [0] + [pytest.param(b, marks=pytest.mark.slow) for b in (7, 16)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_posterior_matches_numpy_reference(seed, block, params):
    workers, labels, prior = _problem(seed)
    rng = np.random.default_rng(seed + 10)
    learner = rng.dirichlet(np.ones(K), size=N)
    static = _static(item_block=block)
    ann = annotation_state(workers, labels, W)
    got = em.posterior(
        static,
        params,
        ann,
        jnp.asarray(prior),
        jnp.full((K,), -np.log(K)),
        jnp.log(jnp.asarray(learner, jnp.float32) + 1e-8),
    )
    want = reference.softmax(reference.log_belief(prior, workers, labels, learner=learner))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got).sum(-1), 1.0, rtol=1e-6)


# 7 does not divide N = 30: the last block overlaps
@pytest.mark.parametrize("block", [0, pytest.param(7, marks=pytest.mark.slow)])
@pytest.mark.parametrize("criterion", ["soft", "hard"])
@pytest.mark.parametrize("seed", [0, 3])
def test_hard_m_step_em_matches_reference(criterion, seed, block, params):
    workers, labels, prior = _problem(seed)
    static = _static(criterion=criterion, m_step="hard", item_block=block)
    _, result = _em(static, params, workers, labels, prior)
    want_counts, want_iters = reference.em(prior, workers, labels, criterion=criterion, m_step="hard")
    np.testing.assert_array_equal(result.counts, want_counts)
    assert int(result.iterations) == want_iters


@pytest.mark.parametrize("block", [0, 7])
def test_soft_m_step_em_matches_reference(block, params):
    workers, labels, prior = _problem(5)
    rng = np.random.default_rng(7)
    learner = rng.dirichlet(np.ones(K) * 2, size=N)
    static = _static(criterion="soft", m_step="soft", item_block=block)
    _, result = _em(static, params, workers, labels, prior, learner)
    want_counts, want_iters = reference.em(prior, workers, labels, m_step="soft", learner=learner)
    np.testing.assert_allclose(result.counts, want_counts, rtol=1e-4, atol=1e-4)
    assert int(result.iterations) == want_iters


def test_em_is_skipped_without_labels(params):
    empty = np.full((N, A), -1, np.int32)
    _, prior = None, np.ones((W, K, K), np.float32)
    _, result = _em(_static(), params, empty, empty, prior)
    assert int(result.iterations) == 0
    np.testing.assert_array_equal(result.counts, 0.0)


def test_vmapped_em_freezes_converged_lanes_like_single_runs(params):
    static = _static(criterion="soft", max_em_steps=6)
    problems = [_problem(s, accuracy=a) for s, a in [(0, 0.95), (1, 0.4), (2, 0.7)]]
    singles = [_em(static, params, *p)[1] for p in problems]
    anns = [annotation_state(wk, lb, W) for wk, lb, _ in problems]
    batched_ann = jax.tree.map(lambda *x: jnp.stack(x), *anns)
    priors = jnp.stack([jnp.asarray(p) for _, _, p in problems])

    def one(ann, prior):
        return em.run(
            static, params, ann, prior, jnp.zeros((W, K, K)), jnp.full((K,), -np.log(K)), None, jax.random.key(0)
        )

    batched = jax.jit(jax.vmap(one))(batched_ann, priors)
    assert len({int(s.iterations) for s in singles}) > 1, "the lanes should converge at different iterations"
    np.testing.assert_array_equal(batched.iterations, [int(s.iterations) for s in singles])
    np.testing.assert_array_equal(batched.counts, np.stack([s.counts for s in singles]))


def test_run_does_not_retrace_for_new_params(params):
    static = _static()
    workers, labels, prior = _problem(0)
    ann = annotation_state(workers, labels, W)

    def solve(p, a):
        return em.run(static, p, ann, a, jnp.zeros((W, K, K)), jnp.full((K,), -np.log(K)), None, jax.random.key(0))

    fn = jax.jit(chex.assert_max_traces(solve, n=1))
    fn(params, jnp.asarray(prior))
    fn(types.make_params(em_epsilon=1e-5, prior_strength=3.0), jnp.asarray(prior) * 2)


_solve_jit = jax.jit(em.solve, static_argnums=0, static_argnames="with_trace")


def _solve(static, params, workers, labels, prior, **kw):
    ann = annotation_state(workers, labels, W)
    zero, log_prior = jnp.zeros((W, K, K), jnp.float32), jnp.full((K,), -np.log(K), jnp.float32)
    return ann, _solve_jit(static, params, ann, jnp.asarray(prior), zero, log_prior, None, jax.random.key(0), **kw)


@pytest.mark.parametrize("m_step, criterion", [("hard", "soft"), ("hard", "hard"), ("soft", "soft")])
def test_solve_matches_the_numpy_reference_and_keeps_the_last_posterior(m_step, criterion, params):
    """`solve` runs the same iterations as `run`: checked against the float64 reference
    (counts, iterations), with the posterior of its last E-step and every statistic kept."""
    workers, labels, prior = _problem(3)
    static = _static(criterion=criterion, m_step=m_step)
    ann, got = _solve(static, params, workers, labels, prior, with_trace=True)
    want_counts, want_iters = reference.em(prior, workers, labels, criterion=criterion, m_step=m_step)
    iters = int(got.iterations)
    assert iters == want_iters and 1 < iters < static.em.max_em_steps
    np.testing.assert_allclose(got.counts, want_counts, rtol=1e-4, atol=1e-4)
    # the last E-step used the counts of the iteration before: replay the reference one short
    before, _ = reference.em(prior, workers, labels, max_steps=iters - 1, criterion=criterion, m_step=m_step)
    want_post = reference.softmax(reference.log_belief(prior + before, workers, labels))
    np.testing.assert_allclose(got.posterior, want_post, rtol=1e-4, atol=1e-5)
    history, trace = np.asarray(got.history), jax.device_get(got.trace)
    assert np.isfinite(history[:iters]).all() and np.isnan(history[iters:]).all()
    np.testing.assert_array_equal(trace.statistic, history)
    np.testing.assert_array_equal(trace.active, np.arange(static.em.max_em_steps) < iters)
    assert trace.label_changes[0] == (workers >= 0).any(1).sum() and (trace.label_changes[iters:] == 0).all()
    first = reference.log_belief(prior, workers, labels)  # uniform class prior: log p(labels) = logsumexp
    annotated = (workers >= 0).any(1)
    want_ll = np.log(np.exp(first - first.max(1, keepdims=True)).sum(1)) + first.max(1)
    np.testing.assert_allclose(trace.log_likelihood[0], want_ll[annotated].sum(), rtol=1e-5)


def test_solve_iteration_limit_is_traced_and_gold_is_clamped():
    workers, labels, prior = _problem(1, accuracy=0.6)
    static = _static(criterion="soft", m_step="soft", max_em_steps=8)
    params = types.make_params(em_epsilon=1e-6)  # soft counts move for several iterations
    ann = annotation_state(workers, labels, W)
    zero, log_prior = jnp.zeros((W, K, K), jnp.float32), jnp.full((K,), -np.log(K), jnp.float32)

    def solve(limit, gold):
        return em.solve(static, params, ann, jnp.asarray(prior), zero, log_prior, None, jax.random.key(0), gold=gold,
                        max_iterations=limit)  # fmt: skip

    fn = jax.jit(chex.assert_max_traces(solve, n=1))
    no_gold = jnp.full((N,), -1, jnp.int32)
    natural = int(fn(jnp.int32(100), no_gold).iterations)
    assert natural > 2
    for limit in (1, 2, natural):
        res = fn(jnp.int32(limit), no_gold)
        want_counts, _ = reference.em(prior, workers, labels, max_steps=limit, eps=1e-6, m_step="soft")
        assert int(res.iterations) == limit
        np.testing.assert_allclose(res.counts, want_counts, rtol=1e-4, atol=1e-4)
    gold = no_gold.at[:5].set(jnp.arange(5) % K)
    clamped = fn(jnp.int32(100), gold)
    np.testing.assert_array_equal(clamped.posterior[:5], np.eye(K)[np.arange(5) % K])


def test_solve_skips_an_empty_problem_and_returns_the_start_posterior(params):
    empty = np.full((N, A), -1, np.int32)
    start = jax.nn.softmax(jnp.asarray(np.random.default_rng(0).normal(size=(N, K)), jnp.float32))
    _, res = _solve(_static(), params, empty, empty, np.ones((W, K, K), np.float32), start_posterior=start)
    assert int(res.iterations) == 0 and np.isnan(res.history).all() and res.trace is None
    np.testing.assert_array_equal(res.posterior, start)


def test_tie_break_picks_only_maxima_and_all_of_them():
    scores = jnp.array([[0.0, 1.0, 1.0, -2.0, 1.0]] * 3000)  # three tied maxima per row
    salts = np.random.default_rng(0).integers(0, 2**32, 4, dtype=np.uint64).astype(np.uint32)
    picks = np.concatenate([np.asarray(ops.tie_broken_argmax(scores, jnp.uint32(s))) for s in salts])
    assert set(picks.tolist()) == {1, 2, 4}
    freq = np.bincount(picks, minlength=5)[[1, 2, 4]] / picks.size
    np.testing.assert_allclose(freq, 1 / 3, atol=0.015)  # 12000 draws: std 0.004
    again = ops.tie_broken_argmax(scores, jnp.uint32(3))
    np.testing.assert_array_equal(again, ops.tie_broken_argmax(scores, jnp.uint32(3)))


def test_majority_vote_matches_reference():
    rng = np.random.default_rng(4)
    workers, labels = random_annotations(rng, N, A, W, K, fill=0.5)
    ann = annotation_state(workers, labels, W)
    want = reference.majority_vote(labels, workers >= 0, K)
    np.testing.assert_allclose(dawid_skene.majority_vote(ann, K), want, rtol=1e-6)


def _crowdkit_problem(seed, n=40, w=8, k=3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    skill = rng.uniform(0.45, 0.95, w)
    rows = []
    for i in range(n):
        for j in rng.choice(w, size=rng.integers(2, 5), replace=False):
            z = truth[i] if rng.random() < skill[j] else rng.integers(0, k)
            rows.append((i, j, int(z)))
    return pd.DataFrame(rows, columns=["task", "worker", "label"]), n, w, k


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_classic_mode_reproduces_crowdkit_posteriors(seed):
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    df, n, w, k = _crowdkit_problem(seed)
    want = crowdkit.DawidSkene(n_iter=100, tol=1e-5).fit_predict_proba(df).sort_index()
    want = want[list(range(k))]  # crowd-kit orders label columns by first appearance
    a = int(df.groupby("task").size().max())
    workers = np.full((n, a), -1, np.int32)
    labels = np.full((n, a), -1, np.int32)
    for task, grp in df.groupby("task"):
        workers[task, : len(grp)] = grp["worker"].to_numpy()
        labels[task, : len(grp)] = grp["label"].to_numpy()
    static = dataclasses.replace(
        tiny_static(num_items=n, num_workers=w, num_classes=k, max_annotations=a),
        em=types.EMStatic(
            m_step="soft", criterion="elbo", class_prior="learned", init="majority_vote", max_em_steps=100
        ),
    )
    params = types.make_params(prior_strength=0.0, log_epsilon=0.0, em_epsilon=1e-5)
    ann = annotation_state(workers, labels, w)
    zero = jnp.zeros((w, k, k), jnp.float32)
    counts, log_prior = em.initial_counts(static, ann, zero, jnp.full((k,), -np.log(k)), jax.random.key(0))
    solve = jax.jit(functools.partial(em.solve, static))
    full = solve(params, ann, zero, counts, log_prior, None, jax.random.key(1))
    iters = int(full.iterations)
    assert 2 < iters < 100
    np.testing.assert_allclose(full.posterior, want.to_numpy(), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(full.posterior).argmax(-1), want.to_numpy().argmax(-1))
    # crowd-kit reports the posterior of its last E-step, i.e. with the counts of the
    # iteration before: a solve stopped one iteration short has exactly those counts.
    short = solve(params, ann, zero, counts, log_prior, None, jax.random.key(1), max_iterations=jnp.int32(iters - 1))
    assert int(short.iterations) == iters - 1
    again = em.posterior(static, params, ann, short.counts, short.log_class_prior, None)
    np.testing.assert_allclose(again, full.posterior, rtol=1e-5, atol=1e-6)
    history = np.asarray(full.history)
    assert np.isfinite(history[:iters]).all() and np.isnan(history[iters:]).all()


@pytest.mark.slow
def test_blocked_e_pass_equals_whole_array_pass(params):
    """Blocks of 7 over 30 items: same labels, posterior, counts and evidence (no exact ties here:
    a blocked pass breaks those differently)."""
    workers, labels, prior = _problem(8, accuracy=0.5)
    ann = annotation_state(workers, labels, W)
    table = dawid_skene.likelihood_table(jnp.asarray(prior), params.log_epsilon)
    log_prior = jnp.full((K,), -np.log(K))
    learner = jnp.log(jnp.asarray(np.random.default_rng(2).dirichlet(np.ones(K), N), jnp.float32))
    outs = []
    for block in (0, 7):
        for m_step in ("hard", "soft"):
            out = dawid_skene.e_pass(
                _static(item_block=block),
                table,
                ann,
                log_prior,
                learner,
                m_step=m_step,
                salt=jnp.uint32(11),
                with_evidence=True,
            )
            outs.append(out)
    for whole, blocked in zip(outs[:2], outs[2:]):
        np.testing.assert_array_equal(whole.label_hat, blocked.label_hat)
        np.testing.assert_allclose(whole.posterior, blocked.posterior, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(whole.counts, blocked.counts, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(whole.posterior_sum, blocked.posterior_sum, rtol=1e-5)
        np.testing.assert_allclose(whole.log_evidence, blocked.log_evidence, rtol=1e-5, atol=1e-6)
