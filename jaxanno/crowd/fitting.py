"""The compiled programs of a crowd fit: EM to convergence, learner rounds, worker priors.

A fit runs one jitted program for EM (`solve`: `em.initial_counts`, then `em.solve`, then
the reported posterior, pseudo-counts and confusion matrices) and, with task features, one
per learner round (`learner_round`). Programs are compiled per (`Static`, bucketed shapes):

* shapes come from `table.encode`'s buckets;
* the iteration limit is a traced `max_iterations` below a bucketed capacity
  (`iteration_capacity`), and tolerance, prior strength and counts, log epsilon and the
  risk threshold are `Params`: new values of any of them reuse the program;
* keys are built on the host from their raw data (`host_key`) and split inside the
  programs, so a fit compiles no separate seeding or splitting programs.

What does recompile: the number of classes, m_step, class_prior, init, criterion,
final_e_step, a worker prior type (its own small program) and the learner's settings.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxanno import dawid_skene, em, learner, types, workers
from jaxanno.crowd.table import LabelTable, Problem
from jaxanno.types import AnnotationState, CrowdStats, LearnerOutput, Params, Static

# Worker priors a crowd fit can build: the 'heterogeneous_*' types need each worker's true
# matrix, which only the simulator has.
WORKER_PRIORS = tuple(p for p in types.PRIOR_TYPES if not p.startswith("heterogeneous"))
MIN_ITERATION_CAPACITY = 128  # smallest static EM capacity: crowd-kit's n_iter=100 and the paper's 10 share it


def iteration_capacity(n_iter: int) -> int:
    """Static EM capacity for an iteration limit: the least power of two >= n_iter, at least 128.

    Only the (capacity,) history buffer depends on it; the limit itself is traced.
    """
    return max(MIN_ITERATION_CAPACITY, 1 << (max(int(n_iter), 1) - 1).bit_length())


def host_key(seed: int) -> jax.Array:
    """``jax.random.key(seed)`` (threefry) built from its raw data on the host.

    Same key, but no seeding program to compile (about 0.15 s in a fresh process).
    """
    seed = int(seed)
    data = np.asarray([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], np.uint32)
    return jax.random.wrap_key_data(data, impl="threefry2x32")


class Fit(NamedTuple):
    """One EM fit and what is reported from it (padded shapes)."""

    solution: em.EMSolution  # counts, class prior, iterations, last E-step posterior, history
    posterior: jax.Array  # (N, K) f32 reported: the last E-step's, or a fresh E-step's (final_e_step)
    alpha: jax.Array  # (W, K, K) f32 prior pseudo-counts + final counts
    confusion: jax.Array  # (W, K, K) f32 p(given label | true class) of every worker


def _report(static, params, annotations, prior_alpha, log_learner, gold, solution, final_e_step: bool) -> Fit:
    alpha = prior_alpha + solution.counts
    posterior = solution.posterior
    if final_e_step:
        posterior = em.posterior(static, params, annotations, alpha, solution.log_class_prior, log_learner, gold)
    return Fit(solution=solution, posterior=posterior, alpha=alpha, confusion=dawid_skene.confusion(alpha))


@functools.partial(jax.jit, static_argnums=0, static_argnames="final_e_step")
def solve(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    log_learner: jax.Array | None,
    gold: jax.Array,
    key: jax.Array,
    max_iterations: jax.Array,
    final_e_step: bool = False,
) -> Fit:
    """EM to convergence (`em.initial_counts`, then `em.solve`), gold items clamped.

    Everything is the simulator's EM (same E/M order, statistics, stopping rules, early
    exit); a one-off fit also keeps the posterior of the last E-step (what crowd-kit
    reports) and the statistic of every iteration, and clamps gold items to their label in
    every E-step (as crowd-kit's ``true_labels``).

    Args:
      static: ``static.em`` holds the EM options; ``max_em_steps`` is only a capacity.
      annotations: (N, A) slots; prior_alpha: (W, K, K) pseudo-counts (strength applied).
      log_learner: (N, K) log learner prior added in every E-step, or None.
      gold: (N,) i32 gold class per item, -1 when unknown.
      key: seeds the start's and the hard M-step's tie-breaks.
      max_iterations: () i32 iteration limit, at most ``static.em.max_em_steps``.
      final_e_step: report the posterior of one more E-step with the final counts.
    Returns:
      `Fit`; with no label at all, 0 iterations and the majority-vote posterior.
    """
    k = static.num_classes
    k_init, k_iter = jax.random.split(key)
    zero = jnp.zeros((static.num_workers, k, k), jnp.float32)
    uniform = jnp.full((k,), -jnp.log(k), jnp.float32)
    counts, log_prior = em.initial_counts(static, annotations, zero, uniform, k_init, gold=gold)
    solution = em.solve(static, params, annotations, prior_alpha, counts, log_prior, log_learner, k_iter, gold=gold,
                        max_iterations=max_iterations)  # fmt: skip
    return _report(static, params, annotations, prior_alpha, log_learner, gold, solution, final_e_step)


class LearnerInputs(NamedTuple):
    """The learner's fixed inputs in a crowd fit (M = N + P rows: items, then prototypes)."""

    features: jax.Array  # (M, D) f32
    prototype_labels: jax.Array  # (P,) i32 gold labels of the prototypes
    train_items: jax.Array  # (N,) bool labelled, non-gold, real items the learner trains on
    is_gold: jax.Array  # (N,) bool gold items (validation prototypes: kept out of pseudo-labels)


@functools.partial(jax.jit, static_argnums=(0, 1), static_argnames="resolve")
def learner_round(
    static: Static,
    learner_static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    gold: jax.Array,
    inputs: LearnerInputs,
    fit: Fit,
    previous: LearnerOutput,
    key: jax.Array,
    round_index: jax.Array,
    max_iterations: jax.Array,
    resolve: bool,
) -> tuple[Fit, LearnerOutput]:
    """One round of the paper's add_annotation path: fit the learner on the posterior,
    then (with `resolve`) EM again with its probabilities as a prior, else one fresh
    E-step with them.

    Args:
      learner_static: `static` with the learner and prototypes (see `DawidSkene`).
      key: the fit's key; round r uses ``fold_in(key, 1 + r)`` (`round_index`: () i32).
    """
    k_fit, k_em = jax.random.split(jax.random.fold_in(key, 1 + round_index))
    uniform = jnp.full((static.num_classes,), 1.0 / static.num_classes)
    shown = jnp.where(inputs.is_gold[:, None], uniform, fit.posterior)
    output = learner.fit_predict(learner_static, params, inputs.features, shown, inputs.prototype_labels,
                                 inputs.train_items, previous, k_fit)  # fmt: skip
    log_learner = dawid_skene.learner_log_prior(output.probs, static.num_items)
    if resolve:
        fit = solve(static, params, annotations, prior_alpha, log_learner, gold, k_em, max_iterations,
                    final_e_step=True)  # fmt: skip
    else:
        fit = _report(static, params, annotations, prior_alpha, log_learner, gold, fit.solution, True)
    return fit, output


def learner_inputs(problem: Problem) -> LearnerInputs:
    """The learner's inputs of a prepared problem with features (host arrays placed once)."""
    table = problem.table
    n_pad = problem.gold_codes.shape[0]
    real = np.arange(n_pad) < table.num_items
    is_gold = problem.gold_codes >= 0
    labelled = np.bincount(table.task_code, minlength=n_pad) > 0
    train = labelled & ~is_gold & real
    return jax.device_put(LearnerInputs(problem.features, problem.prototype_labels, train, is_gold))


def gold_confusion_counts(table: LabelTable, gold_codes: np.ndarray) -> np.ndarray:
    """(K, K) counts of (gold class, given label) over every label of a gold task."""
    k = len(table.classes)
    truth = gold_codes[table.task_code]
    keep = truth >= 0
    flat = truth[keep] * k + table.label_code[keep]
    return np.bincount(flat, minlength=k * k).reshape(k, k).astype(np.float32)


_prior_alpha = jax.jit(workers.prior_alpha, static_argnums=0)


def worker_prior_alpha(
    static: Static, params: Params, prior: str | None, table: LabelTable, gold_codes: np.ndarray
) -> jax.Array:
    """(W, K, K) Dirichlet pseudo-counts of every worker (zeros without a prior).

    'predefined_homegeneous' needs nothing; the 'homegeneous_workers*' types are built by
    `workers.prior_alpha` from the crowd's global confusion, here counted on gold tasks.
    """
    shape = (static.num_workers, static.num_classes, static.num_classes)
    if prior is None:
        return jax.device_put(np.zeros(shape, np.float32))
    types.check_option("DawidSkene", "worker_prior", prior, WORKER_PRIORS)
    global_counts = gold_confusion_counts(table, gold_codes)
    if prior != "predefined_homegeneous" and global_counts.sum() == 0:
        raise ValueError(
            f"worker_prior {prior!r} is estimated from labels on gold tasks; "
            "expected true_labels covering some labelled tasks, found none"
        )
    k = static.num_classes
    crowd = CrowdStats(
        group_totals=np.zeros((0, k, k), np.float32),
        worker_counts=np.zeros((0, 0, k, k), np.float32),
        worker_valid=np.zeros((0, 0), bool),
        class_group=np.zeros((k,), np.int32),
        global_counts=global_counts,
    )
    static = dataclasses.replace(static, prior_type=prior)
    return _prior_alpha(static, params, jax.device_put(crowd), jax.device_put(np.zeros(shape, np.float32)))
