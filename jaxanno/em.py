"""EM for the Dawid-Skene model (`jaxanno.dawid_skene`): start, iteration, two drivers.

At every online step EM resets the counts (or keeps them, with warm start, or starts from
majority vote), then runs up to `max_em_steps` iterations of E-step, M-step and
convergence test (`iterate`). The convergence statistic is the mean label likelihood
p(z | arg-max y, j) over the filled slots ('soft', the original implementation's), the
evidence lower bound ('elbo', crowd-kit's) or unchanged arg-max labels ('hard'); the first
iteration never converges. A converged lane stays frozen, so the loop behaves the same
under `vmap`.

Two drivers share the iteration: `run`, the simulator's (counts, class prior, iterations),
and `solve`, for one-off fits and diagnostics (also the last E-step's posterior, the
statistic of every iteration, optional per-iteration traces, gold items, and an iteration
limit that does not recompile). `posterior` is the belief the rest of the system uses.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxanno import dawid_skene as ds
from jaxanno import ops
from jaxanno.types import AnnotationState, EMState, Params, Static


def _m_step(
    static: Static,
    annotations: AnnotationState,
    log_b: jax.Array,
    posterior: jax.Array,
    salt: jax.Array,
    gold: jax.Array | None = None,
) -> jax.Array:
    """(W, K, K) counts of the configured M-step from one belief (log_b: (N, K), its (N, K) posterior)."""
    w, k = static.num_workers, static.num_classes
    if static.em.m_step == "soft":
        return ds.soft_counts(annotations, posterior, w, k)
    return ds.hard_counts(annotations, ds.gold_or(gold, ops.tie_broken_argmax(log_b, salt)), w, k)


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
        return ds.elbo(static, params, annotations, posterior, alpha, log_class_prior)
    return ds.mean_label_likelihood(annotations, label_hat, alpha)


def _converged(static: Static, params: Params, stat, prev_stat, label_hat, prev_hat) -> jax.Array:
    """() the configured criterion holds between two consecutive iterations."""
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
    """Counts and log class prior EM starts from: zero (the original), warm, or majority vote.

    Args:
      gold: (N,) i32 known classes (-1 when unknown), clamped in the majority-vote start.
    """
    w, k = static.num_workers, static.num_classes
    if static.em.init == "majority_vote":
        mv = ds.clamp_to_gold(ds.majority_vote(annotations, k), gold)
        if static.em.class_prior == "learned":
            log_class_prior = ds.learned_class_prior(mv, ds.annotated_items(annotations))
        salt = jax.random.bits(key, (), jnp.uint32)
        return _m_step(static, annotations, jnp.log(mv), mv, salt, gold), log_class_prior
    if static.em.warm_start:
        return previous_counts, log_class_prior
    return jnp.zeros((w, k, k), jnp.float32), log_class_prior


class EMStep(NamedTuple):
    """What one E-step + M-step produces."""

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
    """The E-step with pseudo-counts prior + `counts`, then the M-step.

    Args:
      salt: () uint32 seed of the hard M-step's random tie-breaks.
      with_posterior / with_evidence: also return the (N, K) posterior / (N,) evidence.
      gold: (N,) i32 known classes (-1 when unknown), clamped (see `e_pass`).
    """
    table = ds.likelihood_table(prior_alpha + counts, params.log_epsilon)
    out = ds.e_pass(static, table, annotations, log_class_prior, log_learner, m_step=static.em.m_step, salt=salt,
                    with_posterior=with_posterior, with_evidence=with_evidence, gold=gold)  # fmt: skip
    if static.em.class_prior == "learned":
        n_annotated = jnp.maximum(ds.annotated_items(annotations).sum(), 1)
        log_class_prior = jnp.log(jnp.maximum(out.posterior_sum / n_annotated, ds.PROB_FLOOR))
    return EMStep(out.posterior, out.label_hat, log_class_prior, out.counts, out.log_evidence)


class EMLoop(NamedTuple):
    """One EM solve between iterations (one lane): what `iterate` advances."""

    counts: jax.Array  # (W, K, K) f32 counts of the latest M-step
    log_class_prior: jax.Array  # (K,) f32 log P(y) of the latest M-step
    statistic: jax.Array  # () f32 convergence statistic of the latest iteration
    label_hat: jax.Array  # (N,) i32 first arg-max of the latest E-step
    done: jax.Array  # () bool converged (or nothing to do): frozen from then on
    iterations: jax.Array  # () i32 iterations run


def start_loop(static: Static, annotations: AnnotationState, counts: jax.Array, log_class_prior: jax.Array) -> EMLoop:
    """The loop before the first iteration; already done when no slot is filled."""
    return EMLoop(counts=counts, log_class_prior=log_class_prior, statistic=jnp.float32(0),
                  label_hat=jnp.zeros(static.num_items, jnp.int32), done=~annotations.valid.any(),
                  iterations=jnp.int32(0))  # fmt: skip


def iterate(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    log_learner: jax.Array | None,
    key: jax.Array,
    loop: EMLoop,
    *,
    with_posterior: bool = False,
    with_evidence: bool = False,
    gold: jax.Array | None = None,
) -> tuple[EMLoop, EMStep]:
    """One EM iteration: E-step, M-step, convergence statistic and test.

    A loop that is already done comes back unchanged (so the iteration is safe under
    `vmap`, where converged lanes keep running with the others). The convergence test
    needs a previous iteration: the first never converges.

    Args:
      key: the solve's key; iteration i seeds its tie-breaks with ``fold_in(key, i)``.
    Returns:
      The advanced loop and the iteration's raw `EMStep` (whose posterior and evidence
      are only defined when requested; use them only where the loop was not done).
    """
    salt = jax.random.bits(jax.random.fold_in(key, loop.iterations), (), jnp.uint32)
    step = em_step(static, params, annotations, prior_alpha, loop.counts, loop.log_class_prior, log_learner, salt,
                   with_posterior=with_posterior or static.em.criterion == "elbo", with_evidence=with_evidence,
                   gold=gold)  # fmt: skip
    alpha = prior_alpha + step.counts
    stat = _statistic(static, params, annotations, step.label_hat, step.posterior, alpha, step.log_class_prior)
    now = (loop.iterations > 0) & _converged(static, params, stat, loop.statistic, step.label_hat, loop.label_hat)
    keep = lambda old, new: jnp.where(loop.done, old, new)  # noqa: E731  frozen once done
    new = EMLoop(
        counts=keep(loop.counts, step.counts), log_class_prior=keep(loop.log_class_prior, step.log_class_prior),
        statistic=keep(loop.statistic, stat), label_hat=keep(loop.label_hat, step.label_hat), done=loop.done | now,
        iterations=loop.iterations + (~loop.done).astype(jnp.int32),
    )  # fmt: skip
    return new, step


class EMResult(NamedTuple):
    """The outcome of the simulator's EM (`run`)."""

    counts: jax.Array  # (W, K, K) f32 final (soft) counts
    log_class_prior: jax.Array  # (K,) f32
    iterations: jax.Array  # () i32 iterations run


def run(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    counts: jax.Array,
    log_class_prior: jax.Array,
    log_learner: jax.Array | None,
    key: jax.Array,
) -> EMResult:
    """The simulator's EM: up to `max_em_steps` iterations from `counts`, early exit.

    The iterations run in a `lax.while_loop` that ends when the lane (under vmap: every
    lane) has converged, so typical solves of 2-4 iterations do not pay for
    `max_em_steps`; converged lanes stay frozen. With no filled slot, nothing runs.

    Args:
      annotations: (N, A) filled slots; prior_alpha: (W, K, K) pseudo-counts (strength
      applied); counts: (W, K, K) starting counts (see `initial_counts`);
      log_class_prior: (K,) starting log P(y); log_learner: (N, K) learner log-prior used
      in every E-step, or None; key: seeds the hard M-step's tie-breaks.
    """

    def body(loop: EMLoop) -> EMLoop:
        return iterate(static, params, annotations, prior_alpha, log_learner, key, loop)[0]

    running = lambda loop: ~loop.done & (loop.iterations < static.em.max_em_steps)  # noqa: E731
    final = jax.lax.while_loop(running, body, start_loop(static, annotations, counts, log_class_prior))
    return EMResult(counts=final.counts, log_class_prior=final.log_class_prior, iterations=final.iterations)


class EMTrace(NamedTuple):
    """Per-iteration diagnostics of one EM solve, each (max_em_steps,); entry i = iteration i."""

    statistic: jax.Array  # f32, the convergence statistic of the criterion (NaN after the last)
    log_likelihood: jax.Array  # f32, observed-label log-likelihood before the M-step (NaN after the last)
    label_changes: jax.Array  # i32, items whose argmax changed since the last iteration (0 after the last)
    active: jax.Array  # bool, the iteration ran


class EMSolution(NamedTuple):
    """The outcome of `solve`."""

    counts: jax.Array  # (W, K, K) f32 final (soft) counts
    log_class_prior: jax.Array  # (K,) f32
    iterations: jax.Array  # () i32 iterations run
    posterior: jax.Array  # (N, K) f32 posterior of the last E-step (the start posterior if none ran)
    history: jax.Array  # (max_em_steps,) f32 statistic per iteration, NaN after the last
    trace: EMTrace | None  # per-iteration diagnostics, with `with_trace`


class SolveCarry(NamedTuple):
    """The loop carry of `solve`."""

    loop: EMLoop
    posterior: jax.Array  # (N, K) f32 posterior of the latest E-step
    history: jax.Array  # (max_em_steps,) f32 statistic per iteration so far, NaN after
    trace: EMTrace | None  # (max_em_steps,) buffers, with `with_trace`


def _record(c: SolveCarry, loop: EMLoop, step: EMStep, annotated: jax.Array) -> SolveCarry:
    """`c` after the iteration that produced `loop` and `step` (unchanged where c was done)."""
    i = c.loop.iterations
    keep = lambda old, new: jnp.where(c.loop.done, old, new)  # noqa: E731
    trace = c.trace
    if trace is not None:
        changes = jnp.where(i > 0, (step.label_hat != c.loop.label_hat).sum(), annotated.sum()).astype(jnp.int32)
        now = EMTrace(loop.statistic, step.log_evidence.sum(), changes, jnp.bool_(True))
        trace = jax.tree.map(lambda buf, x: keep(buf, buf.at[i].set(x)), trace, now)
    return SolveCarry(loop=loop, posterior=keep(c.posterior, step.posterior),
                      history=keep(c.history, c.history.at[i].set(loop.statistic)), trace=trace)  # fmt: skip


def solve(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    counts: jax.Array,
    log_class_prior: jax.Array,
    log_learner: jax.Array | None,
    key: jax.Array,
    *,
    gold: jax.Array | None = None,
    start_posterior: jax.Array | None = None,
    with_trace: bool = False,
    max_iterations: jax.Array | None = None,
) -> EMSolution:
    """EM for one-off fits and diagnostics: `run`'s iterations, plus what they produced.

    Same iterations, stopping rule and early exit as `run`; in addition it keeps the
    posterior of the last E-step (what crowd-kit reports), the statistic of every
    iteration and, with `with_trace`, per-iteration diagnostics.

    Args:
      (as `run`), and:
      gold: (N,) i32 known classes (-1 when unknown), clamped in every E-step.
      start_posterior: (N, K) returned as the posterior when no iteration runs; default:
        majority vote (gold clamped).
      with_trace: also fill an `EMTrace` (static).
      max_iterations: () i32 iteration limit at most ``static.em.max_em_steps``; a traced
        value, so changing it does not recompile (default: max_em_steps).
    """
    steps = static.em.max_em_steps
    limit = steps if max_iterations is None else jnp.minimum(max_iterations, steps)
    if start_posterior is None:
        start_posterior = ds.clamp_to_gold(ds.majority_vote(annotations, static.num_classes), gold)
    ops.assert_shape(start_posterior, (static.num_items, static.num_classes))
    annotated = ds.annotated_items(annotations)
    nan = jnp.full((steps,), jnp.nan, jnp.float32)
    trace = EMTrace(nan, nan, jnp.zeros(steps, jnp.int32), jnp.zeros(steps, bool)) if with_trace else None
    start = SolveCarry(start_loop(static, annotations, counts, log_class_prior), start_posterior, nan, trace)

    def body(c: SolveCarry) -> SolveCarry:
        loop, step = iterate(static, params, annotations, prior_alpha, log_learner, key, c.loop,
                             with_posterior=True, with_evidence=with_trace, gold=gold)  # fmt: skip
        return _record(c, loop, step, annotated)

    running = lambda c: ~c.loop.done & (c.loop.iterations < limit)  # noqa: E731
    final = jax.lax.while_loop(running, body, start)
    return EMSolution(counts=final.loop.counts, log_class_prior=final.loop.log_class_prior,
                      iterations=final.loop.iterations, posterior=final.posterior, history=final.history,
                      trace=final.trace)  # fmt: skip


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
    'mj': majority vote (the learner and worker model are ignored, as in the original).
    """
    if static.em.aggregator == "mj":
        return ds.majority_vote(annotations, static.num_classes)
    table = ds.likelihood_table(alpha, params.log_epsilon)
    return ds.e_pass(static, table, annotations, log_class_prior, log_learner, gold=gold).posterior


def risk(posterior: jax.Array) -> jax.Array:
    """(N,) 1 - max_y posterior."""
    return 1.0 - posterior.max(-1)


def init_state(static: Static) -> EMState:
    """Estimates before any label: zero counts, uniform class prior and posterior."""
    n, k, w = static.num_items, static.num_classes, static.num_workers
    return EMState(
        counts=jnp.zeros((w, k, k), jnp.float32),
        log_class_prior=jnp.full((k,), -jnp.log(k), jnp.float32),
        posterior=jnp.full((n, k), 1.0 / k, jnp.float32),
        risk=jnp.full((n,), 1.0 - 1.0 / k, jnp.float32),
        iterations=jnp.int32(0),
    )
