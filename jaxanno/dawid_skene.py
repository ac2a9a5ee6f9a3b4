"""The Dawid-Skene model over fixed-shape annotation slots, and one pass of it over the items.

Model: worker j labels an item of true class y as z with probability
p(z | y, j) = alpha_j[y, z] / sum_z' alpha_j[y, z'], where alpha_j = prior pseudo-counts +
counts (`confusion`). The posterior of item i is

  log b_i(y) = log P(y) + sum_a log(p(z_ia | y, j_ia) + log_eps) + log(q_i(y) + 1e-8)

with q the learner's probabilities when a learner exists (`log_belief`). The M-step's
counts are either hard (one count at [j, arg-max y_i, z] per label, as the original
implementation) or soft (b_i(y) at [j, y, z], classic Dawid-Skene). `e_pass` computes the
posterior and the next counts in one pass over the items.

Formulation: the (W, K, K) log table is laid out as (W * K, K) rows indexed by
``worker * K + label``, and the log-likelihood adds one (N, K) row gather per slot. That is
an order of magnitude faster than gathering an (N, A, K) tensor on CPU and keeps the
E-step a single memory-bound pass on GPU.

The EM loop over these pieces lives in `jaxanno.em`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxanno import ops
from jaxanno.types import AnnotationState, Params, Static

TINY_COUNT = 1e-10  # pseudo-counts are clipped here before normalising (as crowd-kit)
LEARNER_LOG_EPS = 1e-8  # added inside log q(y), as the original implementation does
PROB_FLOOR = 1e-10  # entropy term of the ELBO


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
    """(W, K, K) counts[j, y_hat_i, z] over every filled slot (the original M-step)."""
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
    """() mean over filled slots of p(z | y_hat_i, j): the original 'soft' statistic."""
    w, k, _ = alpha.shape
    flat = (annotations.worker * k + label_hat[:, None]) * k + annotations.label
    p = confusion(alpha).reshape(-1)[jnp.where(annotations.valid, flat, 0)]
    n = annotations.valid.sum()
    return jnp.where(annotations.valid, p, 0.0).sum() / jnp.maximum(n, 1)


def annotated_items(annotations: AnnotationState) -> jax.Array:
    return annotations.valid.any(-1)


def learned_class_prior(posterior: jax.Array, annotated: jax.Array) -> jax.Array:
    """(K,) log of the mean posterior over annotated items (crowd-kit's class prior)."""
    mean = (posterior * annotated[:, None]).sum(0) / jnp.maximum(annotated.sum(), 1)
    return jnp.log(jnp.maximum(mean, PROB_FLOOR))


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
    q = jnp.where(annotated_items(annotations)[:, None], posterior, 0.0)
    entropy = -(q * jnp.log(jnp.maximum(q, PROB_FLOOR))).sum()
    return ((q * joint).sum() + entropy) / jnp.maximum(valid.sum(), 1)


def clamp_to_gold(posterior: jax.Array, gold: jax.Array | None) -> jax.Array:
    """(N, K) posterior with gold items (gold >= 0) set to their one-hot label."""
    if gold is None:
        return posterior
    onehot = jax.nn.one_hot(gold, posterior.shape[-1], dtype=posterior.dtype)
    return jnp.where((gold >= 0)[:, None], onehot, posterior)


def gold_or(gold: jax.Array | None, labels: jax.Array) -> jax.Array:
    """(N,) i32 `labels` with gold items (gold >= 0) set to their gold class."""
    return labels if gold is None else jnp.where(gold >= 0, gold, labels).astype(jnp.int32)


class EPass(NamedTuple):
    """What one pass over the items computes (see `e_pass`)."""

    posterior: jax.Array | None  # (N, K) normalised posterior, None unless requested
    label_hat: jax.Array  # (N,) i32 first arg-max
    counts: jax.Array | None  # (W, K, K) M-step counts from this posterior, None without `m_step`
    posterior_sum: jax.Array  # (K,) sum of the posterior over annotated items
    log_evidence: jax.Array | None  # (N,) log p(labels_i) given the prior (annotated items), or None


class EPassCarry(NamedTuple):
    """The outputs of `e_pass` while it walks over the item blocks (its loop carry).

    Optional fields are None when the output was not requested, so nothing is computed
    or carried for them.
    """

    posterior: jax.Array | None  # (N, K) f32 posterior rows written so far
    label_hat: jax.Array  # (N,) i32 first arg-max rows written so far
    log_evidence: jax.Array | None  # (N,) f32 per-item evidence written so far
    counts: jax.Array | None  # hard: (W * K * K,) f32 flat [j, y, z]; soft: (W * K, K) f32 rows (j, z)
    posterior_sum: jax.Array  # (K,) f32 posterior summed over the annotated items so far


class EPassInputs(NamedTuple):
    """The fixed inputs of one `e_pass`, sliced block by block."""

    table: jax.Array  # (W * K, K) f32 `likelihood_table`
    annotations: AnnotationState  # (N, A) slots
    log_class_prior: jax.Array  # (K,) f32
    log_learner: jax.Array | None  # (N, K) f32 learner log-prior, or None
    gold: jax.Array | None  # (N,) i32 known classes (-1 when unknown), or None
    salt: jax.Array | None  # () uint32 seed of the hard M-step's tie-breaks


def _block_size(static: Static, n: int) -> int:
    block = static.em.item_block
    return n if block <= 0 or block >= n else block


def _e_block(static: Static, inputs: EPassInputs, m_step: str | None, c: EPassCarry, start, size: int) -> EPassCarry:
    """`e_pass` over the `size` items from `start`: write their rows, add their counts."""
    k, w = static.num_classes, static.num_workers
    cut = lambda x: None if x is None else jax.lax.dynamic_slice_in_dim(x, start, size)  # noqa: E731
    put = lambda buf, x: None if buf is None else jax.lax.dynamic_update_slice_in_dim(buf, x, start, 0)  # noqa: E731
    ann = inputs.annotations
    worker, label, valid = cut(ann.worker), cut(ann.label), cut(ann.valid)
    codes = jnp.where(valid, worker * k + label, 0)
    learner_rows, gold_rows = cut(inputs.log_learner), cut(inputs.gold)
    lb = log_belief(inputs.table, codes, valid, inputs.log_class_prior, learner_rows)
    post = clamp_to_gold(jax.nn.softmax(lb, -1), gold_rows)
    annotated = valid.any(-1)
    counts = c.counts
    if m_step == "hard":
        y_hat = gold_or(gold_rows, ops.tie_broken_argmax(lb, inputs.salt))
        counts = _add_hard_counts(counts, worker, label, valid, y_hat, w, k)
    elif m_step == "soft":
        counts = _add_soft_counts(counts, worker, label, valid, post, w, k)
    evidence = None
    if c.log_evidence is not None:
        prior_only = inputs.log_class_prior if learner_rows is None else inputs.log_class_prior + learner_rows
        prior_only = jnp.broadcast_to(prior_only, lb.shape)
        evidence = jnp.where(annotated, jax.nn.logsumexp(lb, -1) - jax.nn.logsumexp(prior_only, -1), 0.0)
    return EPassCarry(
        posterior=put(c.posterior, post),
        label_hat=put(c.label_hat, gold_or(gold_rows, ops.first_argmax(lb))),
        log_evidence=put(c.log_evidence, evidence),
        counts=counts,
        posterior_sum=c.posterior_sum + jnp.where(annotated[:, None], post, 0.0).sum(0),
    )


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
    on a CPU. Nothing is padded or copied. The hard M-step's random tie-breaks hash a
    cell's position within its block, so blocked and whole-array passes break exact ties
    differently (each uniformly at random); everything else is the same.

    Args:
      table: (W * K, K) `likelihood_table`; annotations: (N, A) slots;
      log_class_prior: (K,); log_learner: (N, K) or None.
      m_step: None, 'hard' (counts of the tie-broken arg-max, seeded by `salt`) or 'soft'.
      with_posterior / with_evidence: also return the (N, K) posterior / (N,) evidence.
      gold: (N,) i32 known classes (-1 when unknown): those items' posterior is one-hot
        and their label fixed in every E-step (crowd-kit's ``true_labels``).
    """
    n, k, w = static.num_items, static.num_classes, static.num_workers
    ops.assert_shape([table, log_class_prior], [(w * k, k), (k,)])
    ops.assert_shape([annotations.worker, annotations.label], (n, static.max_annotations))
    if log_learner is not None:
        ops.assert_shape(log_learner, (n, k))
    if gold is not None:
        ops.assert_shape(gold, (n,))
    counts = {"hard": jnp.zeros(w * k * k, jnp.float32), "soft": jnp.zeros((w * k, k), jnp.float32)}
    carry = EPassCarry(
        posterior=jnp.zeros((n, k), jnp.float32) if with_posterior else None,
        label_hat=jnp.zeros(n, jnp.int32),
        log_evidence=jnp.zeros(n, jnp.float32) if with_evidence else None,
        counts=counts.get(m_step),
        posterior_sum=jnp.zeros(k, jnp.float32),
    )
    inputs = EPassInputs(table, annotations, log_class_prior, log_learner, gold, salt)
    block = _block_size(static, n)
    full, rest = divmod(n, block)
    if full == 1:
        carry = _e_block(static, inputs, m_step, carry, 0, block)
    elif full > 1:
        body = lambda i, c: _e_block(static, inputs, m_step, c, i * block, block)  # noqa: E731
        carry = jax.lax.fori_loop(0, full, body, carry)
    if rest:
        carry = _e_block(static, inputs, m_step, carry, full * block, rest)
    shape = {"hard": _hard_shape, "soft": _soft_shape, None: lambda counts, *_: counts}[m_step]
    return EPass(carry.posterior, carry.label_hat, shape(carry.counts, w, k), carry.posterior_sum, carry.log_evidence)
