"""Packaged data and feature sources: what an experiment labels and what the learner sees.

`load_features(spec)` returns a `FeatureSet` (numpy, items first then prototypes) from a
stand-in generator or a user's files; `make_dataset` turns it into the `types.Dataset`
the simulator consumes, adding the real-crowd counts of its classes. Every problem with a
setting or a file raises `DataError` (a `ValueError`) naming the setting or file.
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import numpy as np

from jaxanno import types
from jaxanno.data import amt, inputs, standin

DataError = inputs.DataError  # a ValueError naming the data setting or file, what was found and what to do
OTHER_CLASS = "other"  # name of the extra class of distraction items
REAL_WORKER_TYPES = ("structured_noise", "uniform_noise", "item_difficulty")
SOURCES = ("standin", "reference", "npz", "npy")  # where `load_features` reads from
STANDIN_GEOMETRIES = standin.GEOMETRIES  # 'compact' (default) or 'lookalike' (see `standin`)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where the features come from and which items to label (plain values, no config)."""

    source: str = "standin"  # 'standin', 'reference', 'npz' or 'npy'
    experiment: str | None = None
    wnids: tuple[str, ...] = ()
    n_data_per_class: int | None = None
    n_prototype_per_class: int = 10
    n_data_distraction_per_class: int = 0
    feature_dim: int = 128
    seed: int = 0
    features: str = ""
    image_list: str = ""
    labels: str = ""
    cache_dir: str = ""
    standin_geometry: str = "compact"  # one of STANDIN_GEOMETRIES; stand-in source only


@dataclasses.dataclass
class FeatureSet:
    """Features and true labels of the items to label, followed by the prototypes."""

    features: np.ndarray  # (M, D) float32, possibly memory-mapped
    labels: np.ndarray  # (M,) int32
    num_items: int  # N: rows [0, N) are items, [N, M) prototypes
    class_names: list[str]  # K names; the 'other' class last when present
    wnids: list[str] | None  # ImageNet wnids of the classes (real-crowd data), or None
    description: str

    @property
    def num_prototypes(self) -> int:
        return int(self.labels.shape[0]) - self.num_items

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _integer(value, name: str, minimum: int, none_ok: bool = False) -> None:
    """`value` is an integer (not a bool) >= minimum, or None when `none_ok`."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        also = " or None" if none_ok else ""
        raise DataError(f"{name}={value!r}: expected an integer >= {minimum}{also}")


def check_spec(spec: DataSpec) -> DataSpec:
    """`spec` with its wnids normalised (BOM and surrounding whitespace dropped), once checked.

    Raises:
      DataError: a setting of the wrong type or out of range, named in full (e.g. ``data.seed``).
    """
    if spec.source not in SOURCES:
        raise DataError(f"data.source={spec.source!r}: expected one of {list(SOURCES)}")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, numbers.Integral) or spec.seed < 0:
        raise DataError(
            f"data.seed={spec.seed!r}: expected an integer >= 0 (it seeds the item and prototype draws and the "
            "stand-in features)"
        )
    _integer(spec.feature_dim, "data.feature_dim", 1)
    if spec.source != "standin" and spec.standin_geometry != "compact":
        raise DataError(
            f"data.standin_geometry={spec.standin_geometry!r}: applies to stand-in features only, but the features "
            f"come from data.features ({spec.source}); drop data.standin_geometry or data.features"
        )
    _integer(spec.n_prototype_per_class, "n_prototype_per_class", 0)
    _integer(spec.n_data_distraction_per_class, "n_data_distraction_per_class", 0)
    if spec.n_data_per_class is not None and (
        isinstance(spec.n_data_per_class, bool) or not isinstance(spec.n_data_per_class, numbers.Integral)
    ):
        raise DataError(f"n_data_per_class={spec.n_data_per_class!r}: expected an integer or None (<= 0: all items)")
    for i, w in enumerate(spec.wnids):
        if not isinstance(w, str):
            raise DataError(f"wnids: expected strings (ImageNet wnids), found {type(w).__name__} {w!r} at index {i}")
    wnids = tuple(inputs.clean_id(w) for w in spec.wnids)
    if "" in wnids:
        raise DataError(f"wnids: expected non-empty wnids, found an empty one at index {wnids.index('')}")
    lowered = [w.lower() for w in wnids]
    twice = sorted({w for w in wnids if lowered.count(w.lower()) > 1})
    if twice:
        raise DataError(f"wnids: expected distinct classes, found {twice[:10]} more than once (case ignored)")
    return dataclasses.replace(spec, wnids=wnids)


def load_features(spec: DataSpec) -> FeatureSet:
    """Load or generate the features of an experiment (see `DataSpec`).

    Raises:
      DataError: a bad setting (see `check_spec`) or file, named with what to do.
    """
    spec = check_spec(spec)
    if spec.source == "standin":
        return _standin(spec)
    from jaxanno.data import files  # real-feature loaders

    return files.load(spec)


def _standin(spec: DataSpec) -> FeatureSet:
    if spec.n_data_distraction_per_class > 0:
        raise DataError(
            f"n_data_distraction_per_class={spec.n_data_distraction_per_class} needs data.source='reference' "
            "(distraction items are images of other wnids in the image list); stand-ins have none"
        )
    wnids = list(spec.wnids)
    features, labels, n = standin.load(
        spec.experiment,
        wnids,
        spec.n_data_per_class,
        spec.n_prototype_per_class,
        spec.feature_dim,
        spec.seed,
        spec.cache_dir,
        spec.standin_geometry,
    )
    names = amt.class_names()
    geometry = "" if spec.standin_geometry == "compact" else f", {spec.standin_geometry} geometry"
    return FeatureSet(
        features=features,
        labels=labels,
        num_items=n,
        class_names=[names.get(w.lower(), w) for w in wnids],
        wnids=wnids,
        description=(
            f"stand-in features (not ImageNet) for {spec.experiment or 'custom classes'}, width {spec.feature_dim}"
            f"{geometry}"
        ),
    )


def crowd_stats(wnids: list[str] | None, num_classes: int, with_other: bool, needed: bool) -> types.CrowdStats:
    """Real-crowd counts of the classes (numpy); zero-size arrays when unavailable and unneeded.

    Raises:
      DataError: a real-worker simulation or crowd-based prior needs classes without data.
    """
    try:
        if wnids is None:
            raise DataError("the classes have no ImageNet wnids")
        arrays = amt.crowd_arrays(wnids, with_other)
    except ValueError as err:
        if needed:
            raise DataError(
                f"{err}; real-worker simulations and 'homegeneous_*' priors need classes among the "
                "100 with real-worker data. Use worker.type 'perfect' or 'uniform' with "
                "worker.prior.type 'predefined_homegeneous' or 'heterogeneous_*'."
            ) from None
        arrays = amt.empty_crowd_arrays(num_classes)
    return types.CrowdStats(**arrays)


def make_dataset(
    fs: FeatureSet, worker_type: str, prior_type: str, with_other: bool = False, host: bool = False
) -> types.Dataset:
    """The simulator's `Dataset`: features plus the crowd counts of the classes.

    Args:
      host: keep numpy arrays (for placement on a device mesh) instead of device arrays.
    """
    if with_other and not (fs.class_names and fs.class_names[-1] == OTHER_CLASS):
        raise DataError(
            f"n_data_distraction_per_class > 0 expects features whose last class is '{OTHER_CLASS}' (distraction "
            f"items), found classes ending with {fs.class_names[-1:]}"
        )
    needed = worker_type in REAL_WORKER_TYPES or prior_type.startswith("homegeneous_workers")
    wnids = None if fs.wnids is None else list(fs.wnids)
    crowd = crowd_stats(wnids, fs.num_classes, with_other, needed)
    data = types.Dataset(
        features=np.asarray(fs.features, np.float32),
        labels=np.asarray(fs.labels, np.int32),
        crowd=crowd,
    )
    return data if host else jax.device_put(data)
