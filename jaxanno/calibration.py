"""Temperature calibration of the learner: probabilities softmax(logits / T).

Two solvers for T, both fitted on the validation rows (`LearnerStatic.temperature_solver`):

* ``'reference'`` (`temperature_lbfgs`): the original implementation's calibration, torch's
  L-BFGS without line search, 50 iterations of step 0.001 from T = 1.5, which barely moves
  T; the result is dropped (T = 1) when it makes the validation NLL or the 15-bin ECE worse.
* ``'exact'`` (`temperature_exact`): the T minimising the validation NLL, by bisection.

With ``calibrate='none'`` T is 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxanno import metrics, ops
from jaxanno.types import Static

CALIBRATION_ECE_BINS = 15  # the L-BFGS temperature's keep-or-revert check uses a 15-bin ECE
LBFGS_T0 = 1.5  # the L-BFGS temperature search starts here ...
LBFGS_LR = 1e-3  # ... with this step size ...
LBFGS_ITERS = 50  # ... for at most this many iterations


def _nll(logits: jax.Array, labels: jax.Array, weight: jax.Array, temperature: jax.Array) -> jax.Array:
    return ops.masked_cross_entropy(logits / temperature, labels, weight)


def _calibration_ece(logits, labels, weight) -> jax.Array:
    probs = jax.nn.softmax(logits, -1)
    correct = ops.first_argmax(probs) == labels
    ece = metrics.expected_calibration_error(probs.max(-1), correct, weight > 0, CALIBRATION_ECE_BINS)
    return jnp.nan_to_num(ece)


class LBFGSState(NamedTuple):
    """The carry of `temperature_lbfgs`'s one-dimensional L-BFGS iterations."""

    temperature: jax.Array  # () f32 current T
    grad: jax.Array  # () f32 d NLL / d T at T
    loss: jax.Array  # () f32 NLL at T
    ratio: jax.Array  # () f32 s / y of the latest curvature pair: the 1-D inverse Hessian (1 at first)
    prev_grad: jax.Array  # () f32 the gradient before the latest step
    prev_step: jax.Array  # () f32 the latest step
    stopped: jax.Array  # () bool a tolerance was met: T stays where it is


LBFGS_TOL_CHANGE, LBFGS_TOL_GRAD = 1e-9, 1e-7  # torch.optim.LBFGS's default tolerances


def _lbfgs_iteration(nll: Callable, grad: Callable, i, c: LBFGSState) -> LBFGSState:
    """One torch-style L-BFGS iteration in one dimension, without line search."""
    y, s = c.grad - c.prev_grad, c.prev_step
    ratio = jnp.where((i > 0) & (y * s > 1e-10), s / jnp.where(y == 0, 1.0, y), c.ratio)
    direction = -ratio * c.grad
    lr = jnp.where(i == 0, LBFGS_LR * jnp.minimum(1.0, 1.0 / jnp.abs(c.grad)), LBFGS_LR)
    stop_now = c.stopped | (c.grad * direction > -LBFGS_TOL_CHANGE)
    step = jnp.where(stop_now, 0.0, lr * direction)
    new_t = c.temperature + step
    new_loss, new_g = nll(new_t), grad(new_t)
    stop_after = (
        stop_now
        | (jnp.abs(new_g) <= LBFGS_TOL_GRAD)
        | (jnp.abs(step) <= LBFGS_TOL_CHANGE)
        | (jnp.abs(new_loss - c.loss) < LBFGS_TOL_CHANGE)
    )
    keep = lambda a, b: jnp.where(stop_now, a, b)  # noqa: E731
    return LBFGSState(temperature=keep(c.temperature, new_t), grad=keep(c.grad, new_g), loss=keep(c.loss, new_loss),
                      ratio=ratio, prev_grad=keep(c.prev_grad, c.grad), prev_step=keep(c.prev_step, step),
                      stopped=stop_after)  # fmt: skip


def temperature_lbfgs(logits: jax.Array, labels: jax.Array, weight: jax.Array) -> jax.Array:
    """() the temperature of torch's L-BFGS (lr 0.001, 50 iterations) from T = 1.5.

    This is the original implementation's calibration (``temperature_solver='reference'``).
    In one dimension L-BFGS without line search takes a first step of
    -lr * min(1, 1/|g|) * g, then secant steps -lr * g * s / y, stopping on torch's
    tolerances. The result is reverted to T = 1 when it leaves [-100, 100], and the
    uncalibrated model is kept (T = 1) when validation NLL or ECE is worse than at T = 1.

    Args:
      logits: (V, K) validation logits; labels: (V,) i32; weight: (V,) f32 row weights.
    """
    nll = lambda t: _nll(logits, labels, weight, t)  # noqa: E731
    grad = jax.grad(nll)
    t0 = jnp.float32(LBFGS_T0)
    g0 = grad(t0)
    start = LBFGSState(t0, g0, nll(t0), jnp.float32(1.0), g0, jnp.float32(0.0), jnp.abs(g0) <= LBFGS_TOL_GRAD)
    t = jax.lax.fori_loop(0, LBFGS_ITERS, lambda i, c: _lbfgs_iteration(nll, grad, i, c), start).temperature
    t = jnp.where(jnp.abs(t) > 100.0, 1.0, t)
    one = jnp.float32(1.0)
    worse = (_nll(logits, labels, weight, t) > _nll(logits, labels, weight, one)) | (
        _calibration_ece(logits / t, labels, weight) > _calibration_ece(logits, labels, weight)
    )
    return jnp.where(worse, one, t)


def temperature_exact(logits: jax.Array, labels: jax.Array, weight: jax.Array, iters: int = 60) -> jax.Array:
    """() the temperature minimising validation NLL, by bisection on d NLL / d beta.

    NLL is convex in beta = 1 / T, so its derivative is monotone; the search runs over
    log beta in [log 1e-3, log 1e3] (T in [1e-3, 1e3]).
    """
    dnll = jax.grad(lambda beta: _nll(logits, labels, weight, 1.0 / beta))

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        rising = dnll(jnp.exp(mid)) > 0
        return jnp.where(rising, lo, mid), jnp.where(rising, mid, hi)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.log(jnp.float32(1e-3)), jnp.log(jnp.float32(1e3))))
    has_data = weight.sum() > 0
    return jnp.where(has_data, 1.0 / jnp.exp(0.5 * (lo + hi)), 1.0)


def calibrate(static: Static, logits: jax.Array, labels: jax.Array, weight: jax.Array) -> jax.Array:
    """() the calibration temperature of the configured solver (1 when uncalibrated)."""
    ls = static.learner
    if ls.calibrate == "none":
        return jnp.float32(1.0)
    if ls.temperature_solver == "exact":
        return temperature_exact(logits, labels, weight)
    return temperature_lbfgs(logits, labels, weight)
