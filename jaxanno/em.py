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

from typing import NamedTuple

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
    trace: EMTrace | None
    posterior: jax.Array | None = None  # (N, K) of the last E-step (with `start_posterior`)
    history: jax.Array | None = None  # (max_em_steps,) statistic per iteration, NaN after the last


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


def learner_log_prior(probs: jax.Array | None, num_items: int) -> jax.Array | None:
    """(N, K) log(q + 1e-8) of the learner's item rows, or None without a learner."""
    if probs is None:
        return None
    return jnp.log(probs[:num_items] + LEARNER_LOG_EPS)


def log_belief(
    table: jax.Array,
    codes: jax.Array,
    valid: jax.Array,
    log_class_prior: jax.Array,
    log_learner: jax.Array | None,
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


def hash32(x: jax.Array) -> jax.Array:
    """A cheap uint32 mixing function (lowbias32), for in-kernel pseudo-random priorities."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def tie_broken_argmax(scores: jax.Array, salt: jax.Array, rows: jax.Array | None = None) -> jax.Array:
    """(N,) argmax over the last axis, exact ties broken uniformly at random (seeded by `salt`).

    The reference adds tiny noise before its arg-max. Here every (row, class) cell gets a
    hashed 32-bit priority and the tied class with the smallest priority wins: the same
    uniform choice without drawing an (N, K) random array, and with single-operand
    reductions only (see `first_argmax`).
    """
    n, k = scores.shape
    cell = jnp.arange(n, dtype=jnp.uint32)[:, None] * jnp.uint32(k) + jnp.arange(k, dtype=jnp.uint32)
    priority = hash32(hash32(cell ^ salt) + salt)
    is_max = scores >= scores.max(-1, keepdims=True)
    best = jnp.where(is_max, priority, jnp.uint32(0xFFFFFFFF)).min(-1, keepdims=True)
    winner = jnp.where(is_max & (priority == best), jnp.arange(k, dtype=jnp.int32), k).min(-1)
    return jnp.minimum(winner, k - 1)


def _add_hard_counts(flat_counts, worker, label, valid, label_hat, num_workers: int, num_classes: int):
    """flat (W * K * K) counts += 1 at [j, y_hat_i, z] for every filled slot."""
    k = num_classes
    flat = (worker * k + label_hat[:, None]) * k + label
    flat = jnp.where(valid, flat, num_workers * k * k)  # out of range: dropped
    return flat_counts.at[flat.ravel()].add(1.0, mode="drop")


def _add_soft_counts(by_code, worker, label, valid, posterior, num_workers: int, num_classes: int):
    """(W * K, K) counts, rows (j, z), += b_i(y) for every filled slot."""
    codes = jnp.where(valid, worker * num_classes + label, num_workers * num_classes)
    for a in range(codes.shape[1]):
        by_code = by_code.at[codes[:, a]].add(posterior, mode="drop")
    return by_code


def _hard_shape(flat_counts, num_workers: int, num_classes: int):
    return flat_counts.reshape(num_workers, num_classes, num_classes)


def _soft_shape(by_code, num_workers: int, num_classes: int):
    return jnp.swapaxes(by_code.reshape(num_workers, num_classes, num_classes), 1, 2)


def hard_counts(annotations: AnnotationState, label_hat: jax.Array, num_workers: int, num_classes: int) -> jax.Array:
    """(W, K, K) counts[j, y_hat_i, z] over every filled slot (the reference's M-step)."""
    zero = jnp.zeros(num_workers * num_classes * num_classes, jnp.float32)
    flat = _add_hard_counts(
        zero, annotations.worker, annotations.label, annotations.valid, label_hat, num_workers, num_classes
    )
    return _hard_shape(flat, num_workers, num_classes)


def soft_counts(annotations: AnnotationState, posterior: jax.Array, num_workers: int, num_classes: int) -> jax.Array:
    """(W, K, K) expected counts sum_i b_i(y) [j, z] (the classic Dawid-Skene M-step)."""
    zero = jnp.zeros((num_workers * num_classes, num_classes), jnp.float32)
    by_code = _add_soft_counts(
        zero, annotations.worker, annotations.label, annotations.valid, posterior, num_workers, num_classes
    )
    return _soft_shape(by_code, num_workers, num_classes)


def mean_label_likelihood(annotations: AnnotationState, label_hat: jax.Array, alpha: jax.Array) -> jax.Array:
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


def clamp_to_gold(posterior: jax.Array, gold: jax.Array | None) -> jax.Array:
    """(N, K) posterior with gold items (gold >= 0) set to their one-hot label."""
    if gold is None:
        return posterior
    onehot = jax.nn.one_hot(gold, posterior.shape[-1], dtype=posterior.dtype)
    return jnp.where((gold >= 0)[:, None], onehot, posterior)


def _gold_or(gold: jax.Array | None, labels: jax.Array) -> jax.Array:
    return labels if gold is None else jnp.where(gold >= 0, gold, labels).astype(jnp.int32)


def _m_step(
    static: Static,
    annotations: AnnotationState,
    log_b: jax.Array,
    posterior: jax.Array,
    salt: jax.Array,
    gold: jax.Array | None = None,
) -> jax.Array:
    w, k = static.num_workers, static.num_classes
    if static.em.m_step == "soft":
        return soft_counts(annotations, posterior, w, k)
    return hard_counts(annotations, _gold_or(gold, tie_broken_argmax(log_b, salt)), w, k)


def _statistic(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    label_hat: jax.Array,
    posterior: jax.Array,
    alpha: jax.Array,
    log_class_prior: jax.Array,
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
    gold: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Counts and log class prior EM starts from: zero (reference), warm, or majority vote.

    Args:
      gold: (N,) i32 known classes (-1 when unknown), clamped in the majority-vote start.
    """
    w, k = static.num_workers, static.num_classes
    if static.em.init == "majority_vote":
        mv = clamp_to_gold(majority_vote(annotations, k), gold)
        if static.em.class_prior == "learned":
            log_class_prior = learned_class_prior(mv, _annotated(annotations))
        salt = jax.random.bits(key, (), jnp.uint32)
        return _m_step(static, annotations, jnp.log(mv), mv, salt, gold), log_class_prior
    if static.em.warm_start:
        return previous_counts, log_class_prior
    return jnp.zeros((w, k, k), jnp.float32), log_class_prior


class EPass(NamedTuple):
    """What one pass over the items computes (see `e_pass`)."""

    posterior: jax.Array | None  # (N, K) normalised posterior, when requested
    label_hat: jax.Array  # (N,) i32 first arg-max
    counts: jax.Array | None  # (W, K, K) M-step counts from this posterior, when requested
    posterior_sum: jax.Array  # (K,) sum of the posterior over annotated items
    log_evidence: jax.Array | None  # (N,) log p(labels_i) given the prior, annotated items only


def _block_size(static: Static, n: int) -> int:
    block = static.em.item_block
    return n if block <= 0 or block >= n else block


def e_pass(
    static: Static,
    table: jax.Array,
    annotations: AnnotationState,
    log_class_prior: jax.Array,
    log_learner: jax.Array | None,
    *,
    m_step: str | None = None,
    salt: jax.Array | None = None,
    with_posterior: bool = True,
    with_evidence: bool = False,
    gold: jax.Array | None = None,
) -> EPass:
    """The E-step over all items (and, with `m_step`, the M-step's counts) in one pass.

    With ``static.em.item_block`` = B > 0 the items are processed B at a time in a loop
    (and the N mod B left over in one more block), so the (B, K) intermediates of gather,
    softmax, arg-max and scatter stay in cache: about twice as fast as whole-array passes
    on a CPU. Nothing is padded or copied.

    Args:
      table: (W * K, K) `likelihood_table`; log_class_prior: (K,); log_learner: (N, K) or None.
      m_step: None, 'hard' (counts of the tie-broken arg-max, seeded by `salt`) or 'soft'.
      gold: (N,) i32 known classes (-1 when unknown): those items' posterior is one-hot
        and their label fixed in every E-step (crowd-kit's ``true_labels``).
    """
    n, k, w = static.num_items, static.num_classes, static.num_workers
    block = _block_size(static, n)

    def run_block(carry, start, size: int):
        post_buf, hat_buf, ev_buf, counts, post_sum = carry
        cut = lambda x: jax.lax.dynamic_slice_in_dim(x, start, size)  # noqa: E731
        put = lambda buf, x: None if buf is None else jax.lax.dynamic_update_slice_in_dim(buf, x, start, 0)  # noqa: E731
        worker, label, valid = cut(annotations.worker), cut(annotations.label), cut(annotations.valid)
        codes = jnp.where(valid, worker * k + label, 0)
        learner_rows = None if log_learner is None else cut(log_learner)
        lb = log_belief(table, codes, valid, log_class_prior, learner_rows)
        gold_rows = None if gold is None else cut(gold)
        post = clamp_to_gold(jax.nn.softmax(lb, -1), gold_rows)
        annotated = valid.any(-1)
        post_sum = post_sum + jnp.where(annotated[:, None], post, 0.0).sum(0)
        if m_step == "hard":
            y_hat = _gold_or(gold_rows, tie_broken_argmax(lb, salt, start + jnp.arange(size)))
            counts = _add_hard_counts(counts, worker, label, valid, y_hat, w, k)
        elif m_step == "soft":
            counts = _add_soft_counts(counts, worker, label, valid, post, w, k)
        evidence = None
        if with_evidence:
            prior_only = log_class_prior if learner_rows is None else log_class_prior + learner_rows
            prior_only = jnp.broadcast_to(prior_only, lb.shape)
            evidence = jnp.where(annotated, jax.nn.logsumexp(lb, -1) - jax.nn.logsumexp(prior_only, -1), 0.0)
        label_hat = _gold_or(gold_rows, first_argmax(lb))
        return put(post_buf, post), put(hat_buf, label_hat), put(ev_buf, evidence), counts, post_sum

    counts0 = None
    if m_step == "hard":
        counts0 = jnp.zeros(w * k * k, jnp.float32)
    elif m_step == "soft":
        counts0 = jnp.zeros((w * k, k), jnp.float32)
    carry = (
        jnp.zeros((n, k), jnp.float32) if with_posterior else None,
        jnp.zeros(n, jnp.int32),
        jnp.zeros(n, jnp.float32) if with_evidence else None,
        counts0,
        jnp.zeros(k, jnp.float32),
    )
    full, rest = divmod(n, block)
    if full == 1:
        carry = run_block(carry, 0, block)
    elif full > 1:
        carry = jax.lax.fori_loop(0, full, lambda i, c: run_block(c, i * block, block), carry)
    if rest:
        carry = run_block(carry, full * block, rest)
    post, hat, evidence, counts, post_sum = carry
    if m_step == "hard":
        counts = _hard_shape(counts, w, k)
    elif m_step == "soft":
        counts = _soft_shape(counts, w, k)
    return EPass(posterior=post, label_hat=hat, counts=counts, posterior_sum=post_sum, log_evidence=evidence)


class EMStep(NamedTuple):
    """What one EM iteration produces."""

    posterior: jax.Array | None  # (N, K) posterior of the E-step, when requested
    label_hat: jax.Array  # (N,) i32 first arg-max
    log_class_prior: jax.Array  # (K,) updated log P(y)
    counts: jax.Array  # (W, K, K) the M-step's new counts
    log_evidence: jax.Array | None  # (N,) per-item log-likelihood, when requested


def em_step(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    counts: jax.Array,
    log_class_prior: jax.Array,
    log_learner: jax.Array | None,
    salt: jax.Array,
    with_posterior: bool = True,
    with_evidence: bool = False,
    gold: jax.Array | None = None,
) -> EMStep:
    """One EM iteration: the E-step with pseudo-counts prior + `counts`, then the M-step.

    Args:
      salt: () uint32 seed of the hard M-step's random tie-breaks.
      with_posterior / with_evidence: also return the (N, K) posterior / (N,) evidence.
      gold: (N,) i32 known classes (-1 when unknown), clamped (see `e_pass`).
    """
    table = likelihood_table(prior_alpha + counts, params.log_epsilon)
    out = e_pass(
        static,
        table,
        annotations,
        log_class_prior,
        log_learner,
        m_step=static.em.m_step,
        salt=salt,
        with_posterior=with_posterior,
        with_evidence=with_evidence,
        gold=gold,
    )
    if static.em.class_prior == "learned":
        n_annotated = jnp.maximum(_annotated(annotations).sum(), 1)
        log_class_prior = jnp.log(jnp.maximum(out.posterior_sum / n_annotated, _PROB_FLOOR))
    return EMStep(out.posterior, out.label_hat, log_class_prior, out.counts, out.log_evidence)


class _Carry(NamedTuple):
    """The state of the EM loop (one lane)."""

    counts: jax.Array  # (W, K, K)
    log_prior: jax.Array  # (K,)
    stat: jax.Array  # () statistic of the last iteration
    label_hat: jax.Array  # (N,) labels of the last E-step
    done: jax.Array  # () converged (frozen from then on)
    iterations: jax.Array  # () E-steps run
    posterior: jax.Array | None  # (N, K) posterior of the last E-step, when kept
    history: jax.Array | None  # (max_em_steps,) statistic per iteration, NaN after the last


def run_em(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    counts: jax.Array,
    log_class_prior: jax.Array,
    log_learner: jax.Array | None,
    key: jax.Array,
    with_trace: bool = False,
    gold: jax.Array | None = None,
    start_posterior: jax.Array | None = None,
) -> EMResult:
    """Up to `max_em_steps` EM iterations from `counts`; converged lanes stay frozen.

    Without a trace the iterations run in a `lax.while_loop` that ends when the lane
    (under vmap: every lane) has converged, so typical solves of 2-4 iterations do not pay
    for `max_em_steps`; with a trace a `lax.scan` records every iteration.

    Args:
      annotations: the filled slots (N, A).
      prior_alpha: (W, K, K) prior pseudo-counts (strength applied).
      counts: (W, K, K) starting counts (see `initial_counts`).
      log_class_prior: (K,) starting log P(y).
      log_learner: (N, K) learner log-prior used in every E-step, or None.
      key: seeds the random tie-breaks of the hard M-step.
      with_trace: also return per-iteration diagnostics (static).
      gold: (N,) i32 known classes (-1 when unknown), clamped in every E-step.
      start_posterior: (N, K) when given, the result also carries the posterior of the
        last E-step (crowd-kit reports that one) and the statistic of every iteration;
        `start_posterior` is returned when EM is skipped.
    Returns:
      `EMResult`; with no filled slot at all, EM is skipped (0 iterations).
    """
    annotated = _annotated(annotations)
    keep_posterior = start_posterior is not None

    def iteration(c: _Carry):
        salt = jax.random.bits(jax.random.fold_in(key, c.iterations), (), jnp.uint32)
        step = em_step(static, params, annotations, prior_alpha, c.counts, c.log_prior, log_learner, salt,
                       with_posterior=keep_posterior or static.em.criterion == "elbo", with_evidence=with_trace,
                       gold=gold)  # fmt: skip
        alpha = prior_alpha + step.counts
        stat = _statistic(static, params, annotations, step.label_hat, step.posterior, alpha, step.log_class_prior)
        now = (c.iterations > 0) & _converged(static, params, stat, c.stat, step.label_hat, c.label_hat)
        keep = lambda old, new: None if old is None else jnp.where(c.done, old, new)  # noqa: E731  frozen once done
        history = None if c.history is None else c.history.at[c.iterations].set(stat)
        new = _Carry(
            counts=keep(c.counts, step.counts), log_prior=keep(c.log_prior, step.log_class_prior),
            stat=keep(c.stat, stat), label_hat=keep(c.label_hat, step.label_hat), done=c.done | now,
            iterations=c.iterations + (~c.done).astype(jnp.int32), posterior=keep(c.posterior, step.posterior),
            history=keep(c.history, history),
        )  # fmt: skip
        if not with_trace:
            return new, None
        changes = jnp.where(c.iterations > 0, (step.label_hat != c.label_hat).sum(), annotated.sum())
        trace = EMTrace(
            statistic=stat, log_likelihood=step.log_evidence.sum(), label_changes=changes.astype(jnp.int32),
            active=~c.done,
        )  # fmt: skip
        return new, trace

    start = _Carry(
        counts=counts, log_prior=log_class_prior, stat=jnp.float32(0), label_hat=jnp.zeros(static.num_items, jnp.int32),
        done=~annotations.valid.any(), iterations=jnp.int32(0), posterior=start_posterior,
        history=jnp.full((static.em.max_em_steps,), jnp.nan, jnp.float32) if keep_posterior else None,
    )  # fmt: skip
    if with_trace:
        final, trace = jax.lax.scan(lambda c, _: iteration(c), start, None, length=static.em.max_em_steps)
    else:
        running = lambda c: ~c.done & (c.iterations < static.em.max_em_steps)  # noqa: E731
        final, trace = jax.lax.while_loop(running, lambda c: iteration(c)[0], start), None
    return EMResult(
        counts=final.counts, log_class_prior=final.log_prior, iterations=final.iterations, trace=trace,
        posterior=final.posterior, history=final.history,
    )  # fmt: skip


def posterior(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    alpha: jax.Array,
    log_class_prior: jax.Array,
    log_learner: jax.Array | None,
    gold: jax.Array | None = None,
) -> jax.Array:
    """(N, K) posterior of the configured aggregator; rows sum to 1 (gold items one-hot).

    'bayes': the Dawid-Skene posterior with pseudo-counts `alpha` (prior + counts).
    'mj': majority vote (the learner and worker model are ignored, as in the reference).
    """
    if static.em.aggregator == "mj":
        return majority_vote(annotations, static.num_classes)
    table = likelihood_table(alpha, params.log_epsilon)
    return e_pass(static, table, annotations, log_class_prior, log_learner, gold=gold).posterior


def risk(posterior: jax.Array) -> jax.Array:
    """(N,) 1 - max_y posterior."""
    return 1.0 - posterior.max(-1)
