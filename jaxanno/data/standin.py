"""Stand-in features for every experiment of the paper (these are NOT ImageNet features).

The paper's learner runs on BYOL ResNet-50 embeddings of ImageNet images, which cannot be
shipped. A stand-in set has the experiment's classes and image counts, and a geometry that
follows the real class structure, so that the learner and the simulated workers err on the
same pairs of classes:

* class means come from a target Gram matrix T = I + a * [same group] + b * S, where the
  groups are those of ``groups.txt`` and S is the symmetrised, row-normalised confusion of
  the real Mechanical Turk workers (off-diagonal). Classes of one group are closer to each
  other than to other groups, and pairs that humans confuse are closer still;
* every row is its class mean plus Gaussian noise: ``signal_std`` in the K class
  dimensions and ``nuisance_std`` in the D - K others, then a fixed random rotation.

The two noise levels are calibrated per experiment and width (`CALIBRATION`) so that the
reference MLP trained on 5 prototypes per class, and on all true labels, scores about what
the paper's learner scores on BYOL features (benchmarks/bench_standin_calibration.py
measures it). Generation is deterministic in (experiment, classes, counts, width, seed) and
cached on disk after first use.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import zlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from jaxanno.data import amt

GROUP_AFFINITY = 1.0  # a: extra similarity of two classes of the same group
CONFUSION_AFFINITY = 0.8  # b: extra similarity per unit of symmetrised human confusion

# Paper image counts (Table 1): images to label per experiment. Splits 3 and 5 are not in
# the paper's table; they get the same per-class count as its other splits (1290).
PAPER_ITEM_COUNTS: Dict[str, int] = {
    "imagenet_split_0": 22704,  # Dog
    "imagenet_split_1": 23220,  # Vertebrate
    "imagenet_split_2": 16770,  # Insect + Fungus
    "imagenet_split_3": 19 * 1290,
    "imagenet_split_4": 20140,  # Commodity
    "imagenet_split_5": 15 * 1290,
    "imagenet_animal": 45924,  # Dog + Vertebrate
    "imagenet_100_classes": 125689,  # ImageNet100
}
DEFAULT_PER_CLASS = 1290

# (experiment, width) -> (signal_std, nuisance_std). Filled by the calibration benchmark.
CALIBRATION: Dict[Tuple[str, int], Tuple[float, float]] = {}
DEFAULT_NOISE = (0.45, 0.45)


def class_counts(experiment: Optional[str], num_classes: int, cap: Optional[int]) -> np.ndarray:
    """(K,) items per class: the paper's total spread evenly, capped at `cap` per class."""
    total = PAPER_ITEM_COUNTS.get(experiment or "", DEFAULT_PER_CLASS * num_classes)
    counts = np.full(num_classes, total // num_classes)
    counts[: total % num_classes] += 1
    if cap is not None and cap > 0:
        counts = np.minimum(counts, cap)
    return counts


def class_similarity(wnids: Sequence[str]) -> np.ndarray:
    """(K, K) target Gram matrix of the class means (see the module docstring)."""
    k = len(wnids)
    group = amt.class_groups(wnids)
    same = (group[:, None] == group[None, :]) & (group[:, None] >= 0)
    try:
        counts = amt.crowd_arrays(wnids)["global_counts"].astype(np.float64)
        conf = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
        np.fill_diagonal(conf, 0.0)
        sym = 0.5 * (conf + conf.T)
        sym = sym / max(sym.max(), 1e-12)
    except ValueError:  # classes without real-worker data: group structure only
        sym = np.zeros((k, k))
    gram = np.eye(k) + GROUP_AFFINITY * same + CONFUSION_AFFINITY * sym
    np.fill_diagonal(gram, 1.0 + GROUP_AFFINITY * np.diag(same))
    return gram


def class_means(gram: np.ndarray) -> np.ndarray:
    """(K, K) vectors whose Gram matrix is the PSD part of `gram`."""
    vals, vecs = np.linalg.eigh(gram)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))


def noise_levels(experiment: Optional[str], width: int) -> Tuple[float, float]:
    """Calibrated (signal_std, nuisance_std) for an experiment and width."""
    if (experiment, width) in CALIBRATION:
        return CALIBRATION[(experiment, width)]
    return DEFAULT_NOISE


def _seed(tag: str) -> int:
    return zlib.crc32(tag.encode())


def generate(
    wnids: Sequence[str],
    per_class: np.ndarray,
    n_prototype_per_class: int,
    width: int,
    seed: int,
    noise: Tuple[float, float],
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a stand-in set.

    Returns:
      features (M, D) float32 with items first then prototypes, labels (M,) int32 and
      is_prototype (M,) bool, where M = sum(per_class) + K * n_prototype_per_class.
    """
    k = len(wnids)
    if width < k:
        raise ValueError(f"stand-in width data.feature_dim={width} must be at least the number of classes ({k})")
    rng = np.random.default_rng([seed, _seed(" ".join(wnids)), width])
    means = class_means(class_similarity(wnids))  # (K, K)
    item_labels = np.repeat(np.arange(k), per_class)
    proto_labels = np.repeat(np.arange(k), n_prototype_per_class)
    labels = np.concatenate([item_labels, proto_labels]).astype(np.int32)
    signal_std, nuisance_std = noise
    x = np.empty((labels.size, width), np.float32)
    x[:, :k] = means[labels] + signal_std * rng.standard_normal((labels.size, k), np.float32)
    x[:, k:] = nuisance_std * rng.standard_normal((labels.size, width - k), np.float32)
    rotation, _ = np.linalg.qr(rng.standard_normal((width, width)))
    features = x @ rotation.astype(np.float32)
    is_proto = np.arange(labels.size) >= item_labels.size
    return features, labels, is_proto


def cache_dir(path: str = "") -> pathlib.Path:
    if path:
        return pathlib.Path(path)
    root = os.environ.get("JAXANNO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxanno"))
    return pathlib.Path(root) / "standin"


def load(
    experiment: Optional[str],
    wnids: Sequence[str],
    n_data_per_class: Optional[int],
    n_prototype_per_class: int,
    width: int,
    seed: int,
    cache: str = "",
) -> Tuple[np.ndarray, np.ndarray, int]:
    """The (cached) stand-in set of an experiment.

    Returns:
      features (M, D) float32 (memory-mapped from the cache), labels (M,) int32 and the
      number of items N (the first N rows; the rest are prototypes).
    """
    per_class = class_counts(experiment, len(wnids), n_data_per_class)
    noise = noise_levels(experiment, width)
    tag = f"{' '.join(wnids)}|{per_class.tolist()}|{n_prototype_per_class}|{width}|{seed}|{noise}|v1"
    name = hashlib.sha1(tag.encode()).hexdigest()[:16]
    folder = cache_dir(cache)
    feat_path, label_path = folder / f"{name}.features.npy", folder / f"{name}.labels.npy"
    if not (feat_path.exists() and label_path.exists()):
        features, labels, _ = generate(wnids, per_class, n_prototype_per_class, width, seed, noise)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_save(feat_path, features)
        _atomic_save(label_path, labels)
    features = np.load(feat_path, mmap_mode="r")
    labels = np.load(label_path)
    return features, labels, int(per_class.sum())


def _atomic_save(path: pathlib.Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
