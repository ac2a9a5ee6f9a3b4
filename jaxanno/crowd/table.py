"""Checking and encoding crowd label tables: (task, worker, label) rows to padded slots.

Input is a table of worker labels with columns ``task``, ``worker`` and ``label``
(crowd-kit's convention); tasks, workers and labels may be strings or integers and a task
may have any number of labels. `encode` checks it and packs the labels into fixed (N, A)
slots (A = the most labels any task has); `prepare` also checks gold labels and task
features against the labels. Everything here runs on the host (NumPy, pandas).

Shapes: N (tasks), W (workers) and A (slots) are rounded up to shape buckets so that
fits of similar sizes reuse one compiled program; padded items, workers and slots carry
no label and are masked out downstream.

* Tasks and workers: powers of two (at least 64 tasks, 8 workers). Compile time does not
  depend on them, and a padded task or worker only costs memory traffic in the E-step,
  which is a small part of a fit next to the pandas work on the host.
* Slots: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (2^k and 3 * 2^(k-1)). The E-step handles one
  slot at a time, unrolled, so compile time and run time both grow with A: powers of two
  would nearly double both for A just above one (33 -> 64); these steps waste at most a
  third of the padded slots, and small A (the usual 1-5 labels per task) stays exact.

Duplicates: a worker who labelled the same task more than once is an error by default;
``duplicates='keep_last' | 'keep_first'`` keeps one of the labels and ``'keep_all'`` keeps
them all as independent labels (what crowd-kit does silently).

Types: ids and labels are taken exactly as given, so a column that mixes text and numbers
(task ``5`` and ``'5'``, label ``0`` and ``'0'``) would silently hold two different keys;
it is refused, with examples of both kinds (`check_one_type`). Missing values (NaN, None)
are refused as well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd

from jaxanno.types import AnnotationState

COLUMNS = ("task", "worker", "label")
DUPLICATE_POLICIES = ("error", "keep_last", "keep_first", "keep_all")
MIN_ITEMS, MIN_WORKERS = 64, 8  # smallest task and worker buckets

FeatureInput = pd.DataFrame | tuple[Sequence[Any], np.ndarray]  # by task, or (task list, (T, D) array)


def bucket_pow2(n: int, minimum: int = 1) -> int:
    """The least power of two >= max(n, minimum) (the task and worker buckets)."""
    n = max(int(n), int(minimum), 1)
    return 1 << (n - 1).bit_length()


def bucket(n: int, minimum: int = 1) -> int:
    """The least of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (2^k or 3 * 2^(k-1)) >= max(n, minimum).

    Two buckets per octave: the slot bucket (see the module docstring); at most a third
    of a bucket is padding.
    """
    n = max(int(n), int(minimum), 1)
    power = bucket_pow2(n)
    return power * 3 // 4 if n <= power * 3 // 4 and power >= 4 else power


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
                f"{source}: column '{col}' has {int(empty.sum())} empty value(s) (blank, NaN or None; "
                f"first at row(s) {rows}); expected a value in every row"
            )
        check_one_type(frame[col], f"{source}: column '{col}'")
    return frame


def check_one_type(values: Any, what: str) -> None:
    """Raise a ValueError when `values` mix text and numbers (``5`` and ``'5'`` are two keys).

    Args:
      values: a Series, Index or list of ids or labels; `what` names it in the message.
    """
    values = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = pd.Series(values.cat.categories)
    if values.dtype != object or pd.api.types.infer_dtype(values, skipna=True) not in ("mixed", "mixed-integer"):
        return
    is_text = values.map(lambda v: isinstance(v, str)).to_numpy(bool)
    text, other = pd.unique(values[is_text]), pd.unique(values[~is_text])
    clash = [_plain(v) for v in other if str(_plain(v)) in set(text)]
    if clash:
        found = ", ".join(f"{v!r} and {str(v)!r}" for v in clash[:2]) + ", which would be different keys"
    else:
        found = f"{_plain(other[0])!r} and {text[0]!r}"
    raise ValueError(
        f"{what} mixes text and numbers ({int(is_text.sum())} text, {int((~is_text).sum())} other value(s); "
        f"e.g. {found}); expected one type per column: convert it, e.g. with .astype(str)"
    )


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
    check_one_type(list(classes), "classes")
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
    n_pad, a_pad = bucket_pow2(len(tasks), MIN_ITEMS), bucket(int(slot.max()) + 1)
    w_pad = bucket_pow2(len(worker_index), MIN_WORKERS)
    worker_slots = np.full((n_pad, a_pad), -1, np.int32)
    label_slots = np.full((n_pad, a_pad), -1, np.int32)
    worker_slots[task_code, slot] = worker_code
    label_slots[task_code, slot] = label_code
    annotations = AnnotationState(
        worker=worker_slots,
        label=label_slots,
        item_count=(worker_slots >= 0).sum(1).astype(np.int32),
        worker_count=np.bincount(worker_code, minlength=w_pad).astype(np.int32),
    )
    return LabelTable(
        tasks=tasks,
        workers=pd.Index(worker_index),
        classes=classes,
        task_code=task_code,
        worker_code=worker_code,
        label_code=label_code,
        annotations=jax.device_put(annotations),  # a copy, not a program (jnp.asarray compiles one)
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
    check_one_type(gold.index.to_series(), f"{source}: tasks")
    check_one_type(gold, f"{source}: labels")
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


@dataclasses.dataclass
class Problem:
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
) -> Problem:
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
    return Problem(table=table, gold=gold, gold_codes=gold_codes, features=feats, prototype_labels=proto_labels)
