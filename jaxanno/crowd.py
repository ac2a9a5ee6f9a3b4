"""Aggregating real crowd labels with jaxanno's Dawid-Skene model, in crowd-kit's style.

Input is a table of worker labels with columns ``task``, ``worker`` and ``label``
(crowd-kit's convention); tasks, workers and labels may be strings or integers and a task
may have any number of labels. `MajorityVote` and `DawidSkene` mirror crowd-kit's classes
(``fit``, ``fit_predict``, ``fit_predict_proba``, ``labels_``, ``probas_``, ``priors_``,
``errors_``, ``skills_``, ``loss_history_``), so switching is a one-line import change:

    from jaxanno.crowd import DawidSkene      # was: from crowdkit.aggregation import DawidSkene
    labels = DawidSkene(n_iter=100).fit_predict(df)

With its defaults `DawidSkene` is crowd-kit's model (soft M-step, learned class prior,
majority-vote start, ELBO stopping rule with the same 1e-10 clipping) and returns the same
posteriors up to float32 rounding. `DawidSkene.reference()` is the paper's online model
instead (hard M-step, Dirichlet worker prior, uniform class prior). Extras: ``risks_``
(1 - max posterior), ``confident_``, per-worker ``skills_`` (expected accuracy), an optional
learner prior from task features (jaxanno.learner, with gold tasks as its validation
prototypes) and `next_batch`, which chooses the next HITs with jaxanno.sampler.

Shapes: the labels are packed into fixed (N, A) slots (A = the most labels any task has)
and N, W and A are rounded up to shape buckets (`bucket`), so repeated fits of similar
sizes reuse one compiled program; padded items, workers and slots are masked out.
Everything heavy runs in module-level jitted functions, compiled once per
(`Static`, bucketed shape).

Duplicates: a worker who labelled the same task more than once is an error by default;
``duplicates='keep_last' | 'keep_first'`` keeps one of the labels and ``'keep_all'`` keeps
them all as independent labels (what crowd-kit does silently).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxanno import dawid_skene, em, learner, ops, sampler, workers
from jaxanno.types import (
    AnnotationState,
    CrowdStats,
    EMState,
    EMStatic,
    LearnerOutput,
    LearnerStatic,
    Params,
    Static,
    make_params,
)

COLUMNS = ("task", "worker", "label")
DUPLICATE_POLICIES = ("error", "keep_last", "keep_first", "keep_all")
WORKER_PRIORS = (
    "predefined_homegeneous",
    "homegeneous_workers",
    "homegeneous_workers_diagonal_perfect",
    "homegeneous_workers_perfect",
)
ASSIGNMENTS = ("random", "greedy")
NO_CAP = 2**30  # "unlimited" for integer caps that must stay int32
_MIN_ITEMS, _MIN_WORKERS = 64, 8
_AUTO_VAL_PER_CLASS = 10  # validation rows per class moved from training when there is no gold


FeatureInput = pd.DataFrame | tuple[Sequence[Any], np.ndarray]


def bucket(n: int, minimum: int = 1) -> int:
    """n rounded up to a shape bucket: steps of 2^(floor(log2 n) - 2), so at most 25% waste.

    Four buckets per octave keep recompilation rare when sizes drift (a project that grows
    from 800 to 890 tasks reuses the program) at a bounded padding cost.
    """
    n = max(int(n), minimum)
    step = 1 << max(n.bit_length() - 3, 0)
    return -(-n // step) * step


def check_frame(data: Any, source: str = "data") -> pd.DataFrame:
    """The ``task, worker, label`` columns of `data`, after checking they are usable.

    Raises:
      ValueError: naming `source` and the column, with what was expected and found.
    """
    if not isinstance(data, pd.DataFrame):
        raise ValueError(
            f"{source}: expected a pandas DataFrame with columns task, worker, label; found {type(data).__name__}"
        )
    missing = [c for c in COLUMNS if c not in data.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; expected columns task, worker, label; "
            f"found {list(map(str, data.columns))}"
        )
    if len(data) == 0:
        raise ValueError(f"{source}: no labels; expected at least one (task, worker, label) row, found 0 rows")
    frame = data[list(COLUMNS)]
    for col in COLUMNS:
        empty = frame[col].isna().to_numpy()
        if empty.any():
            rows = np.flatnonzero(empty)[:5].tolist()
            raise ValueError(
                f"{source}: column '{col}' has {int(empty.sum())} empty value(s) "
                f"(first at row(s) {rows}); expected a value in every row"
            )
    return frame


def _sorted_unique(values: pd.Series) -> pd.Index:
    """Sorted distinct values (crowd-kit's column order); mixed types sort by their text."""
    unique = pd.unique(values)
    try:
        return pd.Index(sorted(unique))
    except TypeError:
        return pd.Index(sorted(unique, key=str))


def class_index(classes: Iterable[Any] | None, labels: pd.Series, source: str = "data") -> pd.Index:
    """The class list: `classes` as given (checked), else the sorted set of labels seen."""
    if classes is None:
        return _sorted_unique(labels)
    index = pd.Index(list(classes))
    if len(index) == 0:
        raise ValueError("classes: expected at least one class, found an empty list")
    if index.has_duplicates:
        dup = index[index.duplicated()].unique().tolist()[:5]
        raise ValueError(f"classes: expected distinct classes, found repeated {dup}")
    return index


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _apply_duplicate_policy(frame: pd.DataFrame, policy: str, source: str) -> tuple[pd.DataFrame, int]:
    """Rows kept under the duplicate-label policy, and how many were dropped."""
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates: expected one of {DUPLICATE_POLICIES}, found {policy!r}")
    dup = frame.duplicated(["task", "worker"], keep=False).to_numpy()
    if not dup.any() or policy == "keep_all":
        return frame, 0
    if policy == "error":
        first = frame[dup].iloc[0]
        times = int(((frame.task == first.task) & (frame.worker == first.worker)).sum())
        pairs = int(frame[dup].drop_duplicates(["task", "worker"]).shape[0])
        raise ValueError(
            f"{source}: worker {_plain(first.worker)!r} labelled task {_plain(first.task)!r} {times} times "
            f"({pairs} (task, worker) pair(s) repeated in all); expected one label per worker and task. "
            "Choose a policy: duplicates='keep_last', 'keep_first' or 'keep_all'"
        )
    keep = "last" if policy == "keep_last" else "first"
    kept = frame[~frame.duplicated(["task", "worker"], keep=keep).to_numpy()]
    return kept, len(frame) - len(kept)


def _codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    return index.get_indexer(values).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """Worker labels as integer codes, packed into padded (N, A) slots.

    Items are the labelled tasks in first-seen order, then any extra tasks (from features
    or gold) that have no label yet. Padded rows and workers carry no label.
    """

    tasks: pd.Index  # N real items
    workers: pd.Index  # W real workers, first-seen order
    classes: pd.Index  # K classes
    task_code: np.ndarray  # (L,) i32 item of every kept label
    worker_code: np.ndarray  # (L,) i32
    label_code: np.ndarray  # (L,) i32
    annotations: AnnotationState  # (N_pad, A_pad) slots, -1 when empty
    dropped_duplicates: int  # labels removed by the duplicate policy

    @property
    def num_items(self) -> int:
        return len(self.tasks)

    @property
    def num_workers(self) -> int:
        return len(self.workers)

    @property
    def item_count(self) -> np.ndarray:
        """(N,) labels per real item."""
        return np.bincount(self.task_code, minlength=self.num_items)

    @property
    def worker_count(self) -> np.ndarray:
        """(W,) labels per real worker."""
        return np.bincount(self.worker_code, minlength=self.num_workers)


def _slots(task_code: np.ndarray) -> np.ndarray:
    """(L,) slot of every label within its task: its rank among the task's labels."""
    order = np.argsort(task_code, kind="stable")
    sorted_codes = task_code[order]
    first = np.searchsorted(sorted_codes, sorted_codes, side="left")
    slot = np.empty_like(task_code)
    slot[order] = np.arange(task_code.size, dtype=task_code.dtype) - first
    return slot


def encode(
    data: pd.DataFrame,
    classes: Iterable[Any] | None = None,
    duplicates: str = "error",
    extra_tasks: Sequence[Any] = (),
    source: str = "data",
) -> LabelTable:
    """Check and encode a label table (see `LabelTable`).

    Args:
      data: DataFrame with columns task, worker, label.
      classes: the class list; default the sorted set of labels seen.
      duplicates: policy for a worker labelling one task more than once.
      extra_tasks: tasks to include even without labels (e.g. every task with features).
      source: the name used in error messages (a file name for the command line).
    Raises:
      ValueError: missing columns, no rows, empty values, duplicates (policy 'error'),
        labels outside the class list.
    """
    frame = check_frame(data, source)
    frame, dropped = _apply_duplicate_policy(frame, duplicates, source)
    classes = class_index(classes, frame.label, source)
    label_code = _codes(frame.label, classes)
    unknown = label_code < 0
    if unknown.any():
        bad = pd.unique(frame.label[unknown])[:5].tolist()
        raise ValueError(
            f"{source}: column 'label' has {int(unknown.sum())} label(s) outside the class list, "
            f"e.g. {bad}; expected one of {classes.tolist()[:20]}"
        )
    task_code, tasks = pd.factorize(frame.task, sort=False)
    extra = pd.Index(pd.unique(pd.Series(list(extra_tasks), dtype=object))) if len(extra_tasks) else pd.Index([])
    tasks = pd.Index(tasks).append(extra.difference(tasks, sort=False)) if len(extra) else pd.Index(tasks)
    worker_code, worker_index = pd.factorize(frame.worker, sort=False)
    task_code, worker_code = task_code.astype(np.int32), worker_code.astype(np.int32)
    slot = _slots(task_code)
    n_pad, a_pad = bucket(len(tasks), _MIN_ITEMS), bucket(int(slot.max()) + 1)
    w_pad = bucket(len(worker_index), _MIN_WORKERS)
    worker_slots = np.full((n_pad, a_pad), -1, np.int32)
    label_slots = np.full((n_pad, a_pad), -1, np.int32)
    worker_slots[task_code, slot] = worker_code
    label_slots[task_code, slot] = label_code
    annotations = AnnotationState(
        worker=jnp.asarray(worker_slots),
        label=jnp.asarray(label_slots),
        item_count=jnp.asarray((worker_slots >= 0).sum(1).astype(np.int32)),
        worker_count=jnp.asarray(np.bincount(worker_code, minlength=w_pad).astype(np.int32)),
    )
    return LabelTable(
        tasks=tasks,
        workers=pd.Index(worker_index),
        classes=classes,
        task_code=task_code,
        worker_code=worker_code,
        label_code=label_code,
        annotations=annotations,
        dropped_duplicates=dropped,
    )


def feature_table(features: FeatureInput, source: str = "features") -> tuple[pd.Index, np.ndarray]:
    """(tasks, (T, D) float32 array) of a feature input, checked.

    Args:
      features: a DataFrame indexed by task (one numeric column per dimension) or a pair
        (task list, (T, D) array).
    """
    if isinstance(features, pd.DataFrame):
        tasks, values = pd.Index(features.index), features.to_numpy()
    else:
        try:
            task_list, values = features
        except (TypeError, ValueError):
            raise ValueError(
                f"{source}: expected a DataFrame indexed by task or a (tasks, array) pair, "
                f"found {type(features).__name__}"
            ) from None
        tasks, values = pd.Index(list(task_list)), np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D (tasks, dims) array, found shape {values.shape}")
    if values.shape[0] != len(tasks):
        raise ValueError(
            f"{source}: expected one task per feature row ({values.shape[0]} rows), found {len(tasks)} task(s)"
        )
    if tasks.has_duplicates:
        raise ValueError(f"{source}: expected distinct tasks, found repeated {tasks[tasks.duplicated()][:5].tolist()}")
    try:
        values = values.astype(np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: expected numeric features, found dtype {values.dtype}") from None
    if not np.isfinite(values).all():
        raise ValueError(
            f"{source}: expected finite feature values, found NaN or inf in "
            f"{int((~np.isfinite(values)).any(1).sum())} row(s)"
        )
    return tasks, values


def check_gold(true_labels: Any, tasks: pd.Index, classes: pd.Index, source: str = "gold") -> pd.Series:
    """Gold labels as a Series task -> label, checked: known tasks, labels in the class list."""
    if isinstance(true_labels, pd.DataFrame):
        if not {"task", "label"} <= set(true_labels.columns):
            raise ValueError(f"{source}: expected columns task, label; found {list(map(str, true_labels.columns))}")
        true_labels = true_labels.set_index("task")["label"]
    gold = pd.Series(true_labels)
    if gold.isna().any():
        raise ValueError(f"{source}: {int(gold.isna().sum())} gold task(s) have no label; expected a label for each")
    if gold.index.has_duplicates:
        raise ValueError(
            f"{source}: expected one gold label per task, found repeated task(s) "
            f"{gold.index[gold.index.duplicated()].unique()[:5].tolist()}"
        )
    unknown = ~gold.index.isin(tasks)
    if unknown.any():
        raise ValueError(
            f"{source}: {int(unknown.sum())} gold task(s) appear neither in the labels nor in the "
            f"features, e.g. {gold.index[unknown][:5].tolist()}"
        )
    outside = ~gold.isin(classes)
    if outside.any():
        raise ValueError(
            f"{source}: {int(outside.sum())} gold label(s) outside the class list, e.g. "
            f"{pd.unique(gold[outside])[:5].tolist()}; expected one of {classes.tolist()[:20]}"
        )
    return gold


class SolveResult(NamedTuple):
    """One EM solve; posterior is that of the last E-step (crowd-kit's convention)."""

    counts: jax.Array  # (W, K, K) f32 final (soft or hard) counts
    log_class_prior: jax.Array  # (K,) f32
    posterior: jax.Array  # (N, K) f32 rows sum to 1
    iterations: jax.Array  # () i32 E-steps run
    history: jax.Array  # (n_iter,) f32 convergence statistic per iteration, NaN after the last


def solve(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    prior_alpha: jax.Array,
    log_learner: jax.Array | None,
    gold: jax.Array,
    key: jax.Array,
) -> SolveResult:
    """EM to convergence: `em.initial_counts` then `em.solve`, gold items clamped.

    Everything is the simulator's EM (same E/M order, statistics and stopping rules, early
    exit); a one-off fit also keeps the posterior of the last E-step (what crowd-kit
    reports), the statistic of every iteration, and clamps gold items to their label in
    every E-step (as crowd-kit's ``true_labels``).

    Args:
      annotations: (N, A) slots; prior_alpha: (W, K, K) pseudo-counts (strength applied).
      log_learner: (N, K) log learner prior added in every E-step, or None.
      gold: (N,) i32 gold class per item, -1 when unknown.
      key: seeds the tie-breaks of the hard M-step.
    Returns:
      `SolveResult`; with no label at all, 0 iterations and the majority-vote start.
    """
    k = static.num_classes
    k_init, k_iter = jax.random.split(key)
    zero = jnp.zeros((static.num_workers, k, k), jnp.float32)
    uniform = jnp.full((k,), -jnp.log(k), jnp.float32)
    counts, log_prior = em.initial_counts(static, annotations, zero, uniform, k_init, gold=gold)
    start = dawid_skene.clamp_to_gold(dawid_skene.majority_vote(annotations, k), gold)
    res = em.solve(static, params, annotations, prior_alpha, counts, log_prior, log_learner, k_iter, gold=gold,
                    start_posterior=start)  # fmt: skip
    return SolveResult(counts=res.counts, log_class_prior=res.log_class_prior, posterior=res.posterior,
                       iterations=res.iterations, history=res.history)  # fmt: skip


def _fit_learner(static, params, features, posterior, prototype_labels, train_items, state, key) -> LearnerOutput:
    return learner.fit_predict(static, params, features, posterior, prototype_labels, train_items, state, key)


def _majority(annotations: AnnotationState, num_classes: int) -> jax.Array:
    return dawid_skene.majority_vote(annotations, num_classes)


# Compiled once per process; jax caches one program per (Static, shapes).
_solve_jit = jax.jit(solve, static_argnums=0)
_posterior_jit = jax.jit(em.posterior, static_argnums=0)  # a fresh E-step with the final counts
_learner_jit = jax.jit(_fit_learner, static_argnums=0)
_majority_jit = jax.jit(_majority, static_argnums=1)
_confusion_jit = jax.jit(dawid_skene.confusion)


def _empty_crowd(global_counts: np.ndarray) -> CrowdStats:
    k = global_counts.shape[0]
    return CrowdStats(
        group_totals=jnp.zeros((0, k, k)),
        worker_counts=jnp.zeros((0, 0, k, k)),
        worker_valid=jnp.zeros((0, 0), bool),
        class_group=jnp.zeros((k,), jnp.int32),
        global_counts=jnp.asarray(global_counts, jnp.float32),
    )


def gold_confusion_counts(table: LabelTable, gold_codes: np.ndarray) -> np.ndarray:
    """(K, K) counts of (gold class, given label) over every label of a gold task."""
    k = len(table.classes)
    truth = gold_codes[table.task_code]
    keep = truth >= 0
    flat = truth[keep] * k + table.label_code[keep]
    return np.bincount(flat, minlength=k * k).reshape(k, k).astype(np.float32)


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
    if prior not in WORKER_PRIORS:
        raise ValueError(f"worker_prior: expected None or one of {WORKER_PRIORS}, found {prior!r}")
    global_counts = gold_confusion_counts(table, gold_codes)
    if prior != "predefined_homegeneous" and global_counts.sum() == 0:
        raise ValueError(
            f"worker_prior {prior!r} is estimated from labels on gold tasks; "
            "expected true_labels covering some labelled tasks, found none"
        )
    crowd = _empty_crowd(global_counts)
    static = dataclasses.replace(static, prior_type=prior)
    return workers.prior_alpha(static, params, crowd, jnp.zeros(shape, jnp.float32))


def _proba_frame(posterior: np.ndarray, tasks: pd.Index, classes: pd.Index) -> pd.DataFrame:
    frame = pd.DataFrame(posterior, index=pd.Index(tasks, name="task"), columns=pd.Index(classes, name="label"))
    return frame


def _labels_series(posterior: np.ndarray, tasks: pd.Index, classes: pd.Index) -> pd.Series:
    """Most probable class per task; ties go to the first class in class order (crowd-kit)."""
    return pd.Series(classes[posterior.argmax(1)], index=pd.Index(tasks, name="task"), name="agg_label")


def _agreement(table: LabelTable, label_codes: np.ndarray) -> np.ndarray:
    """(W,) fraction of each worker's labels equal to the aggregated label of the task."""
    agree = (table.label_code == label_codes[table.task_code]).astype(np.float64)
    hits = np.bincount(table.worker_code, weights=agree, minlength=table.num_workers)
    return hits / np.maximum(table.worker_count, 1)


class MajorityVote:
    """Majority vote, as crowd-kit's: probas_ are vote shares, ties go to the first class.

    Attributes after `fit`: ``labels_`` (Series by task), ``probas_`` (task x label),
    ``skills_`` (each worker's agreement with ``labels_``), ``risks_`` (1 - max share).
    """

    def __init__(self, classes: Iterable[Any] | None = None, duplicates: str = "error"):
        self.classes = classes
        self.duplicates = duplicates

    def fit(self, data: pd.DataFrame) -> MajorityVote:
        table = encode(data, self.classes, self.duplicates)
        shares = np.asarray(_majority_jit(table.annotations, len(table.classes)))[: table.num_items]
        self.table_ = table
        self.probas_ = _proba_frame(shares, table.tasks, table.classes)
        self.labels_ = _labels_series(shares, table.tasks, table.classes)
        self.risks_ = pd.Series(1.0 - shares.max(1), index=self.probas_.index, name="risk")
        agreement = _agreement(table, shares.argmax(1))
        self.skills_ = pd.Series(agreement, index=pd.Index(table.workers, name="worker"), name="skill")
        return self

    def fit_predict(self, data: pd.DataFrame) -> pd.Series:
        return self.fit(data).labels_

    def fit_predict_proba(self, data: pd.DataFrame) -> pd.DataFrame:
        return self.fit(data).probas_


@dataclasses.dataclass
class _Problem:
    """Everything one fit needs, checked and converted (host side)."""

    table: LabelTable
    gold: pd.Series | None  # task -> label, checked
    gold_codes: np.ndarray  # (N_pad,) i32 gold class per item, -1 when none
    features: np.ndarray | None  # (N_pad + P, D) f32 items then prototypes, or None
    prototype_labels: np.ndarray | None  # (P,) i32


def _items_features(table: LabelTable, tasks: pd.Index, values: np.ndarray, n_pad: int, source: str) -> np.ndarray:
    """(N_pad, D) features of the items in item order; raises if an item has none."""
    rows = tasks.get_indexer(table.tasks)
    missing = rows < 0
    if missing.any():
        raise ValueError(
            f"{source}: {int(missing.sum())} labelled task(s) have no feature row, e.g. "
            f"{table.tasks[missing][:5].tolist()}; expected features for every task"
        )
    out = np.zeros((n_pad, values.shape[1]), np.float32)
    out[: len(rows)] = values[rows]
    return out


def prepare(
    data: pd.DataFrame,
    true_labels: Any = None,
    features: FeatureInput | None = None,
    classes: Iterable[Any] | None = None,
    duplicates: str = "error",
    sources: dict | None = None,
) -> _Problem:
    """Check every input against the others and convert them; nothing runs on the device.

    Items are the labelled tasks, then tasks that only have features. Gold tasks must be
    items or have features; gold tasks with features become the learner's prototypes.
    `sources` maps 'data' / 'features' / 'gold' to the names used in error messages.
    """
    sources = {"data": "data", "features": "features", "gold": "gold", **(sources or {})}
    feat_tasks, feat_values = (None, None)
    if features is not None:
        feat_tasks, feat_values = feature_table(features, sources["features"])
    table = encode(data, classes, duplicates, feat_tasks if feat_tasks is not None else (), sources["data"])
    n_pad = int(table.annotations.worker.shape[0])
    gold, gold_codes = None, np.full(n_pad, -1, np.int32)
    if true_labels is not None:
        known = table.tasks if feat_tasks is None else table.tasks.append(feat_tasks).unique()
        gold = check_gold(true_labels, known, table.classes, sources["gold"])
        rows = table.tasks.get_indexer(gold.index)
        gold_codes[rows[rows >= 0]] = table.classes.get_indexer(gold[rows >= 0]).astype(np.int32)
    feats, proto_labels = None, None
    if feat_tasks is not None:
        item_feats = _items_features(table, feat_tasks, feat_values, n_pad, sources["features"])
        protos = gold[gold.index.isin(feat_tasks)] if gold is not None else pd.Series([], dtype=object)
        proto_feats = feat_values[feat_tasks.get_indexer(protos.index)].reshape(-1, feat_values.shape[1])
        feats = np.concatenate([item_feats, proto_feats])
        proto_labels = table.classes.get_indexer(protos).astype(np.int32)
    return _Problem(table=table, gold=gold, gold_codes=gold_codes, features=feats, prototype_labels=proto_labels)


class DawidSkene:
    """Dawid-Skene EM over worker confusion matrices, crowd-kit's interface, jaxanno's model.

    Defaults reproduce crowd-kit's `DawidSkene(n_iter, tol)`: soft (expected-count) M-step,
    class prior learned as the mean posterior, majority-vote start, stop when the ELBO per
    label gains less than `tol`, no worker prior, and ``probas_`` from the last E-step.
    `DawidSkene.reference()` gives the paper's online model instead.

    Args:
      n_iter, tol: at most `n_iter` EM iterations; the tolerance of `criterion`.
      m_step: 'soft' (classic) or 'hard' (counts of the argmax label, the reference).
      class_prior: 'learned' (mean posterior) or 'uniform' (the reference).
      init: 'majority_vote' (first M-step from vote shares) or 'prior' (zero counts).
      criterion: 'elbo' (crowd-kit), 'soft' (|change of mean label likelihood|) or 'hard'
        (no argmax changes).
      worker_prior: None, 'predefined_homegeneous' (diagonal `prior_pos_count`,
        off-diagonal `prior_neg_count` / K) or 'homegeneous_workers*' (built from the
        labels on gold tasks); pseudo-counts are multiplied by `prior_strength`.
      log_epsilon: added inside log p(z | y) (reference 1e-8; crowd-kit 0).
      final_e_step: report the posterior of one more E-step with the final counts (the
        reference) instead of the last EM E-step's (crowd-kit). Always done with a learner.
      risk_threshold: a task is confident when 1 - max posterior is below it.
      classes: the class list (default: sorted labels seen); duplicates: see the module doc.
      learner: 'mlp' to use task features (when `fit` gets them) as a learned label prior,
        or None. learner_hidden, learner_epochs, learner_semi_supervised ('none' or
        'pseudolabel'), learner_rounds (EM + fit repetitions) configure it.
      seed: seeds tie-breaks and the learner.
    """

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        *,
        m_step: str = "soft",
        class_prior: str = "learned",
        init: str = "majority_vote",
        criterion: str = "elbo",
        worker_prior: str | None = None,
        prior_strength: float = 10.0,
        prior_pos_count: float = 2.0,
        prior_neg_count: float = 1.0,
        log_epsilon: float = 0.0,
        final_e_step: bool = False,
        risk_threshold: float = 0.1,
        classes: Iterable[Any] | None = None,
        duplicates: str = "error",
        learner: str | None = "mlp",
        learner_hidden: Sequence[int] = (64,),
        learner_epochs: int = 300,
        learner_semi_supervised: str = "none",
        learner_rounds: int = 1,
        seed: int = 0,
    ):
        self.n_iter, self.tol = n_iter, tol
        self.m_step, self.class_prior, self.init, self.criterion = m_step, class_prior, init, criterion
        self.worker_prior, self.prior_strength = worker_prior, prior_strength
        self.prior_pos_count, self.prior_neg_count = prior_pos_count, prior_neg_count
        self.log_epsilon, self.final_e_step, self.risk_threshold = log_epsilon, final_e_step, risk_threshold
        self.classes, self.duplicates = classes, duplicates
        self.learner, self.learner_hidden, self.learner_epochs = learner, tuple(learner_hidden), learner_epochs
        self.learner_semi_supervised, self.learner_rounds = learner_semi_supervised, learner_rounds
        self.seed = seed

    @classmethod
    def reference(cls, **overrides: Any) -> DawidSkene:
        """The paper's model: hard M-step, uniform class prior, zero-count start, Dirichlet
        prior 'predefined_homegeneous' x 10, mean-label-likelihood criterion (1e-3, 10
        iterations), log epsilon 1e-8, posterior from a fresh E-step."""
        settings = dict(
            n_iter=10,
            tol=1e-3,
            m_step="hard",
            class_prior="uniform",
            init="prior",
            criterion="soft",
            worker_prior="predefined_homegeneous",
            prior_strength=10.0,
            log_epsilon=1e-8,
            final_e_step=True,
        )
        return cls(**{**settings, **overrides})

    def check_options(self) -> None:
        """Raise ValueError for an unknown option value (before any input is read)."""
        choices = {
            "m_step": (self.m_step, ("soft", "hard")),
            "class_prior": (self.class_prior, ("learned", "uniform")),
            "init": (self.init, ("majority_vote", "prior")),
            "criterion": (self.criterion, ("elbo", "soft", "hard")),
            "learner": (self.learner, ("mlp", None)),
            "learner_semi_supervised": (self.learner_semi_supervised, ("none", "pseudolabel")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, found {value!r}")
        if int(self.n_iter) < 1 or int(self.learner_rounds) < 1:
            raise ValueError(f"n_iter and learner_rounds: expected >= 1, found {self.n_iter}, {self.learner_rounds}")

    def _static(self, table: LabelTable) -> Static:
        """The EM-only `Static` (no learner), so learner settings never recompile EM."""
        n_pad, a_pad = table.annotations.worker.shape
        return Static(
            num_items=int(n_pad),
            num_prototypes=0,
            num_classes=len(table.classes),
            num_workers=int(table.annotations.worker_count.shape[0]),
            feature_dim=1,
            max_annotations=int(a_pad),
            em=EMStatic(
                max_em_steps=int(self.n_iter),
                criterion=self.criterion,
                m_step=self.m_step,
                class_prior=self.class_prior,
                init=self.init,
            ),
        )

    def _params(self) -> Params:
        return make_params(
            risk_threshold=self.risk_threshold,
            prior_strength=self.prior_strength,
            prior_pos_count=self.prior_pos_count,
            prior_neg_count=self.prior_neg_count,
            em_epsilon=self.tol,
            log_epsilon=self.log_epsilon,
            pseudo_label_threshold=self.risk_threshold,
        )

    def _learner_static(self, static: Static, problem: _Problem) -> Static:
        k, p = static.num_classes, len(problem.prototype_labels)
        per_class = max(round(p / k), 2) if p else 2 * _AUTO_VAL_PER_CLASS
        ls = LearnerStatic(
            model=learner.MLP(num_classes=k, hidden_sizes=self.learner_hidden),
            max_epochs=int(self.learner_epochs),
            calibrate="temperature",
            semi_supervised=self.learner_semi_supervised,
            early_stop_scope="global",
            prototype_as_val=True,
        )
        return dataclasses.replace(
            static,
            num_prototypes=p,
            feature_dim=int(problem.features.shape[1]),
            n_prototype_per_class=per_class,
            learner=ls,
        )

    def fit(
        self,
        data: pd.DataFrame,
        true_labels: Any = None,
        initial_error: Any = None,
        *,
        features: FeatureInput | None = None,
    ) -> DawidSkene:
        """Fit on a label table (columns task, worker, label).

        Args:
          true_labels: optional gold labels (Series task -> label, or a DataFrame with task
            and label columns): clamped in every E-step as crowd-kit does; with features,
            gold tasks are the learner's validation prototypes.
          initial_error: crowd-kit's argument; not supported (use `worker_prior`).
          features: optional task features (DataFrame indexed by task, or (tasks, array));
            tasks that only have features become unlabelled items.
        """
        if initial_error is not None:
            raise ValueError(
                "initial_error: crowd-kit's initial error matrices are not a jaxanno option; express prior "
                "knowledge of the workers with worker_prior and prior_strength instead"
            )
        self.check_options()
        problem = prepare(data, true_labels, features, self.classes, self.duplicates)
        return self.fit_prepared(problem)

    def fit_prepared(self, problem: _Problem) -> DawidSkene:
        """`fit` on inputs already checked and converted by `prepare` (the command line's path)."""
        table = problem.table
        static, params = self._static(table), self._params()
        key = jax.random.key(self.seed)
        k_em, k_learn = jax.random.split(key)
        prior = worker_prior_alpha(static, params, self.worker_prior, table, problem.gold_codes)
        gold = jnp.asarray(problem.gold_codes)
        result = _solve_jit(static, params, table.annotations, prior, None, gold, k_em)
        posterior, probs = result.posterior, None
        use_learner = self.learner is not None and problem.features is not None
        if self.final_e_step or use_learner:
            posterior = _posterior_jit(
                static, params, table.annotations, prior + result.counts, result.log_class_prior, None, gold
            )
        if use_learner:
            result, posterior, probs = self._learner_rounds(static, params, problem, prior, result, posterior, k_learn)
        self._store(problem, static, prior, result, np.asarray(posterior), probs)
        return self

    def _learner_rounds(self, static, params, problem, prior, result, posterior, key):
        """The reference's add_annotation path: fit the learner on the posterior, then a
        fresh E-step with its probabilities; repeated `learner_rounds` times with EM."""
        table, gold = problem.table, jnp.asarray(problem.gold_codes)
        lstatic = self._learner_static(static, problem)
        features = jnp.asarray(problem.features)
        protos = jnp.asarray(problem.prototype_labels)
        n_real = table.num_items
        real = np.arange(static.num_items) < n_real
        is_proto_item = problem.gold_codes >= 0
        train_items = jnp.asarray((np.asarray(table.annotations.item_count) > 0) & ~is_proto_item & real)
        uniform = jnp.full((static.num_classes,), 1.0 / static.num_classes)
        state = learner.init_output(lstatic)
        for r in range(int(self.learner_rounds)):
            # gold items are validation prototypes: a uniform row keeps them out of pseudo-labels
            shown = jnp.where(jnp.asarray(is_proto_item)[:, None], uniform, posterior)
            state = _learner_jit(
                lstatic, params, features, shown, protos, train_items, state, jax.random.fold_in(key, r)
            )
            log_learner = dawid_skene.learner_log_prior(state.probs, static.num_items)
            if r + 1 < self.learner_rounds:
                result = _solve_jit(
                    static, params, table.annotations, prior, log_learner, gold, jax.random.fold_in(key, 1000 + r)
                )
            posterior = _posterior_jit(
                static, params, table.annotations, prior + result.counts, result.log_class_prior, log_learner, gold
            )
        return result, posterior, np.asarray(state.probs)

    def _store(self, problem, static, prior, result, posterior_pad, learner_probs) -> None:
        """Device results to crowd-kit-style pandas attributes (real rows and workers only)."""
        table = problem.table
        n, w, classes = table.num_items, table.num_workers, table.classes
        posterior = posterior_pad[:n]
        alpha = prior + result.counts
        confusion = np.asarray(_confusion_jit(alpha))[:w]  # (W, K, K) p(given | true)
        class_prior = np.exp(np.asarray(result.log_class_prior))
        worker_index = pd.Index(table.workers, name="worker")
        self.table_, self.problem_ = table, problem
        self.posterior_, self.alpha_ = jnp.asarray(posterior_pad), alpha
        self.probas_ = _proba_frame(posterior, table.tasks, classes)
        self.labels_ = _labels_series(posterior, table.tasks, classes)
        self.risks_ = pd.Series(1.0 - posterior.max(1), index=self.probas_.index, name="risk")
        self.confident_ = (self.risks_ < self.risk_threshold).rename("confident")
        self.priors_ = pd.Series(class_prior, index=pd.Index(classes, name="label"), name="prior")
        self.confusion_ = confusion
        errors = confusion.transpose(0, 2, 1).reshape(w * len(classes), len(classes))
        index = pd.MultiIndex.from_product([table.workers, classes], names=["worker", "label"])
        self.errors_ = pd.DataFrame(errors, index=index, columns=pd.Index(classes, name="label"))
        accuracy = (confusion.diagonal(axis1=1, axis2=2) * class_prior).sum(1)
        self.skills_ = pd.Series(accuracy, index=worker_index, name="skill")
        self.agreement_ = pd.Series(_agreement(table, posterior.argmax(1)), index=worker_index, name="agreement")
        self.n_iter_ = int(result.iterations)
        self.loss_history_ = [float(v) for v in np.asarray(result.history)[: self.n_iter_]]
        self.learner_probas_ = None
        if learner_probs is not None:
            self.learner_probas_ = _proba_frame(learner_probs[:n], table.tasks, classes)

    def fit_predict(
        self,
        data: pd.DataFrame,
        true_labels: Any = None,
        initial_error: Any = None,
        *,
        features: FeatureInput | None = None,
    ) -> pd.Series:
        """`fit`, then the most probable label of every task (Series indexed by task)."""
        return self.fit(data, true_labels, initial_error, features=features).labels_

    def fit_predict_proba(
        self,
        data: pd.DataFrame,
        true_labels: Any = None,
        initial_error: Any = None,
        *,
        features: FeatureInput | None = None,
    ) -> pd.DataFrame:
        """`fit`, then the posterior (task x label DataFrame, rows sum to 1)."""
        return self.fit(data, true_labels, initial_error, features=features).probas_

    def confusion_frame(self) -> pd.DataFrame:
        """Long format: worker, true, given, prob = p(given | true) for every worker."""
        w, k = self.confusion_.shape[:2]
        classes = self.table_.classes
        return pd.DataFrame(
            {
                "worker": np.repeat(np.asarray(self.table_.workers, dtype=object), k * k),
                "true": np.tile(np.repeat(np.asarray(classes, dtype=object), k), w),
                "given": np.tile(np.asarray(classes, dtype=object), w * k),
                "prob": self.confusion_.reshape(-1),
            }
        )


class Batch(NamedTuple):
    """One batch of HITs, (H, B) lanes: H HITs of at most B tasks."""

    items: jax.Array  # (H, B) i32 item per lane
    workers: jax.Array  # (H,) i32 worker of each HIT
    valid: jax.Array  # (H, B) bool lanes that carry a task
    expected_accuracy: jax.Array  # (H,) f32 the worker's expected accuracy on the HIT


def _workers_present(slot_workers: jax.Array, lane_mask: jax.Array, num_workers: int) -> jax.Array:
    """(W,) bool: the worker filled a slot of a masked row ((R, A) slots, (R,) mask)."""
    hit = lane_mask[:, None] & (slot_workers >= 0)
    index = jnp.where(hit, slot_workers, num_workers).ravel()
    return jnp.zeros(num_workers + 1, bool).at[index].set(True)[:num_workers]


def _open_items(annotations: AnnotationState, eligible: jax.Array, num_workers: int) -> jax.Array:
    """(W,) eligible items each worker has not labelled yet."""
    index = jnp.where(annotations.valid, annotations.worker, num_workers).ravel()
    weight = jnp.broadcast_to(eligible[:, None], annotations.worker.shape).ravel().astype(jnp.int32)
    done = jnp.zeros(num_workers + 1, jnp.int32).at[index].add(weight)[:num_workers]
    return eligible.sum() - done


def _draw(static: Static, params: Params, annotations: AnnotationState, item_count, risk, posterior, alpha, key):
    """(B,) items of one HIT, uniformly among items of finite risk, via `sampler.select_hits`."""
    one = dataclasses.replace(static, hits_per_step=1, sampler="random")
    em_state = EMState(
        counts=alpha,
        log_class_prior=jnp.zeros(static.num_classes),
        posterior=posterior,
        risk=risk,
        iterations=jnp.int32(0),
    )
    hits = sampler.select_hits(
        one, params, annotations.replace(item_count=item_count), em_state, alpha, jnp.int32(NO_CAP), key
    )
    return hits.items[0], hits.valid[0]


def assign(
    static: Static,
    params: Params,
    annotations: AnnotationState,
    posterior: jax.Array,
    alpha: jax.Array,
    item_ok: jax.Array,
    worker_ok: jax.Array,
    max_per_task: jax.Array,
    key: jax.Array,
) -> Batch:
    """Choose `static.hits_per_step` HITs of up to `static.hit_size` tasks (REFERENCE section 7).

    Eligible tasks: `item_ok`, risk above ``params.risk_threshold`` (no lowering: only
    uncertain tasks go out) and fewer than `max_per_task` labels, counting this batch.
    Tasks of a HIT are distinct and drawn uniformly from the eligible ones by
    `sampler.select_hits`; HITs of a batch go to distinct workers; nobody gets a task they
    already labelled; a worker ends with at most ``params.max_annotation_per_worker`` labels.

    * random (``static.sampler == 'random'``): a uniformly random worker among those with
      room and an eligible task they have not labelled, then that worker's tasks.
    * greedy (``'greedy_task_assignment'``): the tasks first, then the allowed worker with
      the highest expected accuracy on them (`sampler.worker_accuracy_on`); a worker is
      allowed when it has room for the whole HIT and labelled none of its tasks.

    Fewer eligible tasks or workers give smaller or empty (all-invalid) HITs, never a hang.

    Args:
      posterior: (N, K); alpha: (W, K, K) pseudo-counts; item_ok: (N,) bool real, non-gold
        items; worker_ok: (W,) bool real workers; max_per_task: () i32.
    Returns:
      `Batch` with (H, B) lanes.
    """
    risk = em.risk(posterior)
    w, b = static.num_workers, static.hit_size
    greedy = static.sampler == "greedy_task_assignment"
    cap = params.max_annotation_per_worker

    def one_hit(carry, h):
        item_count, worker_count, used = carry
        k_worker, k_items = jax.random.split(jax.random.fold_in(key, h))
        eligible = item_ok & (risk > params.risk_threshold) & (item_count < max_per_task)
        free = worker_ok & ~used & (worker_count < cap)
        if greedy:
            masked = jnp.where(eligible, risk, -jnp.inf)
            items, valid = _draw(static, params, annotations, item_count, masked, posterior, alpha, k_items)
            score = sampler.worker_accuracy_on(posterior[items], valid, alpha)
            seen = _workers_present(annotations.worker[items], valid, w)
            allowed = free & ~seen & (worker_count + valid.sum() <= cap)
            worker = ops.random_argmax(score, allowed, k_worker)
            valid = valid & allowed.any()
        else:
            allowed = free & (_open_items(annotations, eligible, w) > 0)
            worker = ops.random_argmax(jnp.zeros(w), allowed, k_worker)
            mine = (annotations.worker == worker).any(-1)
            masked = jnp.where(eligible & ~mine, risk, -jnp.inf)
            items, valid = _draw(static, params, annotations, item_count, masked, posterior, alpha, k_items)
            valid = valid & allowed.any() & (jnp.arange(b) < cap - worker_count[worker])
            score = sampler.worker_accuracy_on(posterior[items], valid, alpha)
        taken = valid.sum(dtype=jnp.int32)
        carry = (
            item_count.at[items].add(valid.astype(jnp.int32)),
            worker_count.at[worker].add(taken),
            used.at[worker].set(used[worker] | (taken > 0)),
        )
        return carry, (items, worker, valid, score[worker])

    start = (annotations.item_count, annotations.worker_count, jnp.zeros(w, bool))
    _, (items, chosen, valid, accuracy) = jax.lax.scan(one_hit, start, jnp.arange(static.hits_per_step))
    return Batch(items=items, workers=chosen, valid=valid, expected_accuracy=accuracy)


_assign_jit = jax.jit(assign, static_argnums=0)


def next_batch(
    model: DawidSkene,
    n_hits: int = 5,
    hit_size: int = 40,
    assignment: str = "random",
    max_per_worker: int | None = 2000,
    max_per_task: int | None = None,
    risk_threshold: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The next HITs for a fitted `DawidSkene` (see `assign` for the rules).

    Args:
      n_hits, hit_size: at most `n_hits` HITs of at most `hit_size` tasks.
      assignment: 'random' or 'greedy'.
      max_per_worker: cap on a worker's labels, existing ones included (None: no cap).
      max_per_task: cap on a task's labels, existing ones included (None: no cap).
      risk_threshold: tasks at or below this risk are not sent (default: the model's).
    Returns:
      DataFrame with columns hit (0..), worker, task, risk, expected_accuracy, one row per
      task sent; HITs that got no task are left out and the rest renumbered.
    """
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment: expected one of {ASSIGNMENTS}, found {assignment!r}")
    for name, value in (("n_hits", n_hits), ("hit_size", hit_size)):
        if int(value) < 1:
            raise ValueError(f"{name}: expected >= 1, found {value}")
    for name, value in (("max_per_worker", max_per_worker), ("max_per_task", max_per_task)):
        if value is not None and int(value) < 0:
            raise ValueError(f"{name}: expected >= 0 or None, found {value}")
    table = model.table_
    n_pad, k = model.posterior_.shape
    w_pad = int(model.alpha_.shape[0])
    static = Static(
        num_items=int(n_pad),
        num_prototypes=0,
        num_classes=int(k),
        num_workers=w_pad,
        feature_dim=1,
        max_annotations=NO_CAP,
        hit_size=int(hit_size),
        hits_per_step=int(n_hits),
        sampler="greedy_task_assignment" if assignment == "greedy" else "random",
    )
    threshold = model.risk_threshold if risk_threshold is None else risk_threshold
    params = make_params(
        risk_threshold=threshold, max_annotation_per_worker=NO_CAP if max_per_worker is None else max_per_worker
    )
    item_ok = (np.arange(n_pad) < table.num_items) & (model.problem_.gold_codes < 0)
    worker_ok = np.arange(w_pad) < table.num_workers
    cap = jnp.int32(NO_CAP if max_per_task is None else max_per_task)
    batch = _assign_jit(
        static,
        params,
        table.annotations,
        model.posterior_,
        model.alpha_,
        jnp.asarray(item_ok),
        jnp.asarray(worker_ok),
        cap,
        jax.random.key(seed),
    )
    return _batch_frame(model, jax.device_get(batch))


def _batch_frame(model: DawidSkene, batch: Batch) -> pd.DataFrame:
    valid = np.asarray(batch.valid)
    hit_ids = np.cumsum(valid.any(1)) - 1  # renumber the non-empty HITs 0, 1, ...
    h, b = np.nonzero(valid)
    items = np.asarray(batch.items)[h, b]
    workers_of = np.asarray(batch.workers)[h]
    return pd.DataFrame(
        {
            "hit": hit_ids[h].astype(np.int64),
            "worker": np.asarray(model.table_.workers, dtype=object)[workers_of],
            "task": np.asarray(model.table_.tasks, dtype=object)[items],
            "risk": model.risks_.to_numpy()[items],
            "expected_accuracy": np.asarray(batch.expected_accuracy)[h],
        }
    )


def simulate_labels(
    num_tasks: int,
    num_workers: int,
    num_classes: int,
    labels_per_task: int,
    seed: int = 0,
    accuracy: tuple[float, float] = (0.55, 0.95),
) -> tuple[pd.DataFrame, pd.Series]:
    """A synthetic crowd table for examples, tests and benchmarks (NumPy, host side).

    Worker j answers correctly with probability a_j ~ U(accuracy), otherwise uniformly
    among the other classes; each task gets `labels_per_task` distinct workers.

    Returns:
      (labels DataFrame with columns task, worker, label; gold Series task -> label).
    """
    if labels_per_task > num_workers:
        raise ValueError(f"labels_per_task: expected at most num_workers ({num_workers}), found {labels_per_task}")
    rng = np.random.default_rng(seed)
    truth = rng.integers(num_classes, size=num_tasks)
    skill = rng.uniform(*accuracy, size=num_workers)
    base = rng.integers(num_workers, size=num_tasks)
    coprime = np.array([s for s in range(1, num_workers + 1) if np.gcd(s, num_workers) == 1])
    stride = rng.choice(coprime, size=num_tasks)  # distinct workers: base + a * stride mod W
    worker = (base[:, None] + np.arange(labels_per_task) * stride[:, None]) % num_workers
    right = rng.random(worker.shape) < skill[worker]
    wrong = (truth[:, None] + rng.integers(1, max(num_classes, 2), size=worker.shape)) % num_classes
    label = np.where(right, truth[:, None], wrong)
    tasks = np.repeat(np.arange(num_tasks), labels_per_task)
    frame = pd.DataFrame({"task": tasks, "worker": worker.ravel(), "label": label.ravel()})
    return frame, pd.Series(truth, index=pd.Index(np.arange(num_tasks), name="task"), name="label")
