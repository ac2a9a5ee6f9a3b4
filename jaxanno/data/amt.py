"""Real Mechanical Turk worker data and the paper's experiment settings, shipped in-package.

The files under ``jaxanno/data/amt/`` come from the public release of "Towards Good Practices
for Efficiently Annotating Large-Scale Image Classification Datasets" (Liao, Kar, Fidler,
CVPR 2021), MIT licence, copyright (c) 2021 Sanja Fidler's Lab (see ``amt/LICENSE``):

* ``group_workers.json``: 6 groups of real workers, each worker a 100 x 100 count matrix over
  the ImageNet100 classes (40 labels per worker), in the order of its ``imagenet100`` list.
* ``groups.txt``: the wnids each group labelled, groups separated by a blank line.
* ``experiments.json``: class lists and online settings of every experiment of the paper.

Everything here is plain numpy, computed once per process and cached.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources

import numpy as np

from jaxanno.data.inputs import DataError, clean_id

OTHER_GROUP = -1  # group id of the extra 'other' class of distraction items


def _read_text(name: str) -> str:
    return resources.files("jaxanno.data").joinpath("amt").joinpath(name).read_text(encoding="utf-8-sig")


@functools.cache
def experiments() -> dict[str, dict]:
    """Experiment name -> settings (wnids, n_classes, n_data_per_class, online, ...)."""
    return json.loads(_read_text("experiments.json"))


@functools.cache
def groups() -> tuple[tuple[str, ...], ...]:
    """The wnids of each real-worker group, in file order."""
    blocks = [b.split() for b in _read_text("groups.txt").strip().split("\n\n")]
    return tuple(tuple(b) for b in blocks if b)


@functools.cache
def _worker_file() -> dict:
    return json.loads(_read_text("group_workers.json"))


@functools.cache
def imagenet100() -> tuple[str, ...]:
    """The 100 wnids in the column order of the count matrices."""
    return tuple(w.lower() for w in _worker_file()["imagenet100"])


@functools.cache
def class_names() -> dict[str, str]:
    """wnid -> human-readable ImageNet name for the 100 classes."""
    f = _worker_file()
    return dict(zip(imagenet100(), f["imagenet100_name"]))


@functools.cache
def worker_counts() -> tuple[np.ndarray, ...]:
    """Per group, a (workers, 100, 100) float64 array of real label counts."""
    gw = _worker_file()["group_workers"]
    return tuple(np.asarray(gw[k], np.float64) for k in sorted(gw, key=int))


def _restrict(counts: np.ndarray, keep: np.ndarray, with_other: bool) -> np.ndarray:
    """Restrict (..., 100, 100) counts to `keep`; optionally fold the rest into 'other'.

    With ``with_other`` the result is (..., K+1, K+1): the last row and column hold the
    counts of every class outside the experiment, as the reference does for distraction.
    """
    inner = counts[..., keep, :][..., :, keep]
    if not with_other:
        return inner
    drop = np.ones(counts.shape[-1], bool)
    drop[keep] = False
    k = len(keep)
    out = np.zeros(counts.shape[:-2] + (k + 1, k + 1), counts.dtype)
    out[..., :k, :k] = inner
    out[..., k, :k] = counts[..., drop, :][..., :, keep].sum(-2)
    out[..., :k, k] = counts[..., keep, :][..., :, drop].sum(-1)
    out[..., k, k] = counts[..., drop, :][..., :, drop].sum((-2, -1))
    return out


def class_indices(wnids: Sequence[str]) -> np.ndarray:
    """Column index of each wnid (case, BOM and surrounding whitespace ignored) in the count matrices."""
    order = {w: i for i, w in enumerate(imagenet100())}
    wnids = [clean_id(w).lower() for w in wnids]
    unknown = [w for w in wnids if w not in order]
    if unknown:
        raise DataError(
            f"wnids {unknown[:5]} are not among the 100 classes with real-worker data "
            "(jaxanno/data/amt/group_workers.json); use simulation 'perfect' or "
            "'uniform' for other classes"
        )
    return np.array([order[w] for w in wnids])


def class_groups(wnids: Sequence[str], with_other: bool = False) -> np.ndarray:
    """(K,) group id of each class (index into `groups()`), -1 for the 'other' class."""
    where = {w: g for g, block in enumerate(groups()) for w in block}
    ids = [where.get(clean_id(w).lower(), OTHER_GROUP) for w in wnids]
    if with_other:
        ids.append(OTHER_GROUP)
    return np.array(ids, np.int32)


def crowd_arrays(wnids: Sequence[str], with_other: bool = False) -> dict[str, np.ndarray]:
    """The real-crowd counts of an experiment, ready for `types.CrowdStats`.

    Returns float32/int32/bool numpy arrays: ``group_totals`` (G, K, K), ``worker_counts``
    (G, Wg, K, K) padded with zeros, ``worker_valid`` (G, Wg), ``class_group`` (K,) and
    ``global_counts`` (K, K), where K includes the 'other' class when ``with_other``.
    """
    keep = class_indices(wnids)
    per_group = [_restrict(c, keep, with_other) for c in worker_counts()]
    k = per_group[0].shape[-1]
    wg = max(len(c) for c in per_group)
    counts = np.zeros((len(per_group), wg, k, k), np.float32)
    valid = np.zeros((len(per_group), wg), bool)
    for g, c in enumerate(per_group):
        counts[g, : len(c)] = c
        valid[g, : len(c)] = True
    totals = counts.sum(1)
    return dict(
        group_totals=totals,
        worker_counts=counts,
        worker_valid=valid,
        class_group=class_groups(wnids, with_other),
        global_counts=totals.sum(0),
    )


def empty_crowd_arrays(num_classes: int) -> dict[str, np.ndarray]:
    """Zero-size crowd arrays for simulations that use no real workers."""
    k = num_classes
    return dict(
        group_totals=np.zeros((0, k, k), np.float32),
        worker_counts=np.zeros((0, 0, k, k), np.float32),
        worker_valid=np.zeros((0, 0), bool),
        class_group=np.full((k,), OTHER_GROUP, np.int32),
        global_counts=np.zeros((k, k), np.float32),
    )


def experiment_wnids(name: str) -> list[str]:
    """The class list of a named experiment."""
    exps = experiments()
    if name not in exps:
        raise DataError(f"experiment={name!r}: unknown experiment; expected one of {sorted(exps)}")
    return list(exps[name]["wnids"])
