"""Shared array numerics: hashed priorities, arg-max variants with defined tie rules, and
the weighted cross-entropy.

These serve EM (tie-broken hard labels), the HIT sampler (uniform item draws, worker
choice), the learner and its calibration, and the metrics (first arg-max as numpy). Every function is pure and
shape-polymorphic over its leading axes where its docstring says so.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def assert_shape(arrays: jax.Array | list[jax.Array], shapes: tuple | list[tuple]) -> None:
    """Raise AssertionError unless every array has its expected shape (a trace-time check).

    Args:
      arrays: one array or a list of them; shapes: one shape for all, or a list with one per array.
    """
    arrays = arrays if isinstance(arrays, list) else [arrays]
    shapes = shapes if isinstance(shapes, list) else [shapes] * len(arrays)
    for i, (x, shape) in enumerate(zip(arrays, shapes, strict=True)):
        if tuple(jnp.shape(x)) != tuple(shape):
            raise AssertionError(f"input {i}: shape {tuple(jnp.shape(x))}, expected {tuple(shape)}")


def hash32(x: jax.Array) -> jax.Array:
    """A cheap uint32 mixing function (lowbias32), for in-kernel pseudo-random priorities."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def first_argmax(scores: jax.Array) -> jax.Array:
    """(N,) i32 index of the first maximum of each row (as np.argmax).

    Two single-operand reductions (max, then min over the tied indices) instead of XLA's
    variadic arg-max reduction, which is several times slower on CPU.
    """
    k = scores.shape[-1]
    is_max = scores >= scores.max(-1, keepdims=True)
    first = jnp.where(is_max, jnp.arange(k, dtype=jnp.int32), k).min(-1)
    return jnp.minimum(first, k - 1)


def tie_broken_argmax(scores: jax.Array, salt: jax.Array) -> jax.Array:
    """(N,) argmax over the last axis, exact ties broken uniformly at random (seeded by `salt`).

    Adding tiny noise before an arg-max is the usual way to break ties. Here every
    (row, class) cell gets a hashed 32-bit priority and the tied class with the smallest
    priority wins: the same uniform choice without drawing an (N, K) random array, and with
    single-operand reductions only (see `first_argmax`).

    Args:
      scores: (N, K); salt: () uint32 seed. Cells are hashed by their position in `scores`,
        so the same salt breaks the ties of a slice of rows differently than of the whole.
    """
    n, k = scores.shape
    cell = jnp.arange(n, dtype=jnp.uint32)[:, None] * jnp.uint32(k) + jnp.arange(k, dtype=jnp.uint32)
    priority = hash32(hash32(cell ^ salt) + salt)
    is_max = scores >= scores.max(-1, keepdims=True)
    best = jnp.where(is_max, priority, jnp.uint32(0xFFFFFFFF)).min(-1, keepdims=True)
    winner = jnp.where(is_max & (priority == best), jnp.arange(k, dtype=jnp.int32), k).min(-1)
    return jnp.minimum(winner, k - 1)


def random_argmax(scores: jax.Array, allowed: jax.Array, key: jax.Array) -> jax.Array:
    """() i32 index of the largest allowed score, ties broken uniformly at random.

    Args:
      scores: (W,) f32; allowed: (W,) bool (with none allowed the result is 0).
    """
    scores = jnp.where(allowed, scores, -jnp.inf)
    is_max = allowed & (scores == scores.max())
    return jnp.argmax(jnp.where(is_max, jax.random.uniform(key, scores.shape, minval=0.5), 0.0)).astype(jnp.int32)


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, weight: jax.Array) -> jax.Array:
    """() sum(w * CE) / max(sum(w), 1): the weighted mean cross-entropy of integer labels.

    Args:
      logits: (B, K); labels: (B,) i32; weight: (B,) f32 row weights.
    """
    import optax  # here, not at the top: EM, the sampler and the crowd API never load it

    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (ce * weight).sum() / jnp.maximum(weight.sum(), 1.0)
