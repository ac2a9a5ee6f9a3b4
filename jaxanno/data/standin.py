"""Stand-in features for every experiment of the paper (these are NOT ImageNet features).

The paper's learner runs on BYOL ResNet-50 embeddings of ImageNet images, which cannot be
shipped. A stand-in set has the experiment's classes and image counts, and a geometry that
follows the real class structure, so that the learner and the simulated workers err on the
same pairs of classes:

* class means come from a target Gram matrix T = I + a * [same group] + b * S, where the
  groups are those of ``groups.txt`` and S is the symmetrised, row-normalised confusion of
  the real Mechanical Turk workers (off-diagonal). Classes of one group are closer to each
  other than to other groups, and pairs that humans confuse are closer still;
* every row is its class mean plus noise of std ``signal_std`` in the K class dimensions
  and ``nuisance_std`` in the D - K others, in a random orientation. The noise is a
  Student-t with `TAIL_DOF` = 3 degrees of freedom (unit covariance): most images sit
  near their class, a few are atypical and far from it. With Gaussian noise the learner's
  few-shot accuracy trails its all-labels accuracy by more than on BYOL features at 100
  classes (ImageNet100 could not reach 62.5% at zero labels and 89% with all labels at
  once); heavy tails put part of the error on atypical images that no amount of labels
  fixes, as on real data, and spread the errors over many classes (top-5 closer to BYOL's).

The two noise levels are calibrated per experiment and width (`CALIBRATION`) so that the
reference MLP trained on 5 prototypes per class, and on all true labels, scores about what
the paper's learner scores on BYOL features (benchmarks/bench_standin_calibration.py
measures it). Other widths and custom class lists use `DEFAULT_NOISE`, uncalibrated.
Generation costs O(M D K) (a few seconds for ImageNet100 at width 2048), is deterministic
in (classes, counts, width, seed, noise) and is cached on disk (written straight into a
memory map) after first use.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import zlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from jaxanno.data import amt

GROUP_AFFINITY = 1.0  # a: extra similarity of two classes of the same group
CONFUSION_AFFINITY = 0.8  # b: extra similarity per unit of symmetrised human confusion
TAIL_DOF = 3.0  # Student-t degrees of freedom of the noise (inf: Gaussian)

# Paper image counts (Table 1): images to label per experiment. Splits 3 and 5 are not in
# the paper's table; they get the same per-class count as its other splits (1290).
PAPER_ITEM_COUNTS: dict[str, int] = {
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

# (experiment, width) -> (signal_std, nuisance_std). Measured with the paper's method
# (efficient_annotation: MLP D-64-K, lr_ratio 1e-4, weight decay 1e-3, batch 1024,
# 300 epochs, temperature calibration) fitted by `learner.fit_predict` as the simulator
# fits it: at step 0 (5 prototypes per class train, 5 validate) and with every item's true
# label; top-1 over all items. Found by `benchmarks/bench_standin_calibration.py --search`:
# on one stand-in draw (common random numbers) and 3 fits per point, log-space bisections
# alternate between signal_std (all-labels target) and nuisance_std (zero-label target);
# the evaluated point closest to both targets is kept (logs in benchmarks/results/
# standin_calibration_search_*.log). Width 128 searched on a 2-core CPU (jax 0.10.2),
# width 2048 on an H200 (jax 0.11.2, float32 matmuls at full precision). The figures over
# 3 draws x 2 fits: benchmarks/results/standin_calibration.md.
CALIBRATION: dict[tuple[str, int], tuple[float, float]] = {
    ("imagenet_split_0", 128): (0.4015, 0.4391),
    ("imagenet_split_1", 128): (0.2752, 0.2697),
    ("imagenet_split_2", 128): (0.2776, 0.2668),
    ("imagenet_split_3", 128): (0.3441, 0.3613),
    ("imagenet_split_4", 128): (0.3324, 0.3173),
    ("imagenet_split_5", 128): (0.2776, 0.2726),
    ("imagenet_animal", 128): (0.35, 0.3313),
    ("imagenet_100_classes", 128): (0.2483, 0.4343),
    ("imagenet_split_0", 2048): (0.4389, 0.1552),
    ("imagenet_split_1", 2048): (0.3501, 0.0628),
    ("imagenet_split_2", 2048): (0.306, 0.0978),
    ("imagenet_split_3", 2048): (0.3995, 0.1074),
    ("imagenet_split_4", 2048): (0.3836, 0.1124),
    ("imagenet_split_5", 2048): (0.3373, 0.065),
    ("imagenet_animal", 2048): (0.402, 0.0697),
    ("imagenet_100_classes", 2048): (0.279, 0.0829),
}
DEFAULT_NOISE = (0.45, 0.45)
_CHUNK_ROWS = 8192  # rows drawn per block: bounds the temporaries at width 2048 to ~64 MB


def class_counts(experiment: str | None, num_classes: int, cap: int | None) -> np.ndarray:
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


def noise_levels(experiment: str | None, width: int) -> tuple[float, float]:
    """Calibrated (signal_std, nuisance_std) for an experiment and width."""
    if (experiment, width) in CALIBRATION:
        return CALIBRATION[(experiment, width)]
    return DEFAULT_NOISE


def _seed(tag: str) -> int:
    return zlib.crc32(tag.encode())


def signal_basis(rng: np.random.Generator, width: int, num_classes: int) -> np.ndarray:
    """(K, D) orthonormal rows: the random orientation of the class subspace."""
    q, _ = np.linalg.qr(rng.standard_normal((width, num_classes)))
    return np.ascontiguousarray(q.T, np.float32)


class Draw(NamedTuple):
    """The random parts of a stand-in set, before the noise levels are applied."""

    labels: np.ndarray  # (M,) int32, items first then prototypes
    num_items: int  # N
    means: np.ndarray  # (K, K) float32 class means in signal coordinates
    basis: np.ndarray  # (K, D) float32 orthonormal rows
    rng: np.random.Generator  # positioned at the first noise block


def draw(wnids: Sequence[str], per_class: np.ndarray, n_prototype_per_class: int, width: int, seed: int) -> Draw:
    """Labels, class means and signal basis of a stand-in set; `noise_blocks` continues it."""
    k = len(wnids)
    if width < k:
        raise ValueError(f"stand-in width data.feature_dim={width} must be at least the number of classes ({k})")
    rng = np.random.default_rng([seed, _seed(" ".join(wnids)), width])
    means = class_means(class_similarity(wnids)).astype(np.float32)
    basis = signal_basis(rng, width, k)
    labels = np.concatenate([np.repeat(np.arange(k), per_class), np.repeat(np.arange(k), n_prototype_per_class)])
    return Draw(labels.astype(np.int32), int(np.sum(per_class)), means, basis, rng)


def noise_blocks(d: Draw) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, z) blocks of unit noise rows, z ~ lambda * N(0, I_D).

    lambda^2 = (nu - 2) / chi2_nu per row (nu = `TAIL_DOF`), so rows follow a Student-t with
    unit covariance: a few items are atypical (far from their class), as real images are.
    Fixed blocks from one stream: the result depends only on the `draw` arguments.
    """
    width = d.basis.shape[1]
    for start in range(0, d.labels.size, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, d.labels.size)
        z = d.rng.standard_normal((stop - start, width), np.float32)
        if np.isfinite(TAIL_DOF):
            z *= np.sqrt((TAIL_DOF - 2) / d.rng.chisquare(TAIL_DOF, (stop - start, 1))).astype(np.float32)
        yield start, stop, z


def compose(mean_rows, z, basis, signal_std, nuisance_std):
    """(B, D) features ``(mu + (s - u) z U^T) U + u z`` (numpy or jax arrays alike)."""
    return (mean_rows + (signal_std - nuisance_std) * (z @ basis.T)) @ basis + nuisance_std * z


def generate(
    wnids: Sequence[str],
    per_class: np.ndarray,
    n_prototype_per_class: int,
    width: int,
    seed: int,
    noise: tuple[float, float],
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a stand-in set.

    Row r is ``(mu_y + (s - u) * z U^T) U + u * z`` with z the unit noise of
    `noise_blocks`, U the (K, D) orthonormal `signal_basis` and (s, u) = `noise`: inside
    span(U) the noise has std s, outside it std u. That is the distribution of "class mean
    plus noise of std s in K dims and u in D - K dims, then a random rotation", at
    O(M D K) cost instead of the O(M D^2) of materialising the rotation (125,689 x 2048
    rows: a few seconds). The same arguments give identical features.

    Args:
      out: optional (M, D) float32 array (e.g. a memory map) to write into.
    Returns:
      features (M, D) float32 with items first then prototypes, labels (M,) int32 and
      is_prototype (M,) bool, where M = sum(per_class) + K * n_prototype_per_class.
    """
    d = draw(wnids, per_class, n_prototype_per_class, width, seed)
    signal_std, nuisance_std = (np.float32(v) for v in noise)
    features = np.empty((d.labels.size, width), np.float32) if out is None else out
    for start, stop, z in noise_blocks(d):
        features[start:stop] = compose(d.means[d.labels[start:stop]], z, d.basis, signal_std, nuisance_std)
    return features, d.labels, np.arange(d.labels.size) >= d.num_items


def cache_dir(path: str = "") -> pathlib.Path:
    if path:
        return pathlib.Path(path)
    root = os.environ.get("JAXANNO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxanno"))
    return pathlib.Path(root) / "standin"


def load(
    experiment: str | None,
    wnids: Sequence[str],
    n_data_per_class: int | None,
    n_prototype_per_class: int,
    width: int,
    seed: int,
    cache: str = "",
) -> tuple[np.ndarray, np.ndarray, int]:
    """The (cached) stand-in set of an experiment.

    Returns:
      features (M, D) float32 (memory-mapped from the cache), labels (M,) int32 and the
      number of items N (the first N rows; the rest are prototypes).
    """
    per_class = class_counts(experiment, len(wnids), n_data_per_class)
    noise = noise_levels(experiment, width)
    geometry = (GROUP_AFFINITY, CONFUSION_AFFINITY, TAIL_DOF)
    tag = f"{' '.join(wnids)}|{per_class.tolist()}|{n_prototype_per_class}|{width}|{seed}|{noise}|{geometry}|v2"
    name = hashlib.sha1(tag.encode()).hexdigest()[:16]
    folder = cache_dir(cache)
    feat_path, label_path = folder / f"{name}.features.npy", folder / f"{name}.labels.npy"
    if not (feat_path.exists() and label_path.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        num_rows = int(per_class.sum()) + len(wnids) * n_prototype_per_class
        tmp = feat_path.with_suffix(f".tmp{os.getpid()}.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(num_rows, width))
        _, labels, _ = generate(wnids, per_class, n_prototype_per_class, width, seed, noise, out=out)
        out.flush()
        del out
        os.replace(tmp, feat_path)  # written straight to disk: never two copies in memory
        _atomic_save(label_path, labels)
    features = np.load(feat_path, mmap_mode="r")
    labels = np.load(label_path)
    return features, labels, int(per_class.sum())


def _atomic_save(path: pathlib.Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
