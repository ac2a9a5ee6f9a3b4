"""Real-feature loaders: a user's embeddings and labels in, a `FeatureSet` out.

Three formats (`DataSpec.source`):

* ``'reference'``: the paper's release. ``data.features`` is a ``.npy`` of shape (L, D)
  whose row i embeds the image on line i of ``data.image_list``, a text file of
  ``wnid/file.JPEG label`` lines (``train_labeled.txt``; the class comes from the wnid,
  the label column is ignored as the reference ignores it). The classes are
  ``DataSpec.wnids`` in that order (all wnids of the list, by first appearance, when
  empty). Per class, ``n_prototype_per_class`` prototypes are drawn first, then up to
  ``n_data_per_class`` items from the rest (all when None or <= 0). With
  ``n_data_distraction_per_class`` = d > 0, K * d images of other wnids join the items and
  d more the prototypes, all labelled with one extra class K named 'other'.
* ``'npz'``: one ``.npz`` with ``features`` (N, D) and ``labels`` (N,), optionally
  ``prototype_features`` (P, D) with ``prototype_labels`` (P,), and ``class_names`` or
  ``wnids`` (K,) strings. Without prototypes, ``n_prototype_per_class`` per class are drawn
  from the data and removed from the items.
* ``'npy'``: ``data.features`` (N, D) ``.npy`` plus ``data.labels``, either a ``.npy`` of
  (N,) integers or a text file with one integer per line; prototypes drawn as for npz.

For npz / npy files without ``wnids``, labels index the configured class list
(``DataSpec.wnids``) when one of the same size is given, which is what real-worker
simulations need; otherwise the classes have no wnids.

Every draw is seeded by ``DataSpec.seed`` (numpy). Large arrays are memory-mapped
(including stored, i.e. uncompressed, members of an ``.npz``) and the selected rows are
gathered once, in blocks, into one float32 array. Every problem with the files raises a
`ValueError` that names the file, the field, and what was expected and found.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence

import numpy as np

from jaxanno import data as data_lib
from jaxanno.data import amt

_GATHER_ROWS = 16384  # rows converted per block: bounds the float32 temporaries


def load(spec: data_lib.DataSpec) -> data_lib.FeatureSet:
    """The items and prototypes of `spec` from a user's files (see the module docstring).

    Returns:
      `FeatureSet`: (M, D) float32 features, items first then prototypes, (M,) int32 labels.
    Raises:
      ValueError: a missing or inconsistent file, or a setting the files cannot satisfy.
    """
    loaders = {"reference": _reference, "npz": _npz, "npy": _npy}
    if spec.source not in loaders:
        raise ValueError(f"data.source={spec.source!r}: expected one of {list(data_lib.SOURCES)}")
    if spec.n_data_distraction_per_class > 0 and spec.source != "reference":
        raise ValueError(
            f"n_data_distraction_per_class={spec.n_data_distraction_per_class} needs data.source='reference' "
            f"(distraction items are images of other wnids in the image list); found {spec.source!r}"
        )
    if spec.n_prototype_per_class < 1:
        raise ValueError(f"n_prototype_per_class={spec.n_prototype_per_class}: expected at least 1")
    return loaders[spec.source](spec)


def _require_file(path: str, field: str, what: str) -> str:
    """The path of a required input file, or a ValueError naming the setting."""
    if not path:
        raise ValueError(f"data.{field} is empty: expected the path of {what}")
    if not os.path.isfile(path):
        raise ValueError(f"data.{field}: file {path!r} does not exist (expected {what})")
    return path


def _open_npy(path: str, field: str) -> np.ndarray:
    """A memory-mapped .npy array (no copy), with the file named in every error."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"data.{field}: cannot read {path!r} as a .npy array ({err})") from None


def _check_features(array: np.ndarray, where: str) -> None:
    """Features are a 2-D numeric array."""
    if array.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D (rows, D) array, found shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{where}: expected numeric features, found dtype {array.dtype}")


def _check_labels(labels: np.ndarray, where: str, rows: int, num_classes: int | None) -> np.ndarray:
    """(rows,) int64 labels in [0, num_classes), or a ValueError saying what is wrong."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{where}: expected a 1-D array of labels, found shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: expected integer labels, found dtype {labels.dtype}")
    if labels.shape[0] != rows:
        raise ValueError(
            f"{where}: expected one label per feature row ({rows} rows of features), found {labels.shape[0]}"
        )
    labels = np.asarray(labels, np.int64)
    if labels.size and labels.min() < 0:
        bad = int(np.argmax(labels < 0))
        raise ValueError(f"{where}: labels must be >= 0, found {labels[bad]} at row {bad}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise ValueError(
            f"{where}: labels must be in [0, {num_classes}) ({num_classes} classes), found {labels[bad]} at row {bad}"
        )
    return labels


def gather(
    source: np.ndarray,
    rows: np.ndarray,
    where: str,
    row_names: Sequence[str] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(len(rows), D) float32 copy of `source[rows]`, read once in blocks; rejects NaN/inf.

    Args:
      source: (L, D) array, typically memory-mapped; rows: (M,) indices into it.
      where: the file and field, for errors; row_names: optional names of source rows.
      out: optional (M, D) float32 array to fill (e.g. a slice of a larger one).
    """
    out = np.empty((rows.size, source.shape[1]), np.float32) if out is None else out
    for start in range(0, rows.size, _GATHER_ROWS):
        block = rows[start : start + _GATHER_ROWS]
        out[start : start + block.size] = source[block]
    finite = np.isfinite(out).all(1)
    if not finite.all():
        first = int(rows[np.argmin(finite)])
        name = f" ({row_names[first]})" if row_names is not None else ""
        raise ValueError(
            f"{where}: expected finite features, found NaN or inf in {int((~finite).sum())} of the selected "
            f"rows, first at row {first}{name}"
        )
    return out


def _n_items(spec: data_lib.DataSpec) -> int | None:
    """Items per class: None means all (n_data_per_class None or <= 0)."""
    n = spec.n_data_per_class
    return None if n is None or n <= 0 else int(n)


def split_rows(
    labels: np.ndarray,
    num_classes: int,
    n_proto: int,
    n_items: int | None,
    rng: np.random.Generator,
    where: str,
    class_names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """(item rows, prototype rows), grouped by class, disjoint.

    For every class, first `n_proto` prototypes are drawn, then up to `n_items` items from
    the rest (all when None). Rows keep file order within a class (sequential reads).
    """
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    for c, rows in enumerate(by_class):
        if rows.size <= n_proto:
            raise ValueError(
                f"{where}: class {c} ({class_names[c]}) has {rows.size} images; expected at least "
                f"n_prototype_per_class + 1 = {n_proto + 1} ({n_proto} prototypes and 1 item to label)"
            )
    protos = [np.sort(rng.choice(rows, n_proto, replace=False)) for rows in by_class]
    items = []
    for rows, chosen in zip(by_class, protos):
        rest = np.setdiff1d(rows, chosen, assume_unique=True)
        if n_items is not None and rest.size > n_items:
            rest = np.sort(rng.choice(rest, n_items, replace=False))
        items.append(rest)
    return np.concatenate(items), np.concatenate(protos)


def _names_of(wnids: Sequence[str]) -> list[str]:
    """Human-readable names of wnids (the wnid itself when unknown)."""
    names = amt.class_names()
    return [names.get(w.lower(), w) for w in wnids]


def _feature_set(features, labels, num_items, class_names, wnids, description) -> data_lib.FeatureSet:
    return data_lib.FeatureSet(
        features=features,
        labels=np.asarray(labels, np.int32),
        num_items=int(num_items),
        class_names=list(class_names),
        wnids=None if wnids is None else list(wnids),
        description=description,
    )


def read_image_list(path: str) -> tuple[list[str], list[str]]:
    """(image paths, their wnids), one per line of a reference image list.

    Lines are ``wnid/file.JPEG label``; trailing blank lines are ignored, any other blank
    or malformed line is an error naming its line number.
    """
    with open(path) as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    paths, wnids = [], []
    for number, line in enumerate(lines, 1):
        token = line.split()[0] if line.strip() else ""
        wnid, slash, _ = token.partition("/")
        if not slash or not wnid:
            raise ValueError(f"data.image_list {path!r} line {number}: expected 'wnid/file.JPEG label', found {line!r}")
        paths.append(token)
        wnids.append(wnid)
    if not paths:
        raise ValueError(f"data.image_list {path!r}: expected 'wnid/file.JPEG label' lines, found none")
    return paths, wnids


def _class_list(spec: data_lib.DataSpec, line_wnids: list[str], list_path: str) -> list[str]:
    """The experiment's wnids (all of the list's when none are configured), checked."""
    present = dict.fromkeys(line_wnids)
    wnids = list(spec.wnids) or list(present)
    duplicated = sorted({w for w in wnids if wnids.count(w) > 1})
    if duplicated:
        raise ValueError(f"wnids: expected distinct classes, found {duplicated} more than once")
    unknown = [w for w in wnids if w not in present]
    if unknown:
        raise ValueError(
            f"data.image_list {list_path!r}: expected images of every configured wnid, found none for "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''} ({len(unknown)} of {len(wnids)} classes)"
        )
    return wnids


def _reference(spec: data_lib.DataSpec) -> data_lib.FeatureSet:
    """The paper's format: a features .npy aligned with an image list."""
    list_path = _require_file(spec.image_list, "image_list", "the image list ('wnid/file.JPEG label' lines)")
    feat_path = _require_file(spec.features, "features", "the (lines, D) .npy of image embeddings")
    paths, line_wnids = read_image_list(list_path)
    source = _open_npy(feat_path, "features")
    _check_features(source, f"data.features {feat_path!r}")
    if source.shape[0] != len(paths):
        raise ValueError(
            f"data.features {feat_path!r} has {source.shape[0]} rows but data.image_list {list_path!r} has "
            f"{len(paths)} lines: expected one row per line"
        )
    wnids = _class_list(spec, line_wnids, list_path)
    k = len(wnids)
    index = {w: c for c, w in enumerate(wnids)}
    other = np.int64(k) if spec.n_data_distraction_per_class > 0 else np.int64(-1)
    labels = np.array([index.get(w, other) for w in line_wnids], np.int64)
    rng = np.random.default_rng(spec.seed)
    names = _names_of(wnids)
    items, protos = split_rows(
        labels, k, spec.n_prototype_per_class, _n_items(spec), rng, f"data.image_list {list_path!r}", names
    )
    if spec.n_data_distraction_per_class > 0:
        items, protos = _add_distraction(spec, labels == k, items, protos, k, rng, list_path)
        names = names + [data_lib.OTHER_CLASS]
    rows = np.concatenate([items, protos])
    features = gather(source, rows, f"data.features {feat_path!r}", paths)
    return _feature_set(
        features,
        labels[rows],
        items.size,
        names,
        wnids,
        f"reference features {feat_path} with {list_path}: {items.size} items, {protos.size} prototypes, "
        f"{len(names)} classes",
    )


def _add_distraction(spec, is_other, items, protos, k, rng, list_path) -> tuple[np.ndarray, np.ndarray]:
    """Append K * d distraction items and d distraction prototypes (class K, 'other')."""
    d = spec.n_data_distraction_per_class
    pool = np.flatnonzero(is_other)
    if pool.size < (k + 1) * d:
        raise ValueError(
            f"data.image_list {list_path!r}: n_data_distraction_per_class={d} needs (K + 1) * d = {(k + 1) * d} "
            f"images of other wnids (K = {k}), found {pool.size}"
        )
    chosen = rng.choice(pool, (k + 1) * d, replace=False)
    return np.concatenate([items, np.sort(chosen[: k * d])]), np.concatenate([protos, np.sort(chosen[k * d :])])


def _npz_member(path: str, archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """Member `name` of an .npz: memory-mapped when stored uncompressed, else read."""
    info = archive.getinfo(name + ".npy")
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as f:
            f.seek(info.header_offset + 26)
            name_len, extra_len = np.frombuffer(f.read(4), "<u2")
            f.seek(info.header_offset + 30 + int(name_len) + int(extra_len))
            version = np.lib.format.read_magic(f)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version in readers:
                shape, fortran, dtype = readers[version](f)
                if not dtype.hasobject:
                    return np.memmap(path, dtype, "r", offset=f.tell(), shape=shape, order="F" if fortran else "C")
    with archive.open(name + ".npy") as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def read_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz (large stored members memory-mapped), errors naming the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
            return {n: _npz_member(path, archive, n) for n in names}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ValueError(f"data.features: cannot read {path!r} as an .npz archive ({err})") from None


def _strings(arrays: dict[str, np.ndarray], field: str, where: str) -> list[str] | None:
    """An optional 1-D array of strings from an .npz."""
    if field not in arrays:
        return None
    values = np.asarray(arrays[field])
    if values.ndim != 1 or values.dtype.kind not in "US":
        raise ValueError(
            f"{where} field {field!r}: expected a 1-D array of strings, found dtype {values.dtype} shape {values.shape}"
        )
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _npz(spec: data_lib.DataSpec) -> data_lib.FeatureSet:
    """A generic .npz: features, labels, optional prototypes and class names / wnids."""
    path = _require_file(spec.features, "features", "an .npz with 'features' and 'labels'")
    where = f"data.features {path!r}"
    arrays = read_npz(path)
    for field in ("features", "labels"):
        if field not in arrays:
            raise ValueError(f"{where}: expected a field {field!r}, found fields {sorted(arrays)}")
    has_pf, has_pl = "prototype_features" in arrays, "prototype_labels" in arrays
    if has_pf != has_pl:
        raise ValueError(
            f"{where}: expected 'prototype_features' and 'prototype_labels' together, found only "
            f"{'prototype_features' if has_pf else 'prototype_labels'}"
        )
    prototypes = (arrays["prototype_features"], arrays["prototype_labels"]) if has_pf else None
    return _generic(
        spec,
        arrays["features"],
        arrays["labels"],
        prototypes,
        _strings(arrays, "class_names", where),
        _strings(arrays, "wnids", where),
        where,
        f"{where} field 'features'",
        f"{where} field 'labels'",
    )


def read_label_file(path: str) -> np.ndarray:
    """(N,) labels from a .npy or a text file with one integer per line."""
    if path.endswith(".npy"):
        return np.asarray(_open_npy(path, "labels"))
    with open(path) as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    labels = np.empty(len(lines), np.int64)
    for number, line in enumerate(lines, 1):
        try:
            labels[number - 1] = int(line.strip())
        except ValueError:
            raise ValueError(f"data.labels {path!r} line {number}: expected one integer, found {line!r}") from None
    return labels


def _npy(spec: data_lib.DataSpec) -> data_lib.FeatureSet:
    """A features .npy plus a labels file."""
    feat_path = _require_file(spec.features, "features", "the (N, D) .npy of features")
    label_path = _require_file(spec.labels, "labels", "the labels (.npy, or text with one integer per line)")
    labels = read_label_file(label_path)
    where = f"data.features {feat_path!r}"
    return _generic(
        spec, _open_npy(feat_path, "features"), labels, None, None, None, where, where, f"data.labels {label_path!r}"
    )


def _generic(spec, features, labels, prototypes, class_names, file_wnids, where, feature_where, label_where):
    """Shared body of the npz / npy formats: check, map classes, draw, gather."""
    _check_features(features, feature_where)
    named = file_wnids if file_wnids is not None else class_names
    labels = _check_labels(np.asarray(labels), label_where, features.shape[0], None if named is None else len(named))
    k = len(named) if named is not None else int(max(labels.max(initial=-1), _max_label(prototypes)) + 1)
    if prototypes is not None:
        pf, pl = prototypes
        _check_features(pf, f"{where} field 'prototype_features'")
        if pf.shape[1] != features.shape[1]:
            raise ValueError(
                f"{where} field 'prototype_features': expected width D = {features.shape[1]} like "
                f"'features', found {pf.shape[1]}"
            )
        prototypes = (pf, _check_labels(np.asarray(pl), f"{where} field 'prototype_labels'", pf.shape[0], k))
    labels, prototypes, wnids, k = _select_classes(spec, labels, prototypes, file_wnids, k, where)
    if class_names is None or file_wnids is not None:
        class_names = _names_of(wnids) if wnids is not None else [f"class_{c}" for c in range(k)]
    return _assemble(spec, features, labels, prototypes, class_names, wnids, k, where)


def _max_label(prototypes) -> int:
    if prototypes is None:
        return -1
    pl = np.asarray(prototypes[1])
    return int(pl.max()) if pl.size and pl.dtype.kind in "iu" else -1


def _select_classes(spec, labels, prototypes, file_wnids, k, where):
    """Map file classes to the configured class list (see the module docstring)."""
    wanted = list(spec.wnids)
    if file_wnids is None:
        if not wanted:
            return labels, prototypes, None, k
        if len(wanted) != k:
            raise ValueError(
                f"{where}: the file has {k} classes and no 'wnids', but the configured class list (experiment or "
                f"wnids) has {len(wanted)}: expected labels indexing that list, or add a 'wnids' array to the file"
            )
        return labels, prototypes, wanted, k
    if not wanted:
        return labels, prototypes, file_wnids, k
    unknown = [w for w in wanted if w not in file_wnids]
    if unknown:
        raise ValueError(f"{where} field 'wnids': expected every configured wnid, found none for {unknown[:10]}")
    remap = np.full(k, -1, np.int64)
    remap[[file_wnids.index(w) for w in wanted]] = np.arange(len(wanted))
    labels = remap[labels]
    if prototypes is not None:
        prototypes = (prototypes[0], remap[prototypes[1]])
    return labels, prototypes, wanted, len(wanted)


def _assemble(spec, features, labels, prototypes, class_names, wnids, k, where) -> data_lib.FeatureSet:
    """Draw (or take) the prototypes, cap the items, gather the rows once."""
    rng = np.random.default_rng(spec.seed)
    n_items = _n_items(spec)
    if prototypes is None:
        items, protos = split_rows(labels, k, spec.n_prototype_per_class, n_items, rng, where, class_names)
        rows = np.concatenate([items, protos])
        out = gather(features, rows, where)
        return _feature_set(
            out,
            labels[rows],
            items.size,
            class_names,
            wnids,
            f"{where}: {items.size} items, {protos.size} prototypes drawn from them, {k} classes",
        )
    pf, pl = prototypes
    keep = pl >= 0
    missing = sorted(set(range(k)) - set(pl[keep].tolist()))
    if missing:
        raise ValueError(
            f"{where} field 'prototype_labels': expected at least one prototype per class, found none "
            f"for classes {missing[:10]}"
        )
    items = np.concatenate([_cap(np.flatnonzero(labels == c), n_items, rng) for c in range(k)])
    if items.size == 0:
        raise ValueError(f"{where} field 'labels': expected items of the selected classes, found none")
    proto_rows = np.flatnonzero(keep)
    out = np.empty((items.size + proto_rows.size, features.shape[1]), np.float32)
    gather(features, items, where, out=out[: items.size])
    gather(pf, proto_rows, f"{where} field 'prototype_features'", out=out[items.size :])
    return _feature_set(
        out,
        np.concatenate([labels[items], pl[proto_rows]]),
        items.size,
        class_names,
        wnids,
        f"{where}: {items.size} items, {proto_rows.size} given prototypes, {k} classes",
    )


def _cap(rows: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most n of `rows` (a seeded subset, in file order), all when n is None."""
    return rows if n is None or rows.size <= n else np.sort(rng.choice(rows, n, replace=False))
