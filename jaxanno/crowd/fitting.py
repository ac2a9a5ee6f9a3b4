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

from jaxanno import dawid_skene, em, quick_compile, types, workers
from jaxanno.crowd.table import LabelTable, Problem
from jaxanno.types import AnnotationState, CrowdStats, LearnerOutput, Params, Static

# Worker priors a crowd fit can build: the 'heterogeneous_*' types need each worker's true
# matrix, which only the simulator has; 'population' is the crowd's own pooled confusion.
WORKER_PRIORS = (*(p for p in types.PRIOR_TYPES if not p.startswith("heterogeneous")), "population")
PRIOR_ROWS = ("scaled", "normalised")  # pseudo-counts x prior_strength, or rows summing to prior_strength
POPULATION_ROUNDS = 20  # most EM solves of a population-prior fit (13 on a hard 3-class sparse set)
POPULATION_TOL = 1e-3  # ... which stops once no entry of the population confusion moves by more
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


@quick_compile.program(static_argnums=0, static_argnames="final_e_step")
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
    from jaxanno import learner  # flax and optax load only for fits that use a learner

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


def normalise_rows(alpha: np.ndarray, total: float) -> np.ndarray:
    """(..., K, K) pseudo-counts with every row rescaled to sum to `total` (all-zero rows stay 0)."""
    alpha = np.asarray(alpha, np.float64)
    sums = alpha.sum(-1, keepdims=True)
    return (alpha * (total / np.where(sums > 0, sums, 1.0))).astype(np.float32)


def worker_prior_alpha(
    static: Static,
    params: Params,
    prior: str | None,
    table: LabelTable,
    gold_codes: np.ndarray,
    rows: str = "scaled",
) -> jax.Array:
    """(W, K, K) Dirichlet pseudo-counts of every worker (zeros without a prior).

    'predefined_homegeneous' needs nothing; the 'homegeneous_workers*' types are built by
    `workers.prior_alpha` from the crowd's global confusion, here counted on gold tasks, so
    with ``rows='scaled'`` (pseudo-counts x prior_strength) their weight grows with the
    gold set; ``rows='normalised'`` rescales every row to sum to prior_strength instead.
    'population' is fitted, not built: see `fit_population_prior` (here: its start).
    """
    shape = (static.num_workers, static.num_classes, static.num_classes)
    if prior is None:
        return jax.device_put(np.zeros(shape, np.float32))
    types.check_option("DawidSkene", "worker_prior", prior, WORKER_PRIORS)
    types.check_option("DawidSkene", "prior_rows", rows, PRIOR_ROWS)
    strength = float(np.asarray(params.prior_strength))
    if prior == "population":
        return jax.device_put(np.broadcast_to(strength * population_start(static.num_classes), shape))
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
    alpha = _prior_alpha(static, params, jax.device_put(crowd), jax.device_put(np.zeros(shape, np.float32)))
    return jax.device_put(normalise_rows(alpha, strength)) if rows == "normalised" else alpha


def population_start(num_classes: int) -> np.ndarray:
    """(K, K) the population confusion a 'population' fit starts from: the rows of
    'predefined_homegeneous' (diagonal 2, off-diagonal 1/K), normalised."""
    k = num_classes
    return normalise_rows(np.where(np.eye(k, dtype=bool), 2.0, 1.0 / k), 1.0)


class PopulationFit(NamedTuple):
    """A fit under the 'population' worker prior (host arrays but `fit`)."""

    fit: Fit  # the last EM solve
    prior_alpha: jax.Array  # (W, K, K) the prior of that solve: prior_strength x population
    population: np.ndarray  # (K, K) pooled confusion p(given | true) of the whole crowd
    rounds: int  # EM solves run


def fit_population_prior(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    gold: jax.Array,
    key: jax.Array,
    max_iterations: jax.Array,
    num_workers: int,
    final_e_step: bool = False,
) -> PopulationFit:
    """EM under an empirical-Bayes worker prior: every worker's rows start from the crowd's.

    Worker j's pseudo-counts are ``prior_strength * P``, P the population confusion (rows
    sum to 1), so its estimate of p(z | y) is (counts_j[y, z] + m P[y, z]) / (n_jy + m):
    a worker with few labels of class y stays near the population, one with many is
    estimated from its own labels. P is re-estimated from the pooled counts of all real
    workers after each EM solve (`solve`, the same compiled program every time), from
    `population_start`, until no entry moves by more than `POPULATION_TOL` (at most
    `POPULATION_ROUNDS` solves): a fixed point of the hierarchical model's EM.

    Args:
      num_workers: real workers (padded ones have no labels and do not count).
    """
    w, k = static.num_workers, static.num_classes
    strength = float(np.asarray(params.prior_strength))
    population, rounds, moved = population_start(k), 0, np.inf
    while rounds < POPULATION_ROUNDS and moved >= POPULATION_TOL:
        prior = jax.device_put(np.broadcast_to(strength * population, (w, k, k)).astype(np.float32))
        fit = solve(static, params, annotations, prior, None, gold, key, max_iterations, final_e_step=final_e_step)
        pooled = np.asarray(fit.solution.counts, np.float64)[:num_workers].sum(0)
        seen = pooled.sum(-1, keepdims=True) > 0  # a class no label was ever credited to keeps its row
        updated = np.where(seen, normalise_rows(pooled, 1.0), population)
        moved = float(np.abs(updated - population).max())
        population, rounds = updated, rounds + 1
    return PopulationFit(fit=fit, prior_alpha=prior, population=population, rounds=rounds)
