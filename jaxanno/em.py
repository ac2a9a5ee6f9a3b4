"""Dawid-Skene aggregation and EM in log space over fixed-shape annotation slots.

Model: worker j labels an item of true class y as z with probability
p(z | y, j) = alpha_j[y, z] / sum_z' alpha_j[y, z'], where alpha_j = prior pseudo-counts +
counts. The posterior of item i is

  log b_i(y) = log P(y) + sum_a log(p(z_ia | y, j_ia) + log_eps) + log(q_i(y) + 1e-8)

with q the learner's probabilities when a learner exists. EM, run at every online step:
reset counts (or keep them, with warm start), then up to `max_em_steps` iterations of
E-step, M-step, convergence statistic; a converged lane stays frozen, so the loop behaves
the same under `vmap`.

Formulation: the (W, K, K) log table is laid out as (W * K, K) rows indexed by
``worker * K + label``, and the log-likelihood adds one (N, K) row gather per slot. That is
an order of magnitude faster than gathering an (N, A, K) tensor on CPU and keeps the
E-step a single memory-bound pass on GPU.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxanno.types import AnnotationState, Params, Static

TINY_COUNT = 1e-10  # pseudo-counts are clipped here before normalising (as crowd-kit)
LEARNER_LOG_EPS = 1e-8  # added inside log q(y), as the reference does
_PROB_FLOOR = 1e-10  # entropy term of the ELBO


class EMTrace(NamedTuple):
    """Per-iteration diagnostics of one EM solve, each (max_em_steps,)."""

    statistic: jax.Array  # f32, the convergence statistic of the criterion
    log_likelihood: jax.Array  # f32, observed-label log-likelihood before the M-step
    label_changes: jax.Array  # i32, items whose argmax changed since the last iteration
    active: jax.Array  # bool, the iteration ran (False once converged)


class EMResult(NamedTuple):
    counts: jax.Array  # (W, K, K) f32, final (soft) counts
    log_class_prior: jax.Array  # (K,) f32
    iterations: jax.Array  # () i32, E-steps run
    trace: Optional[EMTrace]


def confusion(alpha: jax.Array) -> jax.Array:
    """(W, K, K) expected confusion p(z | y, j): rows of max(alpha, 1e-10), normalised."""
    alpha = jnp.maximum(alpha, TINY_COUNT)
    return alpha / alpha.sum(-1, keepdims=True)


def likelihood_table(alpha: jax.Array, log_eps: jax.Array) -> jax.Array:
    """(W * K, K) table whose row ``j * K + z`` holds log(p(z | y, j) + log_eps) over y."""
    w, k, _ = alpha.shape
    log_conf = jnp.log(confusion(alpha) + log_eps)
    return jnp.swapaxes(log_conf, 1, 2).reshape(w * k, k)


def slot_codes(annotations: AnnotationState, num_classes: int) -> jax.Array:
    """(N, A) i32 row index ``worker * K + label`` of every slot (0 on empty slots)."""
    codes = annotations.worker * num_classes + annotations.label
    return jnp.where(annotations.valid, codes, 0)


def log_likelihood(table: jax.Array, codes: jax.Array, valid: jax.Array) -> jax.Array:
    """(N, K) sum over filled slots of log p(z | y, j): one (N, K) row gather per slot."""
    ll = jnp.zeros((codes.shape[0], table.shape[1]), table.dtype)
    for a in range(codes.shape[1]):  # A is static and small: unrolled at trace time
        rows = jnp.take(table, codes[:, a], axis=0)
        ll = ll + jnp.where(valid[:, a, None], rows, 0.0)
    return ll


def learner_log_prior(probs: Optional[jax.Array], num_items: int) -> Optional[jax.Array]:
    """(N, K) log(q + 1e-8) of the learner's item rows, or None without a learner."""
    if probs is None:
        return None
    return jnp.log(probs[:num_items] + LEARNER_LOG_EPS)


def log_belief(
    table: jax.Array,
    codes: jax.Array,
    valid: jax.Array,
    log_class_prior: jax.Array,
    log_learner: Optional[jax.Array],
) -> jax.Array:
    """(N, K) unnormalised log posterior (the E-step)."""
    out = log_likelihood(table, codes, valid) + log_class_prior
    if log_learner is not None:
        out = out + log_learner
    return out


def majority_vote(annotations: AnnotationState, num_classes: int) -> jax.Array:
    """(N, K) normalised vote counts; uniform for items without labels."""
    votes = jax.nn.one_hot(annotations.label, num_classes) * annotations.valid[..., None]
    votes = votes.sum(1)
    total = votes.sum(-1, keepdims=True)
    uniform = jnp.full_like(votes, 1.0 / num_classes)
    return jnp.where(total > 0, votes / jnp.where(total > 0, total, 1.0), uniform)


def first_argmax(scores: jax.Array) -> jax.Array:
    """(N,) i32 index of the first maximum of each row (as np.argmax).

    Two single-operand reductions (max, then min over the tied indices) instead of XLA's
    variadic arg-max reduction, which is several times slower on CPU.
    """
    k = scores.shape[-1]
    is_max = scores >= scores.max(-1, keepdims=True)
    first = jnp.where(is_max, jnp.arange(k, dtype=jnp.int32), k).min(-1)
    return jnp.minimum(first, k - 1)


def _hash32(x: jax.Array) -> jax.Array:
    """A cheap uint32 mixing function (lowbias32)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def tie_broken_argmax(scores: jax.Array, salt: jax.Array) -> jax.Array:
    """(N,) argmax over the last axis, exact ties broken uniformly at random (seeded by `salt`).

    The reference adds tiny noise before its arg-max. Here every (row, class) cell gets a
    hashed 32-bit priority and the tied class with the smallest priority wins: the same
    uniform choice without drawing an (N, K) random array, and with single-operand
    reductions only (see `first_argmax`).
    """
    n, k = scores.shape
    cell = jnp.arange(n, dtype=jnp.uint32)[:, None] * jnp.uint32(k) + jnp.arange(k, dtype=jnp.uint32)
    priority = _hash32(_hash32(cell ^ salt) + salt)
    is_max = scores >= scores.max(-1, keepdims=True)
    best = jnp.where(is_max, priority, jnp.uint32(0xFFFFFFFF)).min(-1, keepdims=True)
    winner = jnp.where(is_max & (priority == best), jnp.arange(k, dtype=jnp.int32), k).min(-1)
    return jnp.minimum(winner, k - 1)


def hard_counts(
    annotations: AnnotationState, label_hat: jax.Array, num_workers: int, num_classes: int
) -> jax.Array:
    """(W, K, K) counts[j, y_hat_i, z] over every filled slot (the reference's M-step)."""
    k = num_classes
    flat = (annotations.worker * k + label_hat[:, None]) * k + annotations.label
    flat = jnp.where(annotations.valid, flat, num_workers * k * k)  # out of range: dropped
    counts = jnp.zeros(num_workers * k * k, jnp.float32)
    counts = counts.at[flat.ravel()].add(1.0, mode="drop")
    return counts.reshape(num_workers, k, k)


def soft_counts(
    annotations: AnnotationState, posterior: jax.Array, num_workers: int, num_classes: int
) -> jax.Array:
    """(W, K, K) expected counts sum_i b_i(y) [j, z] (the classic Dawid-Skene M-step)."""
    k = num_classes
    codes = annotations.worker * k + annotations.label
    codes = jnp.where(annotations.valid, codes, num_workers * k)
    by_code = jnp.zeros((num_workers * k, k), jnp.float32)  # rows (j, z), columns y
    for a in range(codes.shape[1]):
        by_code = by_code.at[codes[:, a]].add(posterior, mode="drop")
    return jnp.swapaxes(by_code.reshape(num_workers, k, k), 1, 2)


def mean_label_likelihood(
    annotations: AnnotationState, label_hat: jax.Array, alpha: jax.Array
) -> jax.Array:
    """() mean over filled slots of p(z | y_hat_i, j): the reference's 'soft' statistic."""
    w, k, _ = alpha.shape
    flat = (annotations.worker * k + label_hat[:, None]) * k + annotations.label
    p = confusion(alpha).reshape(-1)[jnp.where(annotations.valid, flat, 0)]
    n = annotations.valid.sum()
    return jnp.where(annotations.valid, p, 0.0).sum() / jnp.maximum(n, 1)


def _annotated(annotations: AnnotationState) -> jax.Array:
    return annotations.valid.any(-1)


def learned_class_prior(posterior: jax.Array, annotated: jax.Array) -> jax.Array:
    """(K,) log of the mean posterior over annotated items (crowd-kit's class prior)."""
    mean = (posterior * annotated[:, None]).sum(0) / jnp.maximum(annotated.sum(), 1)
    return jnp.log(jnp.maximum(mean, _PROB_FLOOR))


def elbo(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    posterior: jax.Array,
    alpha: jax.Array,
    log_class_prior: jax.Array,
) -> jax.Array:
    """() crowd-kit's evidence lower bound per label (its convergence statistic).

    As crowd-kit computes it, the class prior enters once per label rather than once per
    item; reproducing that is what makes the 'elbo' criterion stop where crowd-kit stops.
    """
    codes, valid = slot_codes(annotations, static.num_classes), annotations.valid
    table = likelihood_table(alpha, params.log_epsilon)
    n_labels = valid.sum(-1, keepdims=True).astype(jnp.float32)
    joint = log_likelihood(table, codes, valid) + n_labels * log_class_prior
    q = jnp.where(_annotated(annotations)[:, None], posterior, 0.0)
    entropy = -(q * jnp.log(jnp.maximum(q, _PROB_FLOOR))).sum()
    return ((q * joint).sum() + entropy) / jnp.maximum(valid.sum(), 1)


def _observed_log_likelihood(log_b: jax.Array, annotated: jax.Array, log_prior_only: jax.Array) -> jax.Array:
    """() sum over annotated items of log p(labels_i), marginalising the true class."""
    per_item = jax.nn.logsumexp(log_b, -1) - jax.nn.logsumexp(log_prior_only, -1)
    return jnp.where(annotated, per_item, 0.0).sum()


def _m_step(static: Static, annotations: AnnotationState, log_b: jax.Array, posterior: jax.Array, salt: jax.Array) -> jax.Array:
    w, k = static.num_workers, static.num_classes
    if static.em.m_step == "soft":
        return soft_counts(annotations, posterior, w, k)
    return hard_counts(annotations, tie_broken_argmax(log_b, salt), w, k)


def _statistic(
    static: Static, params: Params, annotations: AnnotationState, label_hat: jax.Array,
    posterior: jax.Array, alpha: jax.Array, log_class_prior: jax.Array,
) -> jax.Array:
    """() the scalar whose change decides convergence ('hard' uses labels instead)."""
    if static.em.criterion == "elbo":
        return elbo(static, params, annotations, posterior, alpha, log_class_prior)
    return mean_label_likelihood(annotations, label_hat, alpha)


def _converged(static: Static, params: Params, stat, prev_stat, label_hat, prev_hat) -> jax.Array:
    if static.em.criterion == "hard":
        return jnp.all(label_hat == prev_hat)
    if static.em.criterion == "elbo":
        return stat - prev_stat < params.em_epsilon
    return jnp.abs(stat - prev_stat) < params.em_epsilon


def initial_counts(
    static: Static,
    annotations: AnnotationState,
    previous_counts: jax.Array,
    log_class_prior: jax.Array,
    key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Counts and log class prior EM starts from: zero (reference), warm, or majority vote."""
    w, k = static.num_workers, static.num_classes
    if static.em.init == "majority_vote":
        mv = majority_vote(annotations, k)
        if static.em.class_prior == "learned":
            log_class_prior = learned_class_prior(mv, _annotated(annotations))
        salt = jax.random.bits(key, (), jnp.uint32)
        return _m_step(static, annotations, jnp.log(mv), mv, salt), log_class_prior
    if static.em.warm_start:
        return previous_counts, log_class_prior
    return jnp.zeros((w, k, k), jnp.float32), log_class_prior


def run_em(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    counts: jax.Array,
    log_class_prior: jax.Array,
    log_learner: Optional[jax.Array],
    key: jax.Array,
    with_trace: bool = False,
) -> EMResult:
    """Up to `max_em_steps` EM iterations from `counts`; converged lanes stay frozen.

    Args:
      annotations: the filled slots (N, A).
      prior_alpha: (W, K, K) prior pseudo-counts (strength applied).
      counts: (W, K, K) starting counts (see `initial_counts`).
      log_class_prior: (K,) starting log P(y).
      log_learner: (N, K) learner log-prior used in every E-step, or None.
      key: seeds the random tie-breaks of the hard M-step.
      with_trace: also return per-iteration diagnostics (static).
    Returns:
      `EMResult`; with no filled slot at all, EM is skipped (0 iterations).
    """
    k = static.num_classes
    codes, valid = slot_codes(annotations, k), annotations.valid
    annotated = _annotated(annotations)
    learned = static.em.class_prior == "learned"

    def iteration(carry, i):
        counts, log_prior, prev_stat, prev_hat, done, iters = carry
        alpha = prior_alpha + counts
        log_b = log_belief(likelihood_table(alpha, params.log_epsilon), codes, valid, log_prior, log_learner)
        posterior = jax.nn.softmax(log_b, -1)
        label_hat = first_argmax(log_b)
        new_prior = learned_class_prior(posterior, annotated) if learned else log_prior
        salt = jax.random.bits(jax.random.fold_in(key, i), (), jnp.uint32)
        new_counts = _m_step(static, annotations, log_b, posterior, salt)
        stat = _statistic(static, params, annotations, label_hat, posterior, prior_alpha + new_counts, new_prior)
        now = (i > 0) & _converged(static, params, stat, prev_stat, label_hat, prev_hat)
        trace = None
        if with_trace:
            prior_only = log_prior if log_learner is None else log_prior + log_learner
            trace = EMTrace(
                statistic=stat,
                log_likelihood=_observed_log_likelihood(log_b, annotated, jnp.broadcast_to(prior_only, log_b.shape)),
                label_changes=jnp.where(i > 0, (label_hat != prev_hat).sum(), annotated.sum()).astype(jnp.int32),
                active=~done,
            )
        keep = lambda old, new: jnp.where(done, old, new)  # noqa: E731  frozen once converged
        carry = (
            keep(counts, new_counts), keep(log_prior, new_prior), keep(prev_stat, stat),
            keep(prev_hat, label_hat), done | now, iters + (~done).astype(jnp.int32),
        )
        return carry, trace

    start = (
        counts, log_class_prior, jnp.float32(0), jnp.zeros(static.num_items, jnp.int32),
        ~valid.any(), jnp.int32(0),
    )
    (counts, log_prior, _, _, _, iters), trace = jax.lax.scan(
        iteration, start, jnp.arange(static.em.max_em_steps)
    )
    return EMResult(counts=counts, log_class_prior=log_prior, iterations=iters, trace=trace)


def posterior(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    alpha: jax.Array,
    log_class_prior: jax.Array,
    log_learner: Optional[jax.Array],
) -> jax.Array:
    """(N, K) posterior of the configured aggregator; rows sum to 1.

    'bayes': the Dawid-Skene posterior with pseudo-counts `alpha` (prior + counts).
    'mj': majority vote (the learner and worker model are ignored, as in the reference).
    """
    if static.em.aggregator == "mj":
        return majority_vote(annotations, static.num_classes)
    table = likelihood_table(alpha, params.log_epsilon)
    codes = slot_codes(annotations, static.num_classes)
    return jax.nn.softmax(log_belief(table, codes, annotations.valid, log_class_prior, log_learner), -1)


def risk(posterior: jax.Array) -> jax.Array:
    """(N,) 1 - max_y posterior."""
    return 1.0 - posterior.max(-1)
