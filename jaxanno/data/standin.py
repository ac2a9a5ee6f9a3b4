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

That default geometry ('compact') learns from a few noisy labels far faster than BYOL
features do. The 'lookalike' geometry (`GEOMETRIES`, chosen with ``data.standin_geometry``;
see `jaxanno.data.lookalike`) adds a third calibrated knob: a share of each class's items
look like a similar class. Its calibrations meet the zero-label and all-labels targets
plus one point of the paper's learning curve; experiments without one are refused rather
than run uncalibrated.
Generation costs O(M D K) (a few seconds for ImageNet100 at width 2048), is deterministic
in (classes, counts, width, seed, noise, geometry) and is cached on disk after first use: written
block by block with plain file I/O to a temp file that atomically replaces the cache file
(never through a memory map, so a full disk is a clear error, not a SIGBUS), recorded with
its size and digest, validated on every load and regenerated when bad (`load`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from typing import BinaryIO, NamedTuple

import numpy as np

from jaxanno.data import amt, inputs, lookalike
from jaxanno.data.inputs import DataError

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


GEOMETRIES = ("compact", "lookalike")  # see the module docstring and `jaxanno.data.lookalike`
_CHUNK_ROWS = 8192  # rows drawn per block: bounds the temporaries at width 2048 to ~64 MB
STALE_TEMP_SECONDS = 3600.0  # temp files older than this in the cache folder are debris of killed runs
# Temp files of cache writes, ours only (the cache folder may be a user's folder): '<name>.features.npy.tmpXXXX'
# from `atomic_write`, and '<name>.features.tmp<pid>.npy' from earlier versions.
TEMP_FILE_NAME = re.compile(r"[0-9a-f]{16}\.(features|labels|meta)(\.npy|\.json)?\.tmp")
ABSENT = "absent"  # `cache_problem` of a set never cached: generated without a warning


class CacheWarning(UserWarning):
    """A stand-in cache was incomplete or corrupt and is being regenerated."""


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
    """Calibrated (signal_std, nuisance_std) of the compact geometry for an experiment and width."""
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
    lookalikes: lookalike.Draw | None = None  # None: the compact geometry


def draw(
    wnids: Sequence[str],
    per_class: np.ndarray,
    n_prototype_per_class: int,
    width: int,
    seed: int,
    settings: lookalike.Settings | None = None,
) -> Draw:
    """Labels, class means and signal basis of a stand-in set; `noise_blocks` continues it.

    With look-alike `settings` their rows come from a stream of their own, so the compact
    part of the draw (basis, noise) is the same with and without them.
    """
    k = len(wnids)
    if width < k:
        raise DataError(f"stand-in width data.feature_dim={width} must be at least the number of classes ({k})")
    stream = [seed, _seed(" ".join(wnids)), width]
    rng = np.random.default_rng(stream)
    gram = class_similarity(wnids)
    means = class_means(gram).astype(np.float32)
    basis = signal_basis(rng, width, k)
    labels = np.concatenate([np.repeat(np.arange(k), per_class), np.repeat(np.arange(k), n_prototype_per_class)])
    labels = labels.astype(np.int32)
    extra = None
    if settings is not None:
        extra = lookalike.draw(labels, gram, width, [*stream, _seed("lookalike")], settings)
    return Draw(labels, int(np.sum(per_class)), means, basis, rng, extra)


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


def mean_rows(d: Draw, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(B, K) class means of rows [start, stop) in signal coordinates, and their (B, D)
    look-alike offsets (None for the compact geometry)."""
    labels = d.labels[start:stop]
    rows = d.means[labels]
    if d.lookalikes is None:
        return rows, None
    return rows, lookalike.shift(d.lookalikes, d.means, labels, rows, start)


def feature_blocks(d: Draw, noise: tuple[float, float]) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, features) float32 blocks of the stand-in set drawn by `d` (see `generate`)."""
    signal_std, nuisance_std = (np.float32(v) for v in noise)
    for start, stop, z in noise_blocks(d):
        rows, offsets = mean_rows(d, start, stop)
        block = compose(rows, z, d.basis, signal_std, nuisance_std)
        if offsets is not None:
            block = block + offsets
        yield start, stop, np.asarray(block, np.float32)


def generate(
    wnids: Sequence[str],
    per_class: np.ndarray,
    n_prototype_per_class: int,
    width: int,
    seed: int,
    noise: tuple[float, float],
    out: np.ndarray | None = None,
    lookalikes: lookalike.Settings | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a stand-in set.

    Row r is ``(mu_y + (s - u) * z U^T) U + u * z`` with z the unit noise of
    `noise_blocks`, U the (K, D) orthonormal `signal_basis` and (s, u) = `noise`: inside
    span(U) the noise has std s, outside it std u. That is the distribution of "class mean
    plus noise of std s in K dims and u in D - K dims, then a random rotation", at
    O(M D K) cost instead of the O(M D^2) of materialising the rotation (125,689 x 2048
    rows: a few seconds). The same arguments give identical features. With `lookalikes`,
    their rows are drawn as `jaxanno.data.lookalike` says (`noise` is then usually theirs).

    Args:
      out: optional (M, D) float32 array to write into.
      lookalikes: the 'lookalike' geometry's settings; None for the compact geometry.
    Returns:
      features (M, D) float32 with items first then prototypes, labels (M,) int32 and
      is_prototype (M,) bool, where M = sum(per_class) + K * n_prototype_per_class.
    """
    d = draw(wnids, per_class, n_prototype_per_class, width, seed, lookalikes)
    features = np.empty((d.labels.size, width), np.float32) if out is None else out
    for start, stop, block in feature_blocks(d, noise):
        features[start:stop] = block
    return features, d.labels, np.arange(d.labels.size) >= d.num_items


def cache_dir(path: str = "") -> pathlib.Path:
    if path:
        return pathlib.Path(path)
    root = os.environ.get("JAXANNO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxanno"))
    return pathlib.Path(root) / "standin"


class CacheFiles(NamedTuple):
    """The files of one cached stand-in set; `meta` (sizes and digests) is written last."""

    features: pathlib.Path  # (M, D) float32 .npy
    labels: pathlib.Path  # (M,) int32 .npy
    meta: pathlib.Path  # JSON: tag, and per array file its size in bytes and `inputs.file_digest`


def load(
    experiment: str | None,
    wnids: Sequence[str],
    n_data_per_class: int | None,
    n_prototype_per_class: int,
    width: int,
    seed: int,
    cache: str = "",
    geometry: str = "compact",
) -> tuple[np.ndarray, np.ndarray, int]:
    """The (cached) stand-in set of an experiment in the chosen geometry (`GEOMETRIES`).

    The cache is validated before use (sizes and digests recorded when it was written; see
    `cache_problem`); a missing, truncated or corrupt cache is regenerated, with a
    `CacheWarning` unless it was simply absent. Temp files older than `STALE_TEMP_SECONDS`
    left in the cache folder by killed runs are removed first.

    Returns:
      features (M, D) float32 (memory-mapped from the cache), labels (M,) int32 and the
      number of items N (the first N rows; the rest are prototypes).
    Raises:
      DataError: the cache folder cannot hold the set (no room, not writable), an unknown
        geometry, or a 'lookalike' one without a calibration for this experiment and width.
    """
    k = len(wnids)
    if width < k:
        raise DataError(f"stand-in width data.feature_dim={width} must be at least the number of classes ({k})")
    if geometry not in GEOMETRIES:
        raise DataError(f"data.standin_geometry={geometry!r}: expected one of {list(GEOMETRIES)}")
    look = lookalike.settings(experiment, width) if geometry == "lookalike" else None
    per_class = class_counts(experiment, k, n_data_per_class)
    noise = noise_levels(experiment, width) if look is None else look[:2]
    shape = (GROUP_AFFINITY, CONFUSION_AFFINITY, TAIL_DOF)
    tag = f"{' '.join(wnids)}|{per_class.tolist()}|{n_prototype_per_class}|{width}|{seed}|{noise}|{shape}|v2"
    if look is not None:  # compact sets keep the tag (and cache files) of earlier versions
        tag += f"|lookalike{tuple(look[2:])}"
    name = hashlib.sha1(tag.encode()).hexdigest()[:16]
    folder = cache_dir(cache)
    paths = CacheFiles(*(folder / f"{name}.{suffix}" for suffix in ("features.npy", "labels.npy", "meta.json")))
    num_rows = int(per_class.sum()) + k * n_prototype_per_class
    sweep_stale_temp_files(folder)
    problem = cache_problem(paths, tag, (num_rows, width))
    if problem is not None:
        if problem != ABSENT:
            warnings.warn(f"stand-in cache {folder / name}.*: {problem}; regenerating it", CacheWarning, stacklevel=3)
        _write_cache(paths, tag, draw(wnids, per_class, n_prototype_per_class, width, seed, look), noise)
    features = np.load(paths.features, mmap_mode="r")
    labels = np.load(paths.labels)
    return features, labels, int(per_class.sum())


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The bytes `numpy.save` writes before the data of a C-ordered array (format 1.0)."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _file_sizes(shape: tuple[int, int]) -> tuple[int, int]:
    """Bytes of the features and labels files of an (M, D) stand-in set."""
    rows, width = shape
    return (
        len(_npy_header(shape, np.float32)) + rows * width * 4,
        len(_npy_header((rows,), np.int32)) + rows * 4,
    )


def cache_problem(paths: CacheFiles, tag: str, shape: tuple[int, int]) -> str | None:
    """None when the cached set is complete and intact, else what is wrong (`ABSENT`: no files).

    Checks that all three files exist, that the meta file parses and belongs to `tag`, and
    that each array file has the size its shape implies and the digest recorded when it
    was written (`inputs.file_digest` without mtime: every byte up to 256 MiB, sampled above).
    """
    present = [p.exists() for p in paths]
    if not any(present):
        return ABSENT
    if not (present[0] and present[1]):
        return "the features or labels file is missing"
    try:
        meta = json.loads(paths.meta.read_text())
        recorded = {key: (int(meta[key]["bytes"]), str(meta[key]["digest"])) for key in ("features", "labels")}
    except (OSError, ValueError, KeyError, TypeError):
        return "its checksum file is missing or unreadable (an older version wrote it, or a run was interrupted)"
    if meta.get("tag") != tag:
        return "its checksum file belongs to another stand-in set"
    for key, path, size in zip(("features", "labels"), paths[:2], _file_sizes(shape)):
        actual = path.stat().st_size
        if actual != size or recorded[key][0] != size:
            return f"the {key} file has size {actual} bytes, expected {size} (truncated or incomplete)"
        if inputs.file_digest(str(path), with_mtime=False) != recorded[key][1]:
            return f"the {key} file does not match its checksum (corrupt)"
    return None


def sweep_stale_temp_files(folder: pathlib.Path, max_age: float = STALE_TEMP_SECONDS) -> list[pathlib.Path]:
    """Remove cache temp files (`TEMP_FILE_NAME`) older than `max_age` seconds from `folder`.

    They are left by runs killed while writing; younger ones may belong to a run writing now.
    """
    removed = []
    if not folder.is_dir():
        return removed
    cutoff = time.time() - max_age
    for path in folder.glob("*.tmp*"):
        with contextlib.suppress(OSError):  # already gone, or not ours to remove
            if TEMP_FILE_NAME.match(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_write(path: pathlib.Path) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` only once completely written and synced.

    Writes go to a temp file in the same folder (plain file I/O, never a memory map, so a
    full disk is an OSError rather than a SIGBUS) that replaces `path` atomically; on any
    exception, KeyboardInterrupt included, the temp file is removed.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_cache(paths: CacheFiles, tag: str, d: Draw, noise: tuple[float, float]) -> None:
    """Write a stand-in set block by block (features, labels, then the meta file), atomically."""
    folder = paths.features.parent
    shape = (d.labels.size, d.basis.shape[1])
    sizes = _file_sizes(shape)
    needed = sum(sizes) + 4096
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise DataError(
                f"stand-in cache folder {folder}: needs {needed} bytes ({needed / 2**20:.1f} MiB) for this stand-in "
                f"set but only {free} are free; free some space or set data.cache_dir (or JAXANNO_CACHE) to a "
                "folder with room"
            )
        with contextlib.suppress(FileNotFoundError):
            paths.meta.unlink()  # no stale meta may vouch for files being replaced
        with atomic_write(paths.features) as f:
            f.write(_npy_header(shape, np.float32))
            for _, _, block in feature_blocks(d, noise):
                f.write(np.ascontiguousarray(block).data)
        with atomic_write(paths.labels) as f:
            f.write(_npy_header((shape[0],), np.int32))
            f.write(np.ascontiguousarray(d.labels, "<i4").data)
        meta = {"tag": tag, "digest": "inputs.file_digest(with_mtime=False)"}
        for key, path, size in zip(("features", "labels"), paths[:2], sizes):
            meta[key] = {"bytes": size, "digest": inputs.file_digest(str(path), with_mtime=False)}
        with atomic_write(paths.meta) as f:
            f.write(json.dumps(meta, indent=1).encode())
    except OSError as err:
        raise _write_error(folder, needed, err) from err


def _write_error(folder: pathlib.Path, needed: int, err: OSError) -> DataError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataError(
            f"stand-in cache folder {folder}: disk full ({err.strerror}) while writing {needed} bytes of stand-in "
            "features (the partial file was removed); free some space or set data.cache_dir (or JAXANNO_CACHE) to "
            "a folder with room"
        )
    return DataError(
        f"stand-in cache folder {folder}: cannot write the cache ({err.strerror or err}: {err.filename}); set "
        "data.cache_dir (or JAXANNO_CACHE) to a writable folder"
    )
