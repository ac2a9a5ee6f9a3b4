"""Accuracy and calibration of beliefs, as the original implementation logs them after every step.

* top-k: the true class is among the k highest beliefs. Ties are ranked as the original's
  reversed stable argsort ranks them (the higher class index first), so an item with a
  uniform belief counts as predicting class K-1.
* ECE: 10 equal-width bins (lower, upper] over the arg-max confidence.
* Subsets: all items, confident (risk < threshold) and unconfident; a metric over an empty
  subset is NaN (undefined), never a made-up number.
* A belief row holding NaN or inf (a numerical failure upstream) is wrong: it is in no
  top-k, and ECE counts it as confidence 1 with a wrong prediction (the largest gap), so a
  broken posterior can never look accurate or calibrated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxanno import ops
from jaxanno.types import BeliefMetrics, SubsetMetrics

ECE_BINS = 10
TOP_K = (1, 5, 10)
NOT_RANKED = 2**31 - 1  # rank of a row with a non-finite belief: outside every top-k


def finite_rows(belief: jax.Array) -> jax.Array:
    """(N,) bool: the row of an (N, K) belief has no NaN or inf."""
    return jnp.isfinite(belief).all(-1)


def true_class_rank(belief: jax.Array, labels: jax.Array) -> jax.Array:
    """(N,) i32 rank of the true class, 0 = predicted first; `NOT_RANKED` for a row with a
    non-finite belief (comparisons with NaN are all False, which would rank it first).

    Args:
      belief: (N, K) probabilities; labels: (N,) true classes.
    """
    k = belief.shape[-1]
    true_b = jnp.take_along_axis(belief, labels[:, None], -1)
    above = belief > true_b
    tied_after = (belief == true_b) & (jnp.arange(k) > labels[:, None])
    rank = (above | tied_after).sum(-1).astype(jnp.int32)
    return jnp.where(finite_rows(belief), rank, NOT_RANKED)


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    n = mask.sum()
    return jnp.where(n > 0, jnp.where(mask, x, 0).sum() / jnp.maximum(n, 1), jnp.nan)


def expected_calibration_error(
    confidence: jax.Array, correct: jax.Array, mask: jax.Array, num_bins: int = ECE_BINS
) -> jax.Array:
    """() ECE over the masked items with equal-width bins (lower, upper]; NaN when none.

    A non-finite confidence counts as 1 with a wrong prediction (the largest gap).

    Args:
      confidence: (N,) max belief; correct: (N,) bool arg-max prediction is right.
    """
    finite = jnp.isfinite(confidence)
    confidence, correct = jnp.where(finite, confidence, 1.0), correct & finite
    bins = jnp.clip(jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
    w = mask.astype(jnp.float32)
    conf_sum = jax.ops.segment_sum(confidence * w, bins, num_bins)
    acc_sum = jax.ops.segment_sum(correct * w, bins, num_bins)
    n = w.sum()
    return jnp.where(n > 0, jnp.abs(acc_sum - conf_sum).sum() / jnp.maximum(n, 1), jnp.nan)


def subset_metrics(rank, confidence, argmax_correct, mask) -> SubsetMetrics:
    """Metrics of one belief over the masked items."""
    top = [_masked_mean(rank < k, mask) for k in TOP_K]
    return SubsetMetrics(
        top1=top[0],
        top5=top[1],
        top10=top[2],
        ece=expected_calibration_error(confidence, argmax_correct, mask),
        n_correct=((rank == 0) & mask).sum().astype(jnp.int32),
        n_items=mask.sum().astype(jnp.int32),
    )


def belief_metrics(belief: jax.Array, labels: jax.Array, confident: jax.Array) -> BeliefMetrics:
    """Metrics of one (N, K) belief over all / confident / unconfident items.

    Args:
      belief: (N, K) rows sum to 1; labels: (N,) true classes; confident: (N,) bool.
    """
    rank = true_class_rank(belief, labels)
    confidence = belief.max(-1)
    argmax_correct = finite_rows(belief) & (ops.first_argmax(belief) == labels)
    everyone = jnp.ones_like(confident)
    return BeliefMetrics(
        all=subset_metrics(rank, confidence, argmax_correct, everyone),
        confident=subset_metrics(rank, confidence, argmax_correct, confident),
        unconfident=subset_metrics(rank, confidence, argmax_correct, ~confident),
    )


def learner_metrics(probs: jax.Array | None, labels: jax.Array, confident: jax.Array) -> BeliefMetrics | None:
    """Metrics of the learner's item rows, split by the aggregate's confidence."""
    if probs is None:
        return None
    return belief_metrics(probs[: labels.shape[0]], labels, confident)
