"""Stand-in cache: validated before use, regenerated when bad, written atomically with plain
file I/O, no debris on a full disk or any other failure, stale temp files swept."""

from __future__ import annotations

import collections
import errno
import io
import os
import time
import warnings

import numpy as np
import pytest

from jaxanno import data as data_lib
from jaxanno.data import standin

CLASSES = ("n02138441", "n02326432", "n01558993")


def _spec(folder, seed=0):
    return data_lib.DataSpec(
        wnids=CLASSES, n_data_per_class=10, n_prototype_per_class=2, feature_dim=8, seed=seed, cache_dir=str(folder)
    )


def _cache_files(folder):
    return sorted(p.name for p in folder.iterdir())


def _features_file(folder):
    (path,) = folder.glob("*.features.npy")
    return path


@pytest.fixture
def cached(tmp_path):
    """A cache folder holding one stand-in set, and that set."""
    folder = tmp_path / "cache"
    fs = data_lib.load_features(_spec(folder))
    return folder, np.array(fs.features), fs.labels


def test_cache_holds_features_labels_and_a_checksum_file(cached):
    folder, features, labels = cached
    names = _cache_files(folder)
    assert len(names) == 3 and [n.split(".", 1)[1] for n in names] == ["features.npy", "labels.npy", "meta.json"]
    again = data_lib.load_features(_spec(folder))
    assert isinstance(again.features, np.memmap)  # read back memory-mapped, not regenerated
    np.testing.assert_array_equal(again.features, features)
    np.testing.assert_array_equal(again.labels, labels)


def _truncate(path):
    os.truncate(path, path.stat().st_size - 5)


def _flip_a_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda f: _truncate(_features_file(f)), "size"),
        (lambda f: _flip_a_byte(_features_file(f)), "checksum"),
        (lambda f: _truncate(next(f.glob("*.labels.npy"))), "size"),
        (lambda f: next(f.glob("*.meta.json")).write_text("{not json"), "checksum file"),
        (lambda f: next(f.glob("*.meta.json")).unlink(), "checksum file"),
        (lambda f: _features_file(f).unlink(), "missing"),
    ],
)
def test_damaged_cache_is_detected_and_regenerated(cached, damage, reason):
    folder, features, labels = cached
    damage(folder)
    with pytest.warns(standin.CacheWarning, match=f"stand-in cache .*{reason}.*regenerating"):
        fs = data_lib.load_features(_spec(folder))
    np.testing.assert_array_equal(fs.features, features)
    np.testing.assert_array_equal(fs.labels, labels)
    assert len(_cache_files(folder)) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", standin.CacheWarning)
        fs = data_lib.load_features(_spec(folder))  # valid again: no warning
    np.testing.assert_array_equal(fs.features, features)


class _DiskFull(io.FileIO):
    """A file whose writes fail once 100 bytes are on disk, like a full disk."""

    def write(self, data):
        if self.tell() + len(data) > 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_full_disk_leaves_no_temp_file_and_says_what_to_do(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: _DiskFull(fd, mode.replace("b", "")))
    with pytest.raises(data_lib.DataError) as err:
        data_lib.load_features(_spec(folder))
    message = str(err.value)
    assert str(folder) in message and "disk full" in message and "data.cache_dir" in message, message
    assert "\n" not in message
    assert _cache_files(folder) == []  # neither temp files nor partial cache files


def test_any_failure_while_writing_removes_the_temp_file(tmp_path, monkeypatch):
    folder = tmp_path / "cache"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(standin, "compose", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data_lib.load_features(_spec(folder))
    assert _cache_files(folder) == []


def test_cache_is_never_written_through_a_memory_map(tmp_path, monkeypatch):
    real = np.lib.format.open_memmap

    def read_only(filename, mode="r+", *args, **kwargs):
        assert mode == "r", f"memory map opened with mode {mode!r}"
        return real(filename, mode, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "open_memmap", read_only)
    fs = data_lib.load_features(_spec(tmp_path))
    assert fs.features.shape == (3 * 12, 8)


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(standin.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 500, 500))
    folder = tmp_path / "cache"
    with pytest.raises(data_lib.DataError, match=r"cache folder .*cache.*needs \d+ bytes .* 500 are free"):
        data_lib.load_features(_spec(folder))
    assert _cache_files(folder) == []


def test_unwritable_cache_folder_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(data_lib.DataError, match=r"stand-in cache folder .*file.*data.cache_dir"):
        data_lib.load_features(_spec(tmp_path / "file" / "cache"))


def test_stale_temp_files_are_swept_and_fresh_ones_kept(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    name = "0123456789abcdef"
    stale = [folder / f"{name}.features.npy.tmpk2j4x", folder / f"{name}.features.tmp4242.npy"]  # new, old style
    fresh = folder / f"{name}.labels.npy.tmpab12cd"  # a run writing now
    foreign = folder / "notes.tmp.txt"  # the cache folder may hold a user's files
    for path in (*stale, fresh, foreign):
        path.write_bytes(b"partial")
    old = time.time() - standin.STALE_TEMP_SECONDS - 60
    for path in (*stale, foreign):
        os.utime(path, (old, old))
    data_lib.load_features(_spec(folder))
    assert not any(p.exists() for p in stale) and fresh.exists() and foreign.exists()
