"""Checkpoints of a running launch: the batched state, the metrics so far, the step.

Serialised with `flax.serialization` (msgpack) into one file written atomically (a
temporary file, fsync, then rename), so a run killed at any instant leaves either the
previous or the new checkpoint, never a torn one. A fingerprint of the resolved config
and seeds guards against resuming a different run. Because every random key is derived
from (seed, step) and chunks have a fixed length, a resumed run computes exactly what
the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

import jax
import numpy as np
from flax import serialization

from jaxanno import types

FILE = "checkpoint.msgpack"
FORMAT_VERSION = 1


def fingerprint(resolved_config: dict[str, Any], seeds: list[int]) -> str:
    """A stable hash of everything that determines a run's results."""
    payload = json.dumps({"config": resolved_config, "seeds": seeds, "v": FORMAT_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def merge_chunks(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Flat metric chunks {name: (G, S, T_chunk)} -> one dict concatenated over steps."""
    return {k: np.concatenate([c[k] for c in chunks], axis=-1) for k in chunks[0]} if chunks else {}


def save(
    workdir: os.PathLike, state: types.SimState, metrics: list[dict[str, np.ndarray]], step: int, print_: str
) -> None:
    """Write the checkpoint atomically."""
    payload = {
        "state": serialization.to_state_dict(jax.device_get(state)),
        "metrics": merge_chunks(metrics),
        "metric_names": list(metrics[0]) if metrics else [],  # msgpack maps do not keep order
        "step": step,
        "fingerprint": print_,
        "version": FORMAT_VERSION,
    }
    path = pathlib.Path(workdir) / FILE
    tmp = path.with_name(f".{FILE}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize(payload))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(
    workdir: os.PathLike, template: types.SimState, print_: str
) -> tuple[types.SimState, dict[str, np.ndarray], int] | None:
    """The checkpoint in `workdir`, or None when there is none.

    Raises:
      ValueError: the checkpoint belongs to a different config or seeds.
    """
    path = pathlib.Path(workdir) / FILE
    if not path.exists():
        return None
    payload = serialization.msgpack_restore(path.read_bytes())
    if payload.get("fingerprint") != print_:
        raise ValueError(
            f"{path} belongs to a run with a different config or seeds; "
            "use another --workdir or delete the folder to start afresh"
        )
    state = serialization.from_state_dict(template, payload["state"])
    metrics = {name: payload["metrics"][name] for name in payload["metric_names"]}
    return state, metrics, int(payload["step"])
