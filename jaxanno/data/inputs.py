"""Reading and checking user input files: formats, text, label and feature arrays, fingerprints.

Every reader here normalises what it reads the same way:

* text is UTF-8; a leading byte-order mark is dropped and ids, names and labels lose their
  surrounding whitespace (``' n01558993\\r'`` and ``'n01558993'`` are one class);
* a file's format is recognised by its first bytes, not its name, so an ``.npz`` given
  where a ``.npy`` is expected (or the reverse, or anything else) is named as such;
* a label is an integer class index in [0, 2**31 - 1]: ``NaN``, ``NA`` or an empty line is a
  missing label, a decimal or a word among integers is refused, and integers are never
  wrapped to fit int32.

Every problem raises `DataError`, a `ValueError` whose one-line message names the file (or
setting), what was found, what was expected and what to do.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from collections.abc import Iterable

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip member, or an empty archive
INT32_MAX = int(np.iinfo(np.int32).max)
MISSING_LABELS = frozenset({"", "nan", "na", "n/a", "none", "null"})  # lower-cased, stripped
FULL_HASH_BYTES = 256 << 20  # files up to this size are hashed in full by `file_digest`
SAMPLE_BLOCKS = 64  # blocks hashed from larger files (first and last included)
SAMPLE_BLOCK_BYTES = 1 << 20  # at most; 1/64 of the file when smaller


class DataError(ValueError):
    """A data file or data setting that cannot be used; the message names it and says what to do."""


def clean_id(value: str) -> str:
    """An id or name without a byte-order mark or surrounding whitespace."""
    return value.replace("\ufeff", "").strip()


def file_kind(path: str) -> str:
    """'npy', 'npz', 'empty' or 'other', from the first bytes of the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as err:
        raise DataError(f"cannot read {path!r} ({err.strerror or err}): check the path and its permissions") from None
    if not head:
        return "empty"
    if head.startswith(NPY_MAGIC):
        return "npy"
    return "npz" if head[:4] in ZIP_MAGICS else "other"


def _head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def _wrong_kind(path: str, where: str, kind: str, expected: str, fix: str) -> DataError:
    found = {
        "npy": "a .npy array",
        "npz": "an .npz archive",
        "empty": "empty (0 bytes)",
        "other": f"not {expected} (it starts with {_head(path)!r})",
    }[kind]
    if kind in ("npy", "npz"):
        found += f", expected {expected}"
    return DataError(f"{where} {path!r} is {found}: {fix}")


def _require_kind(path: str, where: str, want: str, expected: str, fix: str, fix_other_array: str) -> None:
    """Raise `_wrong_kind` unless the file's first bytes say it is `want` ('npy' or 'npz').

    `fix_other_array` is the advice when the file is the other numpy format (.npz for .npy).
    """
    kind = file_kind(path)
    if kind != want:
        raise _wrong_kind(path, where, kind, expected, fix_other_array if kind in ("npy", "npz") else fix)


def open_npy(path: str, field: str) -> np.ndarray:
    """A memory-mapped .npy array (no copy); `field` is the data setting that names the file."""
    where = f"data.{field}"
    _require_kind(
        path,
        where,
        "npy",
        "a .npy array",
        "write the array with numpy.save",
        "use data.source='npz' for an .npz, or save the array alone with numpy.save",
    )
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(
            f"{where}: cannot read {path!r} as a .npy array ({err}); the file is truncated or corrupt: write it "
            "again with numpy.save"
        ) from None
    return array


def _stored_member(path: str, archive: zipfile.ZipFile, name: str) -> np.ndarray | None:
    """Member `name` memory-mapped when stored uncompressed (None when it cannot be)."""
    info = archive.getinfo(name + ".npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
        f.seek(info.header_offset + 30 + int(name_len) + int(extra_len))
        version = np.lib.format.read_magic(f)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            return None
        shape, fortran, dtype = readers[version](f)
        if dtype.hasobject:
            return None
        return np.memmap(path, dtype, "r", offset=f.tell(), shape=shape, order="F" if fortran else "C")


def read_npz(path: str, field: str = "features") -> dict[str, np.ndarray]:
    """The arrays of an .npz (stored members memory-mapped), errors naming the file."""
    where = f"data.{field}"
    _require_kind(
        path,
        where,
        "npz",
        "an .npz archive",
        "write it with numpy.savez",
        "use data.source='npy' (features .npy plus data.labels), or write an .npz with numpy.savez",
    )
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
            arrays = {}
            for n in names:
                mapped = _stored_member(path, archive, n)
                if mapped is None:
                    with archive.open(n + ".npy") as member:
                        mapped = np.lib.format.read_array(member, allow_pickle=False)
                arrays[n] = mapped
            return arrays
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error, NotImplementedError) as err:
        raise DataError(
            f"{where}: cannot read {path!r} as an .npz archive ({err}); the file is truncated or corrupt: write it "
            "again with numpy.savez"
        ) from None


def read_text_lines(path: str, field: str, what: str) -> list[str]:
    """The lines of a UTF-8 text file (BOM dropped, trailing blank lines removed)."""
    where = f"data.{field}"
    kind = file_kind(path)
    if kind in ("npy", "npz"):
        raise _wrong_kind(path, where, kind, f"a text file of {what}", f"set data.{field} to a text file of {what}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{where} {path!r} is not UTF-8 text (byte {raw[err.start]:#04x} on line {line}): expected a text file "
            f"of {what}; save it as UTF-8"
        ) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def parse_label(text: str, where: str) -> int:
    """The integer class index written in `text` (one line of a label file).

    Args:
      where: the file and line, e.g. ``"data.labels 'l.txt' line 3"``.
    """
    value = clean_id(text)
    if value.lower() in MISSING_LABELS:
        raise DataError(
            f"{where}: missing label (found {text!r}): every feature row needs an integer class index; give this "
            "row its label or drop it from the features and the labels"
        )
    try:
        label = int(value)
    except ValueError:
        try:
            float(value)
        except ValueError:
            raise DataError(
                f"{where}: found text {value!r} among integer labels: expected an integer class index 0..K-1 on "
                "every line (map class names to indices first)"
            ) from None
        raise DataError(
            f"{where}: expected an integer class index, found {value!r}: write labels as integers 0..K-1"
        ) from None
    return check_label_value(label, where)


def check_label_value(label: int, where: str) -> int:
    """`label` when it is a class index that fits int32 (never wrapped)."""
    if label > INT32_MAX:
        raise DataError(
            f"{where}: label {label} is beyond the int32 range (at most {INT32_MAX}): labels are class indices "
            "0..K-1, stored as int32 and never wrapped; check the file"
        )
    if label < 0:
        raise DataError(f"{where}: label {label} is negative: expected a class index >= 0 (labels are 0..K-1)")
    return label


def check_features(array: np.ndarray, where: str) -> None:
    """Features are a 2-D numeric array with at least one row and one column."""
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise DataError(f"{where}: expected a 2-D (rows, D) array, found shape {np.shape(array)}")
    if array.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected numeric features, found dtype {array.dtype}")
    if 0 in array.shape:
        what = "no feature columns" if array.shape[1] == 0 else "no rows"
        raise DataError(f"{where}: found shape {array.shape}, {what}: expected (rows, D) features with rows, D >= 1")


def check_labels(labels: np.ndarray, where: str, rows: int, num_classes: int | None) -> np.ndarray:
    """(rows,) int64 labels in [0, num_classes) (checked before any cast), or a DataError."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: expected a 1-D array of labels, found shape {labels.shape}")
    if labels.dtype.kind in "US":
        raise DataError(
            f"{where}: found text labels (dtype {labels.dtype}): expected integer class indices 0..K-1; store the "
            "labels as integers (and the names in an .npz field 'class_names')"
        )
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        bad = int(np.argmax(np.isnan(labels)))
        raise DataError(
            f"{where}: missing labels: found NaN in {int(np.isnan(labels).sum())} rows, first at row {bad}; every "
            "feature row needs an integer class index"
        )
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: expected integer labels, found dtype {labels.dtype}")
    if labels.shape[0] != rows:
        raise DataError(
            f"{where}: expected one label per feature row ({rows} rows of features), found {labels.shape[0]}"
        )
    if labels.size and int(labels.max()) > INT32_MAX:  # compared in the file's dtype: nothing wraps
        bad = int(np.argmax(labels > INT32_MAX))
        check_label_value(int(labels[bad]), f"{where} row {bad}")
    labels = np.asarray(labels, np.int64)
    if labels.size and labels.min() < 0:
        bad = int(np.argmax(labels < 0))
        raise DataError(f"{where}: labels must be >= 0, found {labels[bad]} at row {bad}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DataError(
            f"{where}: labels must be in [0, {num_classes}) ({num_classes} classes), found {labels[bad]} at row {bad}"
        )
    return labels


def read_label_file(path: str) -> np.ndarray:
    """(N,) labels from a .npy or a UTF-8 text file with one integer per line.

    The format comes from the file's first bytes. Text lines lose a BOM and surrounding
    whitespace; a missing (empty, ``NaN``, ``NA``), decimal, textual or out-of-int32 label is
    an error naming its line.
    """
    kind = file_kind(path)
    if kind == "npy":
        return np.asarray(open_npy(path, "labels"))
    if kind == "npz":
        raise DataError(
            f"data.labels {path!r} is an .npz archive, expected a .npy array or a text file with one integer per "
            "line: use data.source='npz' with 'labels' inside the archive, or save the labels with numpy.save"
        )
    lines = read_text_lines(path, "labels", "integer labels, one per line")
    labels = np.empty(len(lines), np.int64)
    for number, line in enumerate(lines, 1):
        labels[number - 1] = parse_label(line, f"data.labels {path!r} line {number}")
    return labels


def file_digest(path: str, full_hash_bytes: int = FULL_HASH_BYTES, with_mtime: bool = True) -> str:
    """A content digest of one file.

    Files up to `full_hash_bytes` (256 MiB): ``sha256:`` of every byte. Larger files:
    ``sampled-sha256:`` of the size, the modification time (ns) and `SAMPLE_BLOCKS` blocks
    of 1 MiB evenly spaced from the first to the last byte, so that checking a large
    embedding file costs milliseconds; a change that keeps the size and the mtime and
    misses every sampled block goes unnoticed, and touching (or copying without keeping
    times) counts as a change unless `with_mtime` is False.
    """
    stat = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if stat.st_size <= full_hash_bytes:
            for block in iter(lambda: f.read(SAMPLE_BLOCK_BYTES), b""):
                h.update(block)
            return "sha256:" + h.hexdigest()
        h.update(f"{stat.st_size} {stat.st_mtime_ns if with_mtime else ''}".encode())
        block = max(1, min(SAMPLE_BLOCK_BYTES, stat.st_size // SAMPLE_BLOCKS))
        for offset in np.linspace(0, stat.st_size - block, SAMPLE_BLOCKS).astype(np.int64).tolist():
            f.seek(offset)
            h.update(f.read(block))
    return "sampled-sha256:" + h.hexdigest()


def content_fingerprint(paths: Iterable[str], full_hash_bytes: int = FULL_HASH_BYTES) -> str:
    """64 hex digits that change whenever the contents of any of `paths` change.

    The sha256 of, per non-empty path in the given order (the order says which file is
    which), its size and `file_digest`: every byte of files up to `full_hash_bytes`
    (256 MiB), size + mtime + a sampled hash above. File names and folders do not count,
    so a moved file keeps its fingerprint. Empty strings (unset settings) are skipped.

    Raises:
      DataError: a path that is not a readable file.
    """
    h = hashlib.sha256(b"jaxanno-inputs-v1")
    for path in paths:
        if not path:
            continue
        if not os.path.isfile(path):
            raise DataError(f"input file {path!r} does not exist or is not a file: cannot fingerprint it")
        try:
            digest = file_digest(path, full_hash_bytes)
        except OSError as err:
            raise DataError(f"cannot fingerprint input file {path!r}: {err.strerror or err}") from None
        h.update(f"{os.path.getsize(path)} {digest}\n".encode())
    return h.hexdigest()
