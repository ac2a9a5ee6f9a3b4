"""Typed containers shared by every module: `Static`, `Params`, `Dataset`, `*State`.

Three kinds of input flow through every function (``fn(static, params, data, state, key)``):

* `Static`: hashable, frozen; everything that fixes array shapes or Python control flow.
  It is a `jax.jit` static argument, so changing it recompiles.
* `Params`: a pytree of scalar arrays; everything a sweep may vary. Never branched on in
  Python, so new values never recompile.
* `Dataset`: the fixed inputs of one problem (features, true labels, real-crowd counts),
  shared by every seed and grid point.

The evolving state is one `SimState`. Random keys are never stored in it: every key is
derived from the run seed and the step index, which is what makes resume exact.

`Static`, `EMStatic` and `LearnerStatic` check themselves when constructed: every option
string against its tuple below (the only list of allowed values; other layers call
`check_option` with it), sizes and flags by type and range. An invalid value raises a
ValueError naming the class, field, value and what is allowed.

"The original" in comments is the published efficient-annotation implementation
(CVPR 2021) whose behaviour jaxanno reproduces by default.

Named dimensions used in shape comments:
  N items to label, P prototypes, M = N + P, K classes, W workers, A annotation slots per
  item, D feature width, G crowd groups, Wg workers per crowd group (padded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

PYTREE_DATACLASSES: list[type] = []  # every `pytree_dataclass`, for serialisers (see jaxanno.checkpoint)


def pytree_dataclass(cls: type) -> type:
    """A frozen dataclass whose fields are all pytree children, with ``replace(**changes)``.

    Registered with `jax.tree_util` directly rather than through flax, so that EM, the
    sampler and the crowd API run without loading flax (checkpoints register these classes
    with flax's serialiser themselves).
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])
    cls.replace = lambda self, **changes: dataclasses.replace(self, **changes)
    PYTREE_DATACLASSES.append(cls)
    return cls


WORKER_TYPES = ("perfect", "uniform", "structured_noise", "uniform_noise", "adversarial", "item_difficulty")
PRIOR_TYPES = (
    "homegeneous_workers",
    "homegeneous_workers_diagonal_perfect",
    "homegeneous_workers_perfect",
    "heterogeneous_workers",
    "heterogeneous_workers_diagonal_perfect",
    "heterogeneous_workers_perfect",
    "predefined_homegeneous",
)
AGGREGATORS = ("bayes", "mj")
EM_CRITERIA = ("soft", "hard", "elbo")
M_STEPS = ("hard", "soft")
CLASS_PRIORS = ("uniform", "learned")
EM_INITS = ("prior", "majority_vote")
SAMPLERS = ("random", "greedy_task_assignment")
ITEM_SCORES = ("random", "risk_reduction")  # which eligible items a HIT gets (see `jaxanno.sampler`)
LEARNER_ALGOS = ("dummy", "mlp")
CALIBRATIONS = ("none", "temperature", "cv")
TEMPERATURE_SOLVERS = ("reference", "exact")
SEMI_SUPERVISED = ("none", "pseudolabel", "mixmatch")
EARLY_STOP_SCOPES = ("local", "global")
EARLY_STOPPERS = ("reference", "sustained")


def check_option(owner: str, field: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise a ValueError naming ``owner.field``, the value and the allowed values.

    The one check of an option string; configuration and crowd layers call it with the
    option tuples above instead of keeping their own lists.

    Example: ``EMStatic.m_step='Soft': expected one of ['hard', 'soft']``.
    """
    if isinstance(value, bool) or value not in allowed:  # True == 1: never a valid option string
        raise ValueError(f"{owner}.{field}={value!r}: expected one of {list(allowed)}")


def check_at_least(owner: str, field: str, value: Any, minimum: int) -> None:
    """Raise a ValueError unless ``owner.field`` is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}.{field}={value!r}: expected an integer >= {minimum}")


def check_flag(owner: str, field: str, value: Any) -> None:
    """Raise a ValueError unless ``owner.field`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}.{field}={value!r}: expected True or False")


def _check_fields(obj: Any, options: dict, sizes: dict, flags: Sequence[str] = ()) -> None:
    """Check the option strings, integer sizes and flags of one settings dataclass."""
    owner = type(obj).__name__
    for field, allowed in options.items():
        check_option(owner, field, getattr(obj, field), allowed)
    for field, minimum in sizes.items():
        check_at_least(owner, field, getattr(obj, field), minimum)
    for field in flags:
        check_flag(owner, field, getattr(obj, field))


@dataclasses.dataclass(frozen=True)
class EMStatic:
    """Shape and control-flow settings of aggregation and EM."""

    aggregator: str = "bayes"  # 'bayes' (Dawid-Skene posterior) or 'mj' (majority vote)
    max_em_steps: int = 10
    criterion: str = "soft"  # 'soft' (mean z-likelihood), 'hard' (argmax), 'elbo'
    m_step: str = "hard"  # 'hard' (arg-max counts, the original) or 'soft' (expected counts, classic DS)
    class_prior: str = "uniform"  # 'uniform' (the original) or 'learned' (mean posterior)
    init: str = "prior"  # first E-step from the prior, or from majority vote
    warm_start: bool = False  # start EM from the previous online step's counts
    item_block: int = 0  # items per cache-sized block of the E-step (0 = all at once)

    def __post_init__(self):
        options = dict(aggregator=AGGREGATORS, criterion=EM_CRITERIA, m_step=M_STEPS, class_prior=CLASS_PRIORS,
                       init=EM_INITS)  # fmt: skip
        _check_fields(self, options, dict(max_em_steps=1, item_block=0), flags=("warm_start",))


@dataclasses.dataclass(frozen=True)
class LearnerStatic:
    """Shape and control-flow settings of the machine learner (absent for ds_model)."""

    model: Any  # a flax.linen.Module mapping (B, D) features to (B, K) logits
    batch_size: int = 1024
    max_epochs: int = 300
    eval_every: int = 10
    calibrate: str = "temperature"  # 'none', 'temperature' or 'cv'
    cv_folds: int = 3
    temperature_solver: str = "reference"  # the original torch L-BFGS, or 'exact' (see calibration)
    semi_supervised: str = "none"
    early_stop_scope: str = "local"
    prototype_as_val: bool = True
    mixmatch_mu: int = 5

    def __post_init__(self):
        options = dict(calibrate=CALIBRATIONS, temperature_solver=TEMPERATURE_SOLVERS,
                       semi_supervised=SEMI_SUPERVISED, early_stop_scope=EARLY_STOP_SCOPES)  # fmt: skip
        sizes = dict(batch_size=1, max_epochs=1, eval_every=1, cv_folds=2 if self.calibrate == "cv" else 1,
                     mixmatch_mu=1)  # fmt: skip
        _check_fields(self, options, sizes, flags=("prototype_as_val",))
        if not callable(getattr(self.model, "apply", None)):
            raise ValueError(f"LearnerStatic.model={self.model!r}: expected a flax.linen.Module")


@dataclasses.dataclass(frozen=True)
class Static:
    """Everything that fixes shapes or control flow. Hashable: a jit static argument."""

    num_items: int  # N
    num_prototypes: int  # P
    num_classes: int  # K
    num_workers: int  # W
    feature_dim: int  # D
    max_annotations: int = 3  # A, label slots per item
    hit_size: int = 40
    hits_per_step: int = 5
    n_prototype_per_class: int = 10  # drives the validation balancing rule
    sampler: str = "random"
    item_score: str = "random"  # 'random' (the original) or 'risk_reduction' for the HIT's worker
    worker_type: str = "structured_noise"
    prior_type: str = "homegeneous_workers"
    early_stop: bool = False  # the early stopper ends the run (it is always logged)
    early_stopper: str = "reference"  # what it watches: the confident count, or its 'sustained' level
    em: EMStatic = EMStatic()
    learner: LearnerStatic | None = None

    def __post_init__(self):
        options = dict(
            sampler=SAMPLERS,
            item_score=ITEM_SCORES,
            worker_type=WORKER_TYPES,
            prior_type=PRIOR_TYPES,
            early_stopper=EARLY_STOPPERS,
        )
        sizes = dict(num_items=1, num_prototypes=0, num_classes=1, num_workers=1, feature_dim=0, max_annotations=1,
                     hit_size=1, hits_per_step=1, n_prototype_per_class=0)  # fmt: skip
        _check_fields(self, options, sizes, flags=("early_stop",))
        if not isinstance(self.em, EMStatic):
            raise ValueError(f"Static.em={self.em!r}: expected an EMStatic")
        if self.learner is not None and not isinstance(self.learner, LearnerStatic):
            raise ValueError(f"Static.learner={self.learner!r}: expected a LearnerStatic or None")

    @property
    def num_rows(self) -> int:
        """M = N + P: items followed by prototypes, the learner's row space."""
        return self.num_items + self.num_prototypes

    @property
    def labels_per_step(self) -> int:
        return self.hit_size * self.hits_per_step


@pytree_dataclass
class Params:
    """Sweepable settings: scalar arrays, never branched on in Python.

    A sweep stacks several `Params` along a leading grid axis (see `config.sweep_grid`).
    """

    risk_threshold: jax.Array  # () f32, an item is confident when its risk is below it
    budget: jax.Array  # () i32, hard cap on the total number of labels
    max_annotation_per_worker: jax.Array  # () i32, greedy sampler's per-worker cap
    prior_strength: jax.Array  # () f32, multiplies the Dirichlet prior pseudo-counts
    prior_pos_count: jax.Array  # () f32, 'predefined_homegeneous' diagonal
    prior_neg_count: jax.Array  # () f32, 'predefined_homegeneous' off-diagonal mass
    em_epsilon: jax.Array  # () f32, convergence tolerance of the EM criterion
    log_epsilon: jax.Array  # () f32, added inside every log p(z | y) (1e-8 in the original)
    reliability_mean: jax.Array  # () f32, 'uniform' workers' mean diagonal
    reliability_std: jax.Array  # () f32, 'uniform' workers' diagonal spread
    out_of_group_noise: jax.Array  # () f32, AMT workers' mass moved out of group (0.03)
    difficulty_mean: jax.Array  # () f32, 'item_difficulty': mean of the items' difficulty in [0, 1]
    difficulty_spread: jax.Array  # () f32, 'item_difficulty': its standard deviation (0: all alike)
    lr_ratio: jax.Array  # () f32, learning rate = lr_ratio * sqrt(batch)
    weight_decay: jax.Array  # () f32, L2 added to the gradient (torch Adam style)
    pseudo_label_threshold: jax.Array  # () f32, learner's risk threshold for pseudolabels
    mixmatch_alpha: jax.Array  # () f32, Beta(alpha, alpha) of mix-up
    mixmatch_weight: jax.Array  # () f32, weight of the unlabelled L2 term
    selection_temperature: jax.Array  # () f32, 'risk_reduction' items: Gumbel noise scale (0 = by gain alone)


@pytree_dataclass
class CrowdStats:
    """Real Mechanical Turk confusion counts restricted to the experiment's classes.

    Holds zero-size arrays when the simulation does not use real workers.
    """

    group_totals: jax.Array  # (G, K, K) f32, summed counts of each group's workers
    worker_counts: jax.Array  # (G, Wg, K, K) f32, each real worker's counts (padded)
    worker_valid: jax.Array  # (G, Wg) bool, False on padding
    class_group: jax.Array  # (K,) i32, group of each class, -1 for the 'other' class
    global_counts: jax.Array  # (K, K) f32, all real workers' counts (prior source)


@pytree_dataclass
class Dataset:
    """Fixed inputs of one problem, shared by every seed and grid point."""

    features: jax.Array  # (M, D) f32, items first, then prototypes
    labels: jax.Array  # (M,) i32, true class of every row
    crowd: CrowdStats


@pytree_dataclass
class WorkerPool:
    """One seed's simulated workers: true behaviour and the model's prior over it."""

    true_confusion: jax.Array  # (W, K, K) f32, P(given z | true y); rows sum to 1
    prior_alpha: jax.Array  # (W, K, K) f32, Dirichlet pseudo-counts, strength applied


@pytree_dataclass
class AnnotationState:
    """Labels collected so far, in fixed slots with -1 as the empty sentinel."""

    worker: jax.Array  # (N, A) i32, worker id per slot, -1 when empty
    label: jax.Array  # (N, A) i32, given label per slot, -1 when empty
    item_count: jax.Array  # (N,) i32, filled slots per item
    worker_count: jax.Array  # (W,) i32, labels given by each worker

    @property
    def valid(self) -> jax.Array:
        """(N, A) bool mask of filled slots."""
        return self.worker >= 0


@pytree_dataclass
class EMState:
    """Dawid-Skene estimates after the latest online step."""

    counts: jax.Array  # (W, K, K) f32, (soft) label counts; alpha = strength*prior + counts
    log_class_prior: jax.Array  # (K,) f32, log P(y); uniform unless learned
    posterior: jax.Array  # (N, K) f32, P(y | labels, learner); rows sum to 1
    risk: jax.Array  # (N,) f32, 1 - max_y posterior
    iterations: jax.Array  # () i32, EM iterations run at the latest step


@pytree_dataclass
class LearnerOutput:
    """The learner's latest output, carried to the next online step (not its weights:
    the model is re-initialised and refitted at every step)."""

    probs: jax.Array  # (M, K) f32, calibrated probabilities used as the label prior
    best_loss: jax.Array  # () f32, best validation loss so far ('global' scope)
    last_loss: jax.Array  # () f32, validation loss of the latest fit
    temperature: jax.Array  # () f32, calibration temperature of the latest fit


@pytree_dataclass
class StopperState:
    """The early stopper over the number of confident items (see `jaxanno.stopping`)."""

    history_len: jax.Array  # () i32, entries recorded so far
    max_confident: jax.Array  # () i32, running maximum of the watched confident count
    last_max_index: jax.Array  # () i32, latest entry index equal to the maximum
    fired_step: jax.Array  # () i32, first step at which it fired, -1 if never
    fired_cost: jax.Array  # () i32, labels collected when it first fired, -1 if never
    recent: jax.Array  # (stopping.SUSTAIN_STEPS,) i32, the latest confident counts, newest first (-1: none yet)


# Indices are stored in states and checkpoints: new reasons go at the end.
STOP_REASONS = (
    "running",
    "all_confident_or_full",
    "budget_spent",
    "no_worker_left",
    "early_stop",
    "numerical_error",  # the posterior, EM counts or learner probabilities became NaN or infinite
)


@pytree_dataclass
class SimState:
    """The whole state of one simulated online annotation run."""

    step: jax.Array  # () i32, online steps completed (0 after the initial fit)
    done: jax.Array  # () bool, frozen once True
    stop_reason: jax.Array  # () i32, index into STOP_REASONS (0 while running)
    workers: WorkerPool
    annotations: AnnotationState
    em: EMState
    learner: LearnerOutput | None
    stopper: StopperState


class SubsetMetrics(NamedTuple):
    """Accuracy and calibration of a belief over one subset of items."""

    top1: jax.Array  # () f32, NaN when the subset is empty
    top5: jax.Array
    top10: jax.Array
    ece: jax.Array  # () f32, 10 equal-width bins
    n_correct: jax.Array  # () i32
    n_items: jax.Array  # () i32


class BeliefMetrics(NamedTuple):
    """Metrics of one belief over all, confident and unconfident items."""

    all: SubsetMetrics
    confident: SubsetMetrics
    unconfident: SubsetMetrics


class StepMetrics(NamedTuple):
    """What is logged after every online step (one row per step and seed)."""

    step: jax.Array  # () i32
    active: jax.Array  # () bool, False on rows after the run stopped
    cost: jax.Array  # () i32, labels collected
    cost_per_item: jax.Array  # () f32
    frac_labelled: jax.Array  # () f32, items with at least one label
    num_confident: jax.Array  # () i32
    open_slots: jax.Array  # () i32, free slots of unconfident items (work left at most)
    em_iterations: jax.Array  # () i32
    early_stop_fired: jax.Array  # () bool, the early stopper has fired by this step
    aggregate: BeliefMetrics
    learner: BeliefMetrics | None


def zeros_like_shapes(tree: Any, host: bool = False) -> Any:
    """Concrete zero arrays for a pytree of `jax.ShapeDtypeStruct` (no compilation).

    Args:
      host: numpy arrays (for placement on a device mesh) instead of device arrays.
    """
    place = (lambda x: x) if host else jax.device_put
    return jax.tree.map(lambda s: place(np.zeros(s.shape, s.dtype)), tree)


PARAM_DEFAULTS = dict(
    risk_threshold=0.1,
    budget=2**31 - 1,
    max_annotation_per_worker=2000,
    prior_strength=10.0,
    prior_pos_count=2.0,
    prior_neg_count=1.0,
    em_epsilon=1e-3,
    log_epsilon=1e-8,
    reliability_mean=0.8,
    reliability_std=0.1,
    out_of_group_noise=0.03,
    difficulty_mean=0.25,
    difficulty_spread=0.19,
    lr_ratio=1e-4,
    weight_decay=1e-3,
    pseudo_label_threshold=0.1,
    mixmatch_alpha=0.75,
    mixmatch_weight=75.0,
    selection_temperature=0.0,
)
_INT_PARAMS = ("budget", "max_annotation_per_worker")
INT32_MAX = int(np.iinfo(np.int32).max)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _checked_column(name: str, value: Any) -> np.ndarray:
    """`value` as the field's dtype, refusing what the cast would change silently.

    Integers must be whole numbers within int32 (a cast would wrap 2**32 + 30 to 30);
    floats must be finite in float32 (1e40 would become inf). Traced values (inside a jit)
    pass unchecked: their range is the caller's concern.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    raw = np.asarray(value)
    if raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.number):
        raise ValueError(f"Params.{name}={value!r}: expected a number")
    if name in _INT_PARAMS:
        if np.issubdtype(raw.dtype, np.integer):  # compared exactly, also beyond float64's 2**53
            bad = (raw > INT32_MAX) | (raw < -INT32_MAX - 1)
        else:
            bad = ~np.isfinite(raw) | (raw != np.round(raw)) | (np.abs(raw) > INT32_MAX)
        expected = f"a whole number in [{-INT32_MAX - 1}, {INT32_MAX}] (stored as int32, a larger one would wrap)"
    else:
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(raw.astype(np.float32))
        expected = f"a finite number (stored as float32: |x| <= {FLOAT32_MAX:.4g})"
    if bad.any():
        found = raw[bad].flat[0].item() if raw.ndim else raw.item()
        raise ValueError(f"Params.{name}={found!r}: expected {expected}")
    return raw.astype(np.int32 if name in _INT_PARAMS else np.float32)


def make_params(host: bool = False, **overrides: Any) -> Params:
    """The one casting factory for `Params` (`PARAM_DEFAULTS`, then `overrides`).

    Every value becomes an array of a fixed dtype (int32 or float32), so new values never
    retrace. Values may also be arrays with a leading grid or lane axis. A value the cast
    would change is refused: integer fields take whole numbers within int32, float fields
    finite numbers within float32 (ranges that make sense are the config's `RULES`).

    Args:
      host: keep numpy leaves (for sharded placement) instead of device arrays.
    Raises:
      ValueError: an unknown field, or a value naming its field, the value and the limit.
    """
    unknown = set(overrides) - set(PARAM_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown Params fields {sorted(unknown)}; known: {sorted(PARAM_DEFAULTS)}")
    values = {**PARAM_DEFAULTS, **overrides}
    place = (lambda x: x) if host else jax.device_put
    return Params(**{name: place(_checked_column(name, v)) for name, v in values.items()})
