"""Simulated annotators: true confusion matrices, the model's Dirichlet priors, answers.

A worker j has a true confusion matrix M_j (K, K): row = true class y, column = given label
z, rows sum to 1; labelling an item of class y draws z ~ Categorical(M_j[y]).

Worker types (`Static.worker_type`):
  * ``perfect``: identity.
  * ``uniform``: diagonal ~ Normal(reliability_mean, reliability_std) clipped to [0, 1], the
    rest of each row spread as normalised uniform noise.
  * ``structured_noise`` (``amt_structured_noise``): for every real-worker group, the
    group's total counts plus 10 x the counts of one random worker of the group, summed over
    groups, restricted to the experiment's classes, rows normalised; then
    ``out_of_group_noise`` (3%) of each row's in-group mass is moved evenly to the classes
    outside the row's group.
  * ``uniform_noise`` (``amt_uniform_noise``): the same sampled matrix reduced to its
    diagonal, (1 - diagonal) spread evenly over the other K - 1 classes, then the same
    out-of-group move (the original implementation applies it to both real-worker types).
  * ``adversarial``: never right, uniform over the K - 1 wrong labels (an edge case).
  * ``item_difficulty`` (``amt_item_difficulty``): the ``structured_noise`` workers, but some
    images are harder than others for everybody. Item i has a difficulty d_i in [0, 1] with
    mean ``difficulty_mean`` and standard deviation ``difficulty_spread``, most images easy
    and a long tail hard (`item_difficulty`); a worker answering it uses their row moved
    toward their own confusable classes when d_i is above the mean and toward the right
    answer when below (`harden_rows`). The move is linear in
    d_i, so E_d[accuracy] is the worker's structured accuracy: on average over items every
    real-worker group is exactly as accurate as its Mechanical Turk counts. Spread 0 is
    exactly ``structured_noise``.

Each seed draws its own pool of W workers from its own key, and (``item_difficulty``) its
own item difficulties from its own difficulty key (`item_difficulty`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxanno.types import CrowdStats, Params, Static, WorkerPool

REAL_WORKER_BOOST = 10.0  # weight of the one sampled real worker over its group's total

# prior type -> (matrix it is built from, shape); 'predefined_homegeneous' is separate.
_PRIOR_SOURCES = {
    "homegeneous_workers": ("crowd", "mean"),
    "homegeneous_workers_diagonal_perfect": ("crowd", "diagonal_perfect"),
    "homegeneous_workers_perfect": ("crowd", "perfect"),
    "heterogeneous_workers": ("own", "mean"),
    "heterogeneous_workers_diagonal_perfect": ("own", "diagonal_perfect"),
    "heterogeneous_workers_perfect": ("own", "perfect"),
}


def _normalise_rows(m: jax.Array) -> jax.Array:
    """Rows divided by their sums; an all-zero row becomes the identity row."""
    total = m.sum(-1, keepdims=True)
    eye = jnp.eye(m.shape[-1], dtype=m.dtype)
    return jnp.where(total > 0, m / jnp.where(total > 0, total, 1.0), eye)


def _uniform_worker(num_classes: int, params: Params, key: jax.Array) -> jax.Array:
    """(K, K) diagonal ~ N(mean, std) clipped, off-diagonal normalised uniform noise."""
    k_diag, k_noise = jax.random.split(key)
    diag = params.reliability_mean + params.reliability_std * jax.random.normal(k_diag, (num_classes,))
    diag = jnp.clip(diag, 0.0, 1.0)
    noise = jax.random.uniform(k_noise, (num_classes, num_classes))
    off = jnp.where(jnp.eye(num_classes, dtype=bool), 0.0, noise)
    off = off / off.sum(-1, keepdims=True)
    return jnp.where(jnp.eye(num_classes, dtype=bool), diag[:, None], off * (1 - diag)[:, None])


def _real_worker_counts(crowd: CrowdStats, key: jax.Array) -> jax.Array:
    """(K, K) counts: every group's total plus 10 x one random worker of that group."""
    num_groups, per_group = crowd.worker_valid.shape
    logits = jnp.where(crowd.worker_valid, 0.0, -jnp.inf)
    picked = jax.random.categorical(key, logits, axis=-1)  # (G,)
    one = crowd.worker_counts[jnp.arange(num_groups), picked]  # (G, K, K)
    return (crowd.group_totals + REAL_WORKER_BOOST * one).sum(0)


def _spread_out_of_group(m: jax.Array, class_group: jax.Array, noise: jax.Array) -> jax.Array:
    """Move `noise` of each row's in-group mass evenly onto the out-of-group classes.

    Rows of the 'other' class (group -1) and rows with no out-of-group class are unchanged.
    """
    k = m.shape[-1]
    same = (class_group[:, None] == class_group[None, :]) | jnp.eye(k, dtype=bool)
    n_out = (~same).sum(-1, keepdims=True)
    applies = (class_group[:, None] >= 0) & (n_out > 0)
    in_mass = jnp.where(same, m, 0.0).sum(-1, keepdims=True)
    moved = jnp.where(same, m * (1 - noise), m + in_mass * noise / jnp.maximum(n_out, 1))
    return jnp.where(applies, moved, m)


def _keep_diagonal_only(m: jax.Array) -> jax.Array:
    """Each row keeps its diagonal and spreads the rest evenly over the other classes."""
    k = m.shape[-1]
    diag = jnp.diagonal(m)
    off = ((1 - diag) / (k - 1))[:, None]
    return jnp.where(jnp.eye(k, dtype=bool), diag[:, None], off)


def sample_confusion(static: Static, params: Params, crowd: CrowdStats, key: jax.Array) -> jax.Array:
    """One worker's true confusion matrix.

    Returns:
      (K, K) f32, rows sum to 1.
    """
    k = static.num_classes
    kind = static.worker_type
    if kind == "perfect":
        return jnp.eye(k, dtype=jnp.float32)
    if kind == "adversarial":
        return (1 - jnp.eye(k, dtype=jnp.float32)) / (k - 1)
    if kind == "uniform":
        return _uniform_worker(k, params, key)
    m = _normalise_rows(_real_worker_counts(crowd, key))
    if kind == "uniform_noise":
        m = _keep_diagonal_only(m)
    return _spread_out_of_group(m, crowd.class_group, params.out_of_group_noise)


def _homogeneous(counts: jax.Array, kind: str) -> jax.Array:
    """The three prior shapes built from one (K, K) count or probability matrix."""
    k = counts.shape[-1]
    eye = jnp.eye(k, dtype=bool)
    diag = jnp.diagonal(counts)
    row = counts.sum(-1)
    if kind == "perfect":
        return counts
    if kind == "diagonal_perfect":
        return jnp.where(eye, diag[:, None], ((row - diag) / (k - 1))[:, None])
    off = (row.mean() - diag.mean()) / (k - 1)
    return jnp.where(eye, diag.mean(), off)


def prior_alpha(static: Static, params: Params, crowd: CrowdStats, true_confusion: jax.Array) -> jax.Array:
    """Dirichlet pseudo-counts of every worker's confusion rows, times `prior_strength`.

    ``homegeneous_*`` priors come from the real crowd's global counts G, ``heterogeneous_*``
    from each worker's own true matrix (an oracle, for ablations); the suffix picks the shape:
    none = one shared diagonal and off-diagonal value, ``_diagonal_perfect`` = per-class
    diagonal with the rest of the row spread evenly, ``_perfect`` = the matrix itself.
    ``predefined_homegeneous``: diagonal ``pos_count``, off-diagonal ``neg_count / K``.

    Args:
      true_confusion: (W, K, K) the pool's true matrices.
    Returns:
      (W, K, K) f32 non-negative pseudo-counts.
    """
    w, k = static.num_workers, static.num_classes
    kind = static.prior_type
    if kind == "predefined_homegeneous":
        eye = jnp.eye(k, dtype=bool)
        one = jnp.where(eye, params.prior_pos_count, params.prior_neg_count / k)
        base = jnp.broadcast_to(one, (w, k, k))
    else:
        source, shape = _PRIOR_SOURCES[kind]
        if source == "crowd":
            base = jnp.broadcast_to(_homogeneous(crowd.global_counts, shape), (w, k, k))
        else:
            base = jax.vmap(lambda m: _homogeneous(m, shape))(true_confusion)
    return (base * params.prior_strength).astype(jnp.float32)


def init_pool(static: Static, params: Params, crowd: CrowdStats, key: jax.Array) -> WorkerPool:
    """Draw one seed's pool of W workers and their priors.

    Returns:
      `WorkerPool` with (W, K, K) true matrices and prior pseudo-counts.
    """
    keys = jax.random.split(key, static.num_workers)
    confusion = jax.vmap(lambda k: sample_confusion(static, params, crowd, k))(keys)
    return WorkerPool(
        true_confusion=confusion.astype(jnp.float32),
        prior_alpha=prior_alpha(static, params, crowd, confusion),
    )


def max_difficulty_spread(mean: float) -> float:
    """The largest `difficulty_spread` at this mean: the standard deviation of Beta(1, (1 - mean) / mean)."""
    return mean * ((1 - mean) / (1 + mean)) ** 0.5


def item_difficulty(params: Params, key: jax.Array, items: jax.Array) -> jax.Array:
    """Difficulties of the given items: mean `difficulty_mean` m, standard deviation `difficulty_spread`.

    d = m + t (x - m) with x ~ Beta(1, (1 - m) / m), whose mean is m, drawn in closed form
    (x = 1 - (1 - u)^(m / (1 - m)), u uniform): a density falling from d = 0, so most
    images are easy and a long tail is hard (m = 0.25: Beta(1, 3)). The scale t in [0, 1] is
    spread / `max_difficulty_spread` (m); spread 0 gives d = m for every item, bit for bit, and
    a spread above the maximum (refused by the config rules) is treated as the maximum.

    Item i's difficulty is drawn from ``fold_in(key, i)`` alone, so it is the same whichever
    step asks for it and whichever other items are asked with it: nothing is stored, a
    resumed run sees the same difficulties, and ``item_difficulty(params, key, arange(N))``
    is the whole (N,) vector.

    Args:
      key: the seed's difficulty key.
      items: (...) i32 item indices, any shape.
    Returns:
      (...) f32 difficulties in [0, 1], the shape of `items`.
    """
    mean, spread = params.difficulty_mean, params.difficulty_spread
    u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(items.reshape(-1)).reshape(items.shape)
    x = -jnp.expm1(jnp.log1p(-u) * (mean / (1 - mean)))  # Beta(1, (1 - m) / m) by its inverse CDF
    scale = jnp.clip(spread / max_difficulty_spread(mean), 0.0, 1.0)
    return jnp.clip(mean + scale * (x - mean), 0.0, 1.0).astype(jnp.float32)


def harden_rows(rows: jax.Array, true_label: jax.Array, difficulty: jax.Array, mean: jax.Array) -> jax.Array:
    """Answer distributions of items of the given difficulties, mean-preserving in accuracy.

    A row r with accuracy p = r[y] becomes r + delta (e_y - c), where c is r's wrong-answer
    mass renormalised (the worker's own confusable classes: for real workers, their group's
    confusions plus the sampled worker's) and delta = s(p) (mean - d), with
    s(p) = min(p / (1 - mean), (1 - p) / mean) the largest slope that keeps every entry in
    [0, 1] for every d in [0, 1]. The accuracy becomes p + delta: an easy item (d = 0) moves
    toward the right answer, a hard one (d = 1) toward the confusable classes, never toward
    uniform noise, so hard images produce the structured, correlated mistakes of real
    annotators (two dog breeds), which is what makes them hard for aggregation too. As
    delta is linear in d and E[d] = mean, E_d[accuracy] = p exactly; d = mean leaves the row
    bit for bit unchanged. A row with p = 0 or p = 1 is left unchanged (s = 0).

    Args:
      rows: (..., K) answer distributions, rows sum to 1.
      true_label: (...) i32.
      difficulty: (...) f32 in [0, 1].
      mean: () f32 in (0, 1), the mean difficulty.
    Returns:
      (..., K) f32 non-negative, rows sum to 1.
    """
    onehot = jax.nn.one_hot(true_label, rows.shape[-1], dtype=bool)
    p = jnp.where(onehot, rows, 0.0).sum(-1)
    wrong = 1.0 - p
    slope = jnp.maximum(jnp.minimum(p / (1 - mean), wrong / mean), 0.0)
    delta = slope * (mean - difficulty)
    confusable = jnp.where(onehot, 0.0, rows) / jnp.where(wrong > 0, wrong, 1.0)[..., None]
    return jnp.maximum(rows + delta[..., None] * (onehot - confusable), 0.0)


def answer(
    true_confusion: jax.Array,
    worker: jax.Array,
    true_label: jax.Array,
    key: jax.Array,
    difficulty: jax.Array | None = None,
    difficulty_mean: jax.Array | float = 0.25,
) -> jax.Array:
    """Simulated answers z ~ Categorical(M_worker[true_label]), optionally per item difficulty.

    Args:
      true_confusion: (W, K, K).
      worker, true_label: (...) i32 (any valid index on masked lanes), any shape.
      difficulty: (...) f32 difficulty of each lane's item (``item_difficulty`` workers), or
        None: every item alike.
      difficulty_mean: () the mean difficulty (see `harden_rows`).
    Returns:
      (...) i32 given labels, the shape of `worker`.
    """
    rows = true_confusion[worker, true_label]  # (..., K)
    if difficulty is not None:
        rows = harden_rows(rows, true_label, difficulty, jnp.asarray(difficulty_mean, jnp.float32))
    return jax.random.categorical(key, jnp.log(rows), axis=-1).astype(jnp.int32)
