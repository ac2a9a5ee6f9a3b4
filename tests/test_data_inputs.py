"""Data inputs: normalisation of ids and labels, file-format mix-ups, corrupt files, data
settings, and the content fingerprint of input files. Numpy only, no compiles."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from jaxanno import data as data_lib
from jaxanno.data import files

CLASSES = ["n02138441", "n02326432", "n01558993"]  # meerkat, hare, robin (split 1)
PER_CLASS = 6
WIDTH = 4


def _reference_files(folder, prefix="", line_format="{path} {label}"):
    """A features .npy and an image list whose first line belongs to class 0."""
    rng = np.random.default_rng(0)
    wnids = [CLASSES[i % 3] for i in range(3 * PER_CLASS)]
    lines = [line_format.format(path=f"{w}/{w}_{i}.JPEG", label=CLASSES.index(w)) for i, w in enumerate(wnids)]
    feats = rng.standard_normal((len(lines), WIDTH)).astype(np.float32)
    np.save(folder / "features.npy", feats)
    (folder / "list.txt").write_bytes((prefix + "\n".join(lines) + "\n").encode())
    return str(folder / "features.npy"), str(folder / "list.txt")


def _load_reference(feat_path, list_path, wnids=tuple(CLASSES)):
    spec = data_lib.DataSpec(
        source="reference", wnids=wnids, features=feat_path, image_list=list_path, n_prototype_per_class=2
    )
    return data_lib.load_features(spec)


@pytest.mark.parametrize(
    "prefix, line_format",
    [
        ("\ufeff", "{path} {label}"),  # UTF-8 byte-order mark
        ("\ufeff", "  {path}\t{label}  \r"),  # BOM, surrounding whitespace, CRLF
        ("", " {path}  {label} "),
    ],
)
def test_image_list_is_normalised_and_keeps_its_first_image(tmp_path, prefix, line_format):
    (tmp_path / "plain").mkdir()
    plain = _load_reference(*_reference_files(tmp_path / "plain"))
    messy = _load_reference(*_reference_files(tmp_path, prefix, line_format))
    assert messy.num_items == plain.num_items == 3 * (PER_CLASS - 2)
    np.testing.assert_array_equal(messy.features, plain.features)
    np.testing.assert_array_equal(messy.labels, plain.labels)
    every = _load_reference(*_reference_files(tmp_path, prefix, line_format), wnids=())
    assert every.wnids == CLASSES  # no class named '\ufeffn02138441'


def test_image_list_that_is_not_text_names_the_file(tmp_path):
    feat_path, _ = _reference_files(tmp_path)
    with pytest.raises(data_lib.DataError, match=r"data.image_list .*features.npy.* \.npy array, expected a text"):
        _load_reference(feat_path, feat_path)
    (tmp_path / "latin1.txt").write_bytes(b"n02138441/caf\xe9.JPEG 0\n")
    with pytest.raises(data_lib.DataError, match=r"latin1.txt.* not UTF-8 text .*line 1"):
        _load_reference(feat_path, str(tmp_path / "latin1.txt"))


def _npy_spec(tmp_path, label_text: str | bytes, rows: int = 12):
    feats = np.random.default_rng(2).standard_normal((rows, WIDTH)).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    raw = label_text.encode() if isinstance(label_text, str) else label_text
    (tmp_path / "labels.txt").write_bytes(raw)
    return data_lib.DataSpec(
        source="npy", features=str(tmp_path / "f.npy"), labels=str(tmp_path / "labels.txt"), n_prototype_per_class=2
    )


def test_label_text_with_bom_and_whitespace_is_normalised(tmp_path):
    labels = np.arange(12) % 3
    clean = data_lib.load_features(_npy_spec(tmp_path, "\n".join(map(str, labels))))
    messy = data_lib.load_features(_npy_spec(tmp_path, "\ufeff" + "\r\n".join(f" {v}\t" for v in labels) + "\n\n"))
    np.testing.assert_array_equal(messy.labels, clean.labels)
    np.testing.assert_array_equal(messy.features, clean.features)


BAD_LABEL_LINES = [
    ("NaN", "line 3: missing label"),
    ("nan", "line 3: missing label"),
    ("", "line 3: missing label"),
    ("   ", "line 3: missing label"),
    ("NA", "line 3: missing label"),
    ("1.0", "line 3: expected an integer class index, found '1.0'"),
    ("bird", "line 3: found text 'bird' among integer labels"),
    ("'1'", "line 3: found text"),
    ("2147483648", "line 3: .*2147483648 is beyond the int32 range"),
    ("4294967297", "line 3: .*beyond the int32 range"),
    ("99999999999999999999999", "line 3: .*beyond the int32 range"),
    ("-1", "line 3: .*-1 .*expected a class index >= 0"),
]


@pytest.mark.parametrize("line, message", BAD_LABEL_LINES)
def test_bad_label_lines_are_one_line_errors_naming_file_and_line(tmp_path, line, message):
    text = "0\n1\n" + line + "\n" + "\n".join(str(i % 3) for i in range(9)) + "\n"
    with pytest.raises(data_lib.DataError) as err:
        data_lib.load_features(_npy_spec(tmp_path, text))
    assert re.search(r"data.labels '.*labels.txt' " + message, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 1, 2**64 - 1] + [0, 1, 2] * 3, np.uint64), "18446744073709551615 .*beyond the int32 range"),
        (np.array([0, 1, 2**31] + [0, 1, 2] * 3, np.int64), "2147483648 .*beyond the int32 range"),
        (np.array([0, 1, 7] + [0, 1, 2] * 3, np.int64), r"classes \[3, 4, 5, 6\] do not occur"),
        (np.array(["0", "1", "2"] * 4), "text labels"),
        (np.array([0.0, 1.0, np.nan] * 4), "missing labels: found NaN in 4 rows, first at row 2"),
    ],
)
def test_label_arrays_are_checked_before_any_cast(tmp_path, labels, message):
    np.save(tmp_path / "f.npy", np.random.default_rng(2).standard_normal((12, WIDTH)).astype(np.float32))
    np.save(tmp_path / "labels.npy", labels)
    spec = data_lib.DataSpec(
        source="npy", features=str(tmp_path / "f.npy"), labels=str(tmp_path / "labels.npy"), n_prototype_per_class=2
    )
    with pytest.raises(data_lib.DataError, match=message):
        data_lib.load_features(spec)


def _npz_spec(path, **kw):
    return data_lib.DataSpec(source="npz", features=str(path), n_prototype_per_class=2, **kw)


def test_npz_ids_and_names_are_stripped(tmp_path):
    feats = np.random.default_rng(0).standard_normal((12, WIDTH)).astype(np.float32)
    wnids = np.array(["\ufeff" + CLASSES[0], f" {CLASSES[1]} ", f"{CLASSES[2]}\t"])
    np.savez(tmp_path / "a.npz", features=feats, labels=np.arange(12) % 3, wnids=wnids)
    fs = data_lib.load_features(_npz_spec(tmp_path / "a.npz", wnids=(CLASSES[2], CLASSES[0])))
    assert fs.wnids == [CLASSES[2], CLASSES[0]] and fs.num_classes == 2
    np.savez(tmp_path / "b.npz", features=feats, labels=np.arange(12) % 3, class_names=np.array([" a", "b ", "c"]))
    assert data_lib.load_features(_npz_spec(tmp_path / "b.npz")).class_names == ["a", "b", "c"]


@pytest.mark.parametrize(
    "field, values, message",
    [
        ("wnids", [CLASSES[0], " " + CLASSES[0], CLASSES[1]], "field 'wnids': expected distinct .*more than once"),
        ("wnids", [CLASSES[0], "  ", CLASSES[1]], "field 'wnids': .*empty entry at index 1"),
        ("class_names", ["a", "", "c"], "field 'class_names': .*empty entry at index 1"),
    ],
)
def test_npz_bad_names_are_refused(tmp_path, field, values, message):
    feats = np.random.default_rng(0).standard_normal((12, WIDTH)).astype(np.float32)
    np.savez(tmp_path / "a.npz", features=feats, labels=np.arange(12) % 3, **{field: np.array(values)})
    with pytest.raises(data_lib.DataError, match=message):
        data_lib.load_features(_npz_spec(tmp_path / "a.npz"))


def test_configured_wnids_are_normalised_and_must_be_strings(tmp_path):
    feat_path, list_path = _reference_files(tmp_path)
    plain = _load_reference(feat_path, list_path)
    padded = _load_reference(feat_path, list_path, wnids=tuple(f" {w}\n" for w in CLASSES))
    np.testing.assert_array_equal(padded.features, plain.features)
    assert padded.wnids == CLASSES
    with pytest.raises(data_lib.DataError, match=r"wnids: expected strings .*found int 5 at index 1"):
        _load_reference(feat_path, list_path, wnids=(CLASSES[0], 5, CLASSES[2]))


def _save_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _format_case(tmp_path, case):
    """(spec, expected message) for one mix-up of file formats or one corrupt file."""
    feats = np.random.default_rng(0).standard_normal((12, WIDTH)).astype(np.float32)
    labels = np.arange(12) % 3
    npz = _save_npz(tmp_path / "d.npz", features=feats, labels=labels)
    np.save(tmp_path / "f.npy", feats)
    np.save(tmp_path / "l.npy", labels)
    npy, lab = str(tmp_path / "f.npy"), str(tmp_path / "l.npy")
    raw = (tmp_path / "f.npy").read_bytes()
    if case == "npz as npy features":
        return data_lib.DataSpec(source="npy", features=npz, labels=lab), r"d.npz' is an \.npz archive.*source='npz'"
    if case == "npz as npy labels":
        return data_lib.DataSpec(source="npy", features=npy, labels=npz), r"data.labels '.*d.npz' is an \.npz archive"
    if case == "npy as npz":
        return _npz_spec(npy), r"f.npy' is a \.npy array, expected an \.npz archive.*source='npy'"
    if case == "zero feature columns":
        path = _save_npz(tmp_path / "z.npz", features=np.zeros((12, 0), np.float32), labels=labels)
        return _npz_spec(path), r"z.npz' field 'features'.* no feature columns"
    if case == "zero feature columns npy":
        np.save(tmp_path / "z.npy", np.zeros((12, 0), np.float32))
        spec = data_lib.DataSpec(source="npy", features=str(tmp_path / "z.npy"), labels=lab)
        return spec, r"z.npy'.* no feature columns"
    if case == "truncated npy":
        (tmp_path / "t.npy").write_bytes(raw[: len(raw) - 7])
        spec = data_lib.DataSpec(source="npy", features=str(tmp_path / "t.npy"), labels=lab)
        return spec, r"t.npy'.* truncated or corrupt.*numpy.save"
    if case == "truncated npz":
        whole = (tmp_path / "d.npz").read_bytes()
        (tmp_path / "t.npz").write_bytes(whole[: len(whole) // 2])
        return _npz_spec(tmp_path / "t.npz"), r"t.npz'.* truncated or corrupt.*numpy.savez"
    if case == "corrupt compressed npz":
        np.savez_compressed(tmp_path / "c.npz", features=feats, labels=labels)
        whole = bytearray((tmp_path / "c.npz").read_bytes())
        whole[60:90] = b"\xff" * 30  # inside the first member's compressed stream
        (tmp_path / "c.npz").write_bytes(bytes(whole))
        return _npz_spec(tmp_path / "c.npz"), r"c.npz'.* truncated or corrupt"
    if case == "unknown format":
        (tmp_path / "u.npy").write_bytes(b"GIF89a not an array at all")
        spec = data_lib.DataSpec(source="npy", features=str(tmp_path / "u.npy"), labels=lab)
        return spec, r"u.npy' is not a \.npy array \(it starts with b'GIF89a"
    if case == "empty file":
        (tmp_path / "e.npz").write_bytes(b"")
        return _npz_spec(tmp_path / "e.npz"), r"e.npz' is empty \(0 bytes\)"
    raise AssertionError(case)


FORMAT_CASES = [
    "npz as npy features",
    "npz as npy labels",
    "npy as npz",
    "zero feature columns",
    "zero feature columns npy",
    "truncated npy",
    "truncated npz",
    "corrupt compressed npz",
    "unknown format",
    "empty file",
]


@pytest.mark.parametrize("case", FORMAT_CASES)
def test_format_mixups_and_corrupt_files_are_one_line_errors(tmp_path, case):
    spec, message = _format_case(tmp_path, case)
    with pytest.raises(data_lib.DataError) as err:
        data_lib.load_features(spec)
    assert re.search(message, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(seed=-1), r"data.seed=-1: expected an integer >= 0"),
        (dict(seed="3"), r"data.seed='3': expected an integer >= 0"),
        (dict(seed=True), r"data.seed=True: expected an integer >= 0"),
        (dict(feature_dim=0), r"data.feature_dim=0: expected an integer >= 1"),
        (dict(source="csv"), r"data.source='csv': expected one of"),
        (dict(n_prototype_per_class=-2), r"n_prototype_per_class=-2: expected an integer >= 0"),
        (dict(n_data_per_class=2.5), r"n_data_per_class=2.5: expected an integer or None"),
        (dict(wnids=(CLASSES[0], CLASSES[1], CLASSES[0].upper())), r"wnids: expected distinct classes"),
        (dict(wnids=(CLASSES[0], " ")), r"wnids: expected non-empty wnids, found an empty one at index 1"),
    ],
)
def test_data_settings_are_named_in_full(tmp_path, overrides, message):
    base = dict(wnids=tuple(CLASSES), n_data_per_class=4, n_prototype_per_class=2, feature_dim=8)
    spec = data_lib.DataSpec(cache_dir=str(tmp_path), **{**base, **overrides})
    with pytest.raises(data_lib.DataError, match=message):
        data_lib.load_features(spec)
    assert not list(tmp_path.iterdir())  # refused before anything was generated


def test_file_loaders_name_data_seed(tmp_path):
    feat_path, list_path = _reference_files(tmp_path)
    spec = data_lib.DataSpec(source="reference", features=feat_path, image_list=list_path, seed=-3)
    with pytest.raises(data_lib.DataError, match=r"data.seed=-3"):
        data_lib.load_features(spec)


def test_content_fingerprint_follows_every_byte(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.txt"
    np.save(a, np.arange(1000, dtype=np.float32))
    b.write_text("0\n1\n")
    first = files.content_fingerprint([str(a), str(b)])
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert files.content_fingerprint([str(a), str(b)]) == first
    assert files.content_fingerprint([str(a), "", str(b)]) == first  # unset settings are skipped
    assert files.content_fingerprint([str(b), str(a)]) != first  # the order (which file is which) counts
    raw = bytearray(a.read_bytes())
    raw[500] ^= 1
    a.write_bytes(bytes(raw))
    changed = files.content_fingerprint([str(a), str(b)])
    assert changed != first
    raw[500] ^= 1
    a.write_bytes(bytes(raw))
    assert files.content_fingerprint([str(a), str(b)]) == first  # same bytes again: same fingerprint
    with pytest.raises(data_lib.DataError, match=r"missing.npy' does not exist"):
        files.content_fingerprint([str(tmp_path / "missing.npy")])


def test_content_fingerprint_samples_large_files(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: "large" with a 64 KiB threshold
    times = (path.stat().st_atime_ns, path.stat().st_mtime_ns)

    def fingerprint():
        return files.content_fingerprint([str(path)], full_hash_bytes=1 << 16)

    first = fingerprint()
    raw = bytearray(path.read_bytes())
    for offset in (0, len(raw) - 1):  # the first and last blocks are always sampled
        raw[offset] ^= 1
        path.write_bytes(bytes(raw))
        os.utime(path, ns=times)  # same size and mtime: only the sampled hash can tell
        assert fingerprint() != first
        raw[offset] ^= 1
        path.write_bytes(bytes(raw))
        os.utime(path, ns=times)
        assert fingerprint() == first
    os.utime(path, ns=(times[0], times[1] + 10**9))
    assert fingerprint() != first  # large files: a new mtime counts as a change


def test_input_paths_lists_the_files_a_spec_reads():
    spec = data_lib.DataSpec(source="reference", features="f.npy", image_list="l.txt", labels="ignored")
    assert files.input_paths(spec) == ["f.npy", "l.txt"]
    assert files.input_paths(data_lib.DataSpec(source="npy", features="f.npy", labels="l.txt")) == ["f.npy", "l.txt"]
    assert files.input_paths(data_lib.DataSpec(source="npz", features="d.npz")) == ["d.npz"]
    assert files.input_paths(data_lib.DataSpec()) == []
