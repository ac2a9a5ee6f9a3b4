"""The machine learner in the loop: a small model on fixed features whose calibrated
probabilities are the label prior of the Dawid-Skene posterior.

Everything is fixed-shape and pure, so one fit is a jitted function that vmaps over seeds
(and over cross-validation folds):

* rows: the learner sees M = N + P rows (items, then prototypes) and trains on a masked,
  class-balanced subset; validation rows are compacted into a fixed-size buffer.
* fit: one batch of min(batch_size, n_train) rows per epoch, drawn with replacement with
  weight 1 / count(class); Adam with torch-style L2 (added to the gradient); learning rate
  lr_ratio * sqrt(min(batch_size, n_train)); validation every `eval_every` epochs, keeping
  the parameters with the lowest validation loss; re-initialised at every online step.
* training rows: annotated items ('none', 'mixmatch') or items whose aggregate risk is
  below the pseudo-label threshold ('pseudolabel'), plus the prototypes unless they
  validate; validation: the prototypes, or a random subset of the training rows of size
  P. A per-class rule then balances the two (see `make_split`).
* calibration: temperature scaling on the validation rows (`jaxanno.calibration`), or
  k-fold cross-validation ('cv', used by lean): the folds' calibrated probabilities
  averaged.
* MixMatch on fixed features: no augmentation; label guessing with sharpening, mix-up of
  features and targets, and an L2 consistency term on the unlabelled part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxanno import calibration, ops
from jaxanno.types import LearnerOutput, Params, Static

SHARPEN_TEMPERATURE = 0.5


def _torch_uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TorchLinear(nn.Module):
    """A dense layer initialised as torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        bound = 1.0 / float(x.shape[-1]) ** 0.5
        kernel = self.param("kernel", _torch_uniform(bound), (x.shape[-1], self.features))
        bias = self.param("bias", _torch_uniform(bound), (self.features,))
        return x @ kernel + bias


class MLP(nn.Module):
    """The default learner: (Linear - tanh) x len(hidden_sizes), then Linear to K logits.

    ``hidden_sizes=()`` is a linear probe.
    """

    num_classes: int
    hidden_sizes: Sequence[int] = (64,)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_sizes:
            x = jnp.tanh(TorchLinear(width)(x))
        return TorchLinear(self.num_classes)(x)


class FitResult(NamedTuple):
    params: dict  # the model parameters with the lowest validation loss
    best_loss: jax.Array  # () f32, their validation loss (inf if never evaluated)


class Split(NamedTuple):
    """Training and validation rows of one fit over the M = N + P rows."""

    labels: jax.Array  # (M,) i32 hard training label of every row
    train: jax.Array  # (M,) bool
    val: jax.Array  # (M,) bool
    unlabelled: jax.Array  # (M,) bool, MixMatch's unlabelled pool


def validation_capacity(static: Static) -> int:
    """Rows the validation buffer can hold: P plus at most floor(n_proto/2) per class."""
    return static.num_prototypes + static.num_classes * (static.n_prototype_per_class // 2)


def balanced_weights(labels: jax.Array, mask: jax.Array, num_classes: int) -> jax.Array:
    """(M,) f32 sampling weight 1 / count(class) on masked rows, 0 elsewhere."""
    counts = jax.ops.segment_sum(mask.astype(jnp.float32), labels, num_classes)
    return jnp.where(mask, 1.0 / jnp.maximum(counts[labels], 1.0), 0.0)


def draw_rows(weights: jax.Array, num: int, key: jax.Array) -> jax.Array:
    """(num,) rows drawn with replacement with probability proportional to `weights`.

    Inverse-CDF sampling: rows of weight 0 are never drawn, so a masked draw equals a draw
    over the sliced set with the same uniforms.
    """
    cdf = jnp.cumsum(weights)
    u = jax.random.uniform(key, (num,)) * cdf[-1]
    return jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, weights.shape[0] - 1)


def _optimizer(params: Params, learning_rate: jax.Array) -> optax.GradientTransformation:
    """Adam with L2 added to the gradient before the moments (torch.optim.Adam style)."""
    return optax.chain(
        optax.add_decayed_weights(params.weight_decay),
        optax.scale_by_adam(),
        optax.scale(-learning_rate),
    )


def _sharpen(p: jax.Array) -> jax.Array:
    p = p ** (1.0 / SHARPEN_TEMPERATURE)
    return p / p.sum(-1, keepdims=True)


def _mixmatch_loss(model, variables, params: Params, x_l, y_l, lane_l, x_u, lane_u, ramp, key):
    """MixMatch on fixed features: guess + sharpen, mix-up, CE + weighted L2."""
    k_lam, k_perm = jax.random.split(key)
    guess = jax.lax.stop_gradient(jax.nn.softmax(model.apply(variables, x_u), -1))
    targets = jnp.concatenate([jax.nn.one_hot(y_l, guess.shape[-1]), _sharpen(guess)])
    x = jnp.concatenate([x_l, x_u])
    lam = jax.random.beta(k_lam, params.mixmatch_alpha, params.mixmatch_alpha)
    lam = jnp.maximum(lam, 1.0 - lam)
    perm = jax.random.permutation(k_perm, x.shape[0])
    mixed_x = lam * x + (1 - lam) * x[perm]
    mixed_t = lam * targets + (1 - lam) * targets[perm]
    logits = model.apply(variables, mixed_x)
    b = x_l.shape[0]
    ce = -(mixed_t[:b] * jax.nn.log_softmax(logits[:b])).sum(-1)
    l_x = (ce * lane_l).sum() / jnp.maximum(lane_l.sum(), 1.0)
    sq = ((jax.nn.softmax(logits[b:]) - mixed_t[b:]) ** 2).mean(-1)
    l_u = (sq * lane_u).sum() / jnp.maximum(lane_u.sum(), 1.0)
    return l_x + params.mixmatch_weight * ramp * l_u


class FitState(NamedTuple):
    """The carry of `fit`'s training loop."""

    variables: Any  # the model parameters being trained
    opt_state: Any  # the optimiser's state for them
    best_variables: Any  # the parameters with the lowest validation loss so far
    best_loss: jax.Array  # () f32 their validation loss (inf before the first evaluation)


def _epoch_loss(static: Static, params: Params, features, labels, train, unlabelled) -> Callable:
    """The loss of one epoch's batch: ``loss(variables, epoch, key) -> () f32``.

    A batch is ``batch_size`` lanes drawn with class-balanced weights, of which the first
    min(batch_size, n_train) count; MixMatch adds ``batch_size * mixmatch_mu`` unlabelled
    rows (all lanes count while any unlabelled row exists).
    """
    ls, model = static.learner, static.learner.model
    weights = balanced_weights(labels, train, static.num_classes)
    lane = (jnp.arange(ls.batch_size) < jnp.minimum(ls.batch_size, train.sum())).astype(jnp.float32)
    mixmatch = ls.semi_supervised == "mixmatch"
    if mixmatch:
        u_weights = unlabelled.astype(jnp.float32)
        lane_u = jnp.broadcast_to(u_weights.sum() > 0, (ls.batch_size * ls.mixmatch_mu,)).astype(jnp.float32)

    def loss(variables, epoch, key):
        k_rows, k_u, k_mix = jax.random.split(key, 3)
        rows = draw_rows(weights, ls.batch_size, k_rows)
        if not mixmatch:
            return ops.masked_cross_entropy(model.apply(variables, features[rows]), labels[rows], lane)
        u_rows = draw_rows(u_weights, ls.batch_size * ls.mixmatch_mu, k_u)
        ramp = jnp.minimum(1.0, (epoch + 1.0) / ls.max_epochs)
        return _mixmatch_loss(
            model, variables, params, features[rows], labels[rows], lane, features[u_rows], lane_u, ramp, k_mix
        )

    return loss


def fit(
    static: Static,
    params: Params,
    features: jax.Array,
    labels: jax.Array,
    train: jax.Array,
    val_rows: jax.Array,
    val_valid: jax.Array,
    key: jax.Array,
    unlabelled: jax.Array | None = None,
) -> FitResult:
    """Train a freshly initialised model; keep the parameters with the best validation loss.

    Args:
      features: (M, D) f32; labels: (M,) i32 hard labels; train: (M,) bool training rows.
      val_rows: (V,) i32 validation rows; val_valid: (V,) bool, False on padding.
      key: seeds initialisation, batch draws and MixMatch.
      unlabelled: (M,) bool rows MixMatch may draw unlabelled batches from.
    Returns:
      `FitResult` with the best parameters and their mean validation loss.
    """
    ls, model = static.learner, static.learner.model
    m = features.shape[0]
    chex.assert_shape(features, (m, static.feature_dim))
    chex.assert_shape([labels, train] + ([] if unlabelled is None else [unlabelled]), (m,))
    chex.assert_equal_shape([val_rows, val_valid])
    chex.assert_rank(val_rows, 1)
    k_init, k_epochs = jax.random.split(key)
    variables = model.init(k_init, features[:1])
    n_train = train.sum()
    batch = jnp.minimum(ls.batch_size, n_train)
    tx = _optimizer(params, params.lr_ratio * jnp.sqrt(jnp.maximum(batch, 1).astype(jnp.float32)))
    loss_fn = _epoch_loss(static, params, features, labels, train, unlabelled)
    val_x, val_y, val_w = features[val_rows], labels[val_rows], val_valid.astype(jnp.float32)

    def epoch_step(s: FitState, epoch) -> tuple[FitState, None]:
        grads = jax.grad(loss_fn)(s.variables, epoch, jax.random.fold_in(k_epochs, epoch))
        updates, opt_state = tx.update(grads, s.opt_state, s.variables)
        stepped = optax.apply_updates(s.variables, updates)
        trains = n_train > 0  # with nothing to train on, the initial model stays
        variables = jax.tree.map(lambda a, b: jnp.where(trains, b, a), s.variables, stepped)
        return s._replace(variables=variables, opt_state=opt_state), None

    def eval_block(s: FitState, block) -> tuple[FitState, None]:
        s, _ = jax.lax.scan(epoch_step, s, block * ls.eval_every + jnp.arange(ls.eval_every))
        loss = ops.masked_cross_entropy(model.apply(s.variables, val_x), val_y, val_w)
        better = loss < s.best_loss
        best = jax.tree.map(lambda a, b: jnp.where(better, b, a), s.best_variables, s.variables)
        return s._replace(best_variables=best, best_loss=jnp.where(better, loss, s.best_loss)), None

    start = FitState(variables, tx.init(variables), variables, jnp.float32(jnp.inf))
    n_blocks = ls.max_epochs // ls.eval_every  # epochs after the last check cannot matter
    final, _ = jax.lax.scan(eval_block, start, jnp.arange(n_blocks))
    return FitResult(params=final.best_variables, best_loss=final.best_loss)


def predict(static: Static, model_params: dict, features: jax.Array, temperature: jax.Array) -> jax.Array:
    """(M, K) calibrated probabilities of every row."""
    return jax.nn.softmax(static.learner.model.apply(model_params, features) / temperature, -1)


def group_rank(group: jax.Array, priority: jax.Array) -> jax.Array:
    """(M,) rank of every row among the rows of its group, ordered by `priority`.

    Args:
      group: (M,) int group of every row; priority: (M,) the order within a group.
    """
    order = jnp.lexsort((priority, group))
    sorted_group = group[order]
    first = jnp.searchsorted(sorted_group, sorted_group, side="left")
    rank_sorted = jnp.arange(group.shape[0]) - first
    return jnp.zeros_like(group).at[order].set(rank_sorted.astype(group.dtype))


def _balance(static: Static, labels, train, val, key) -> tuple[jax.Array, jax.Array]:
    """The original implementation's per-class balancing rule.

    A class with fewer than floor(n_proto/2) validation rows gets that many (moved from its
    training rows, as far as it has them); otherwise a class with fewer training than
    validation rows moves half of its validation rows to training. Moved rows are chosen
    at random."""
    k = static.num_classes
    need = static.n_prototype_per_class // 2
    n_train = jax.ops.segment_sum(train.astype(jnp.int32), labels, k)
    n_val = jax.ops.segment_sum(val.astype(jnp.int32), labels, k)
    to_val_count = jnp.where(n_val < need, jnp.minimum(need - n_val, n_train), 0)
    to_train_count = jnp.where((n_val >= need) & (n_train < n_val), n_val // 2, 0)
    group = jnp.where(train, labels, jnp.where(val, k + labels, 2 * k))
    rank = group_rank(group, jax.random.uniform(key, labels.shape))
    to_val = train & (rank < to_val_count[labels])
    to_train = val & (rank < to_train_count[labels])
    return (train & ~to_val) | to_train, (val & ~to_train) | to_val


def make_split(
    static: Static, params: Params, labels: jax.Array, annotated: jax.Array, risk: jax.Array, key: jax.Array
) -> Split:
    """Training and validation rows of one online step.

    Args:
      labels: (M,) hard labels: argmax posterior for items, the truth for prototypes.
      annotated: (N,) items with at least one label; risk: (N,) aggregate risk.
    Returns:
      `Split`. Training items: annotated ('none', 'mixmatch') or risk below the
      pseudo-label threshold ('pseudolabel'); prototypes train unless they validate.
      Validation: the prototypes, or a random subset of the training rows of size P.
    """
    ls = static.learner
    n, p = static.num_items, static.num_prototypes
    k_val, k_balance = jax.random.split(key)
    if ls.semi_supervised == "pseudolabel":
        item_train = risk < params.pseudo_label_threshold
    else:
        item_train = annotated
    is_proto = jnp.arange(n + p) >= n
    train = jnp.concatenate([item_train, jnp.full(p, not ls.prototype_as_val)])
    if ls.prototype_as_val:
        val = is_proto
    else:
        rank = group_rank(jnp.where(train, 0, 1), jax.random.uniform(k_val, train.shape))
        val = train & (rank < p)
        train = train & ~val
    train, val = _balance(static, labels, train, val, k_balance)
    return Split(labels=labels, train=train, val=val, unlabelled=~is_proto & ~train & ~val)


def compact(mask: jax.Array, capacity: int) -> tuple[jax.Array, jax.Array]:
    """(capacity,) indices of the True rows of `mask` (padded with 0) and their validity."""
    rows = jnp.nonzero(mask, size=capacity, fill_value=0)[0].astype(jnp.int32)
    return rows, jnp.arange(capacity) < mask.sum()


class Prediction(NamedTuple):
    probs: jax.Array  # (M, K) calibrated probabilities
    loss: jax.Array  # () validation loss that ranks this model across steps
    temperature: jax.Array  # () f32 (mean over folds for 'cv')


def fit_calibrate_predict(
    static: Static,
    params: Params,
    features: jax.Array,
    labels: jax.Array,
    train: jax.Array,
    val: jax.Array,
    capacity: int,
    key: jax.Array,
    unlabelled: jax.Array | None,
) -> Prediction:
    """One model: fit, temperature-calibrate on its validation rows, predict every row.

    Args:
      features: (M, D); labels: (M,) i32; train, val, unlabelled: (M,) bool row masks;
      capacity: size of the compacted validation buffer (static, >= val.sum()).
    """
    val_rows, val_valid = compact(val, capacity)
    res = fit(static, params, features, labels, train, val_rows, val_valid, key, unlabelled)
    val_logits = static.learner.model.apply(res.params, features[val_rows])
    temperature = calibration.calibrate(static, val_logits, labels[val_rows], val_valid.astype(jnp.float32))
    return Prediction(predict(static, res.params, features, temperature), res.best_loss, temperature)


def stratified_folds(labels: jax.Array, pool: jax.Array, num_classes: int, num_folds: int, key: jax.Array):
    """(M,) i32 fold of every row: each class's pool rows dealt to the folds in random order.

    Rows outside `pool` get a fold too (mask them with `pool`). Fold sizes differ by at
    most one per class.
    """
    rank = group_rank(jnp.where(pool, labels, num_classes), jax.random.uniform(key, labels.shape))
    return rank % num_folds


def fold_capacity(static: Static, num_rows: int) -> int:
    """Rows a cross-validation fold's validation buffer holds: ceil(M / folds) + K."""
    return -(-num_rows // static.learner.cv_folds) + static.num_classes


def cross_validate(static: Static, params: Params, features: jax.Array, split: Split, key: jax.Array) -> Prediction:
    """k stratified folds over training + validation rows, fitted in parallel (vmap).

    Probabilities are averaged over the folds whose training and validation parts both
    contain every class (all folds if none does); the loss is the mean of their losses.

    Args:
      features: (M, D); split: the rows of this step; key: split into (folds, fits).
    """
    ls = static.learner
    k, m = static.num_classes, split.labels.shape[0]
    k_fold, k_fit = jax.random.split(key)
    pool = split.train | split.val
    fold = stratified_folds(split.labels, pool, k, ls.cv_folds, k_fold)
    capacity = fold_capacity(static, m)

    def one_fold(f, fold_key):
        train = pool & (fold != f)
        val = pool & (fold == f)
        pred = fit_calibrate_predict(
            static, params, features, split.labels, train, val, capacity, fold_key, split.unlabelled
        )
        seen = lambda mask: (jax.ops.segment_sum(mask.astype(jnp.int32), split.labels, k) > 0).all()  # noqa: E731
        return pred, seen(train) & seen(val)

    preds, ok = jax.vmap(one_fold)(jnp.arange(ls.cv_folds), jax.random.split(k_fit, ls.cv_folds))
    w = jnp.where(ok.any(), ok, True).astype(jnp.float32)
    w = w / w.sum()
    return Prediction(
        probs=jnp.einsum("f,fmk->mk", w, preds.probs),
        loss=(w * preds.loss).sum(),
        temperature=(w * preds.temperature).sum(),
    )


def init_output(static: Static) -> LearnerOutput | None:
    """Uniform probabilities and an infinite best loss; None without a learner."""
    if static.learner is None:
        return None
    m, k = static.num_rows, static.num_classes
    return LearnerOutput(
        probs=jnp.full((m, k), 1.0 / k, jnp.float32),
        best_loss=jnp.float32(jnp.inf),
        last_loss=jnp.float32(jnp.inf),
        temperature=jnp.float32(1.0),
    )


def fit_predict(
    static: Static,
    params: Params,
    features: jax.Array,
    item_posterior: jax.Array,
    prototype_labels: jax.Array,
    annotated: jax.Array,
    previous: LearnerOutput,
    key: jax.Array,
) -> LearnerOutput:
    """Refit the learner on the current posterior; return the probabilities to use next.

    Args:
      features: (M, D); item_posterior: (N, K) posterior after EM; prototype_labels: (P,);
      annotated: (N,) items with at least one label; previous: the previous step's output.
    Returns:
      The new `LearnerOutput`. With 'global' early-stop scope the probabilities of the best
      model ever (by validation loss) are kept when this fit is not better.
    """
    ls = static.learner
    k_split, k_fit = jax.random.split(key)
    labels = jnp.concatenate([ops.first_argmax(item_posterior), prototype_labels])
    split = make_split(static, params, labels, annotated, 1.0 - item_posterior.max(-1), k_split)
    if ls.calibrate == "cv":
        pred = cross_validate(static, params, features, split, k_fit)
    else:
        pred = fit_calibrate_predict(
            static,
            params,
            features,
            labels,
            split.train,
            split.val,
            validation_capacity(static),
            k_fit,
            split.unlabelled,
        )
    better = pred.loss < previous.best_loss
    if ls.early_stop_scope == "global":
        probs = jnp.where(better, pred.probs, previous.probs)
        best = jnp.where(better, pred.loss, previous.best_loss)
    else:
        probs, best = pred.probs, jnp.minimum(pred.loss, previous.best_loss)
    return LearnerOutput(probs=probs, best_loss=best, last_loss=pred.loss, temperature=pred.temperature)
