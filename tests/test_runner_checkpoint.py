"""Checkpoint files: lanes re-laid for another device count, and clear refusals of checkpoints
that do not fit (other shapes, other runs, changed input files, damaged files)."""

from __future__ import annotations

import numpy as np
import pytest
from flax import serialization

from jaxanno import checkpoint


def _state(lanes: int, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.arange(lanes * width, dtype=np.float32).reshape(lanes, width), "n": np.arange(lanes)}


def test_a_checkpoint_of_padded_lanes_resumes_with_another_padding(tmp_path):
    saved = _state(8)  # 6 real lanes padded to 8 (4 devices)
    checkpoint.save(tmp_path, saved, [{"m": np.ones((2, 3, 5))}], 5, "print")
    for padded in (6, 8, 9):  # 1, 2 or 4 and 3 devices
        template = {k: np.zeros((padded, *v.shape[1:]), v.dtype) for k, v in saved.items()}
        state, metrics, step = checkpoint.load(tmp_path, template, "print", lanes=6)
        order = np.arange(padded) % 6  # a padded lane copies lane i % L, as the lanes are placed
        np.testing.assert_array_equal(state["x"], saved["x"][order])
        np.testing.assert_array_equal(state["n"], order)
        assert step == 5 and metrics["m"].shape == (2, 3, 5)


@pytest.mark.parametrize(
    "template, lanes, found",
    [
        ({"x": np.zeros((4, 3), np.float32), "n": np.zeros(4, np.int64)}, 4, r"\['x'\] has shape \(4, 2\) float32"),
        ({"x": np.zeros((4, 2), np.float64), "n": np.zeros(4, np.int64)}, 4, r"\['x'\] .* needs .* float64"),
        ({"x": np.zeros((8, 2), np.float32), "n": np.zeros(8, np.int64)}, 6, r"needs \(6 lanes or more"),
        ({"y": np.zeros((4, 2), np.float32)}, 4, "its state does not fit this run"),
    ],
)
def test_a_checkpoint_of_other_shapes_is_refused_naming_the_field(tmp_path, template, lanes, found):
    checkpoint.save(tmp_path, _state(4), [], 1, "print")
    with pytest.raises(checkpoint.CheckpointError, match=found) as err:
        checkpoint.load(tmp_path, template, "print", lanes=lanes)
    assert str(err.value).startswith(str(tmp_path / checkpoint.FILE)) and "--fresh" in str(err.value)


def test_changed_input_files_are_named_and_a_changed_config_is_refused(tmp_path):
    resolved, seeds = {"a": 1}, [0, 1]
    inputs = {"/data/f.npz": "d1", "/data/labels.txt": "d2"}
    stamp = checkpoint.fingerprint(resolved, seeds, inputs)
    assert stamp != checkpoint.fingerprint(resolved, seeds) == checkpoint.fingerprint(resolved, seeds, {})
    checkpoint.save(tmp_path, _state(2), [], 7, stamp, inputs=inputs)
    template = _state(2)
    changed = {**inputs, "/data/f.npz": "d3"}
    with pytest.raises(
        checkpoint.CheckpointError, match=r"changed since this checkpoint was written \(step 7\)"
    ) as err:
        checkpoint.load(tmp_path, template, checkpoint.fingerprint(resolved, seeds, changed), inputs=changed)
    assert ": /data/f.npz;" in str(err.value) and "labels.txt" not in str(err.value)
    with pytest.raises(checkpoint.CheckpointError, match="different config or seeds"):
        checkpoint.load(tmp_path, template, checkpoint.fingerprint({"a": 2}, seeds, inputs), inputs=inputs)
    assert checkpoint.load(tmp_path, template, stamp, inputs=inputs)[2] == 7


@pytest.mark.parametrize(
    "content, found",
    [
        (b"", "not a readable checkpoint"),
        (b"\xc1\xc1garbage", "not a readable checkpoint"),
        (serialization.msgpack_serialize({"state": {}}), "not a jaxanno checkpoint"),
        (None, "checkpoint format 99"),
    ],
)
def test_a_damaged_or_foreign_checkpoint_is_refused_naming_the_file(tmp_path, content, found):
    if content is None:
        checkpoint.save(tmp_path, _state(2), [], 1, "print")
        payload = serialization.msgpack_restore((tmp_path / checkpoint.FILE).read_bytes())
        content = serialization.msgpack_serialize({**payload, "version": 99})
    (tmp_path / checkpoint.FILE).write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError, match=found) as err:
        checkpoint.load(tmp_path, _state(2), "print")
    assert str(err.value).startswith(f"{tmp_path / checkpoint.FILE}: ") and "--fresh" in str(err.value)
