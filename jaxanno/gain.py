"""Expected risk reduction of one more label: which items a given worker should label.

With the 0-1 cost, an item's risk is 1 - max_y b(y) for its posterior b. One label z from
a worker with confusion C (rows p(z | y)) turns b into b'(y) ∝ b(y) C(y, z), and the
expected risk after the answer has a closed form:

    E_z[1 - max_y b'(y)] = 1 - sum_z max_y b(y) C(y, z),

so the expected reduction (the expected gain in accuracy of the item's label, when the
posterior is calibrated) is ``sum_z max_y b(y) C(y, z) - max_y b(y) >= 0``. It is large
where the item is uncertain between classes that this worker tells apart, and small where
the worker confuses exactly those classes or the item is already nearly certain.

Computing it exactly costs N K^2 per worker; here the sum runs over each item's T most
probable classes (`GAIN_CLASSES`), and every answer outside them is one merged answer
"another class". Merging answers only loses information, so the result stays a
non-negative lower bound of the exact gain over those classes, and exact when T = K.
The cost is N T^2 gathered entries per worker, with fixed shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

GAIN_CLASSES = 4  # T: candidate classes per item in the expected-gain sum


def top_classes(posterior: jax.Array, t: int = GAIN_CLASSES) -> tuple[jax.Array, jax.Array]:
    """Each item's `t` most probable classes (at most K), in decreasing probability.

    Args:
      posterior: (N, K) f32.
    Returns:
      probs: (N, T) f32 and classes: (N, T) i32, T = min(t, K).
    """
    probs, classes = jax.lax.top_k(posterior, min(t, posterior.shape[-1]))
    return probs, classes.astype(jnp.int32)


def expected_gain(probs: jax.Array, classes: jax.Array, conf: jax.Array) -> jax.Array:
    """(N,) expected risk reduction of one label from a worker with confusion `conf`.

    Answers are the T candidate classes plus one merged "another class" answer (see the
    module docstring); the result is >= 0 and 0 for a worker whose answer says nothing.

    Args:
      probs: (N, T) f32 posterior of each item's candidate classes, decreasing.
      classes: (N, T) i32 the candidate classes.
      conf: (K, K) f32 the worker's confusion p(z | y), rows summing to 1.
    """
    sub = conf[classes[:, :, None], classes[:, None, :]]  # (N, T, T): p(z = c_s | y = c_t)
    joint = probs[:, :, None] * sub  # p(y = c_t, z = c_s), unnormalised over the truncated classes
    other = probs * jnp.clip(1.0 - sub.sum(-1), 0.0, 1.0)  # (N, T): p(y = c_t, z outside the candidates)
    best_after = joint.max(1).sum(-1) + other.max(-1)
    return jnp.maximum(best_after - probs[:, 0], 0.0)


class Pool(NamedTuple):
    """One step's candidate items: the P eligible items of highest expected gain for the
    average worker (``P = min(N, 4 H B)``), which each HIT then ranks for its own worker."""

    items: jax.Array  # (P,) i32 item indices
    valid: jax.Array  # (P,) bool, False where fewer than P items were eligible
    probs: jax.Array  # (P, T) f32 posterior of each candidate class, decreasing
    classes: jax.Array  # (P, T) i32 candidate classes


POOL_PER_SLOT = 4  # pool items per label of a step


def candidate_pool(
    posterior: jax.Array, eligible: jax.Array, conf: jax.Array, temperature: jax.Array, size: int, key: jax.Array
) -> Pool:
    """The `size` eligible items of highest expected gain for a worker with confusion `conf`.

    Ranked by gain plus Gumbel noise of scale ``temperature + 1e-6``: with temperature
    tau > 0 the pool is a draw without replacement with probabilities proportional to
    exp(gain / tau) (the Gumbel top-k trick); the 1e-6 floor breaks exact ties at random.

    Args:
      posterior: (N, K) f32; eligible: (N,) bool; conf: (K, K) f32 (the average worker's);
      temperature: () f32 >= 0; size: P (static, <= N).
    """
    probs, classes = top_classes(posterior)
    noise = (temperature + 1e-6) * jax.random.gumbel(key, eligible.shape, jnp.float32)
    score = jnp.where(eligible, expected_gain(probs, classes, conf) + noise, -jnp.inf)
    top, items = jax.lax.top_k(score, size)
    return Pool(items=items.astype(jnp.int32), valid=top > -jnp.inf, probs=probs[items], classes=classes[items])


def best_items(score: jax.Array, hit_size: int) -> tuple[jax.Array, jax.Array]:
    """The positions of the `hit_size` highest scores and lane validity (score above -inf).

    Args:
      score: (P,) f32, -inf where not allowed; P may be below `hit_size` (padded lanes are invalid).
    Returns:
      lanes: (B,) i32 distinct positions in `score`; valid: (B,) bool.
    """
    p = score.shape[0]
    if p < hit_size:
        score = jnp.concatenate([score, jnp.full(hit_size - p, -jnp.inf, score.dtype)])
    top, lanes = jax.lax.top_k(score, hit_size)
    return jnp.minimum(lanes, p - 1).astype(jnp.int32), top > -jnp.inf
