"""Checkpoints of a running launch: the batched state, the metrics so far, the step.

Serialised with `flax.serialization` (msgpack) into one file written atomically (a free-space
check, a temporary file, fsync, then rename), so a run killed at any instant, or a disk that
fills up, leaves the previous checkpoint intact and no partial file behind. A fingerprint of
the resolved config, the seeds and the contents of the input data files guards against
resuming a different run; the per-file digests stored beside it name the file that changed.
Because every random key is derived from (seed, step) and chunks have a fixed length, a
resumed run computes exactly what the uninterrupted run would have.

Lanes: every state leaf has a leading lane axis, padded to a multiple of the device count.
`load` keeps the run's real lanes and pads them again for the devices of the resuming run
(padded lane ``i`` copies lane ``i % L``, as `experiment.lane_inputs` pads), so a checkpoint
written on one device count resumes on another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import serialization

from jaxanno import outputs, types

FILE = "checkpoint.msgpack"
FORMAT_VERSION = 2  # 2: the early stopper keeps its latest confident counts
SPACE_MARGIN = 1 << 20  # bytes kept free beyond the checkpoint itself
_FIX = "use another --workdir, or --fresh to start over"


def _to_state_dict(x: Any) -> dict[str, Any]:
    return {f.name: serialization.to_state_dict(getattr(x, f.name)) for f in dataclasses.fields(x)}


def _from_state_dict(x: Any, state: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(x)}
    if set(state) != names:
        missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
        raise ValueError(f"{type(x).__name__}: fields missing {missing}, unexpected {unexpected}")
    return x.replace(**{n: serialization.from_state_dict(getattr(x, n), state[n], name=n) for n in names})


# The state classes are plain jax pytrees (`types.pytree_dataclass`); stored as {field: value}
# dicts, the layout of earlier checkpoints.
for _cls in types.PYTREE_DATACLASSES:
    serialization.register_serialization_state(_cls, _to_state_dict, _from_state_dict, override=True)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: unreadable, of another run, or of changed input files.

    The message starts with the checkpoint's path and says what to do.
    """


def fingerprint(resolved_config: dict[str, Any], seeds: list[int], inputs: Mapping[str, str] | None = None) -> str:
    """A stable hash of everything that determines a run's results.

    Args:
      inputs: {input file path: content digest} of the data files the run reads (none for
        stand-in data; then the hash is the same as without the argument).
    """
    content: dict[str, Any] = {"config": resolved_config, "seeds": seeds, "v": FORMAT_VERSION}
    if inputs:
        content["inputs"] = dict(inputs)
    payload = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def merge_chunks(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Flat metric chunks {name: (G, S, T_chunk)} -> one dict concatenated over steps."""
    return {k: np.concatenate([c[k] for c in chunks], axis=-1) for k in chunks[0]} if chunks else {}


def save(
    workdir: os.PathLike,
    state: types.SimState,
    metrics: list[dict[str, np.ndarray]],
    step: int,
    print_: str,
    *,
    inputs: Mapping[str, str] | None = None,
) -> None:
    """Write the checkpoint atomically.

    Raises:
      outputs.WorkdirError: the disk lacks the space for it (nothing written; the previous
        checkpoint is intact).
    """
    payload = {
        "state": serialization.to_state_dict(jax.device_get(state)),
        "metrics": merge_chunks(metrics),
        "metric_names": list(metrics[0]) if metrics else [],  # msgpack maps do not keep order
        "step": step,
        "fingerprint": print_,
        "inputs": dict(inputs or {}),
        "version": FORMAT_VERSION,
    }
    blob = serialization.msgpack_serialize(payload)
    path = pathlib.Path(workdir) / FILE
    outputs.check_free_space(path.parent, len(blob) + SPACE_MARGIN, "a checkpoint")
    outputs.atomic_write_bytes(path, blob, fsync=True)


def load(
    workdir: os.PathLike,
    template: types.SimState,
    print_: str,
    *,
    inputs: Mapping[str, str] | None = None,
    lanes: int | None = None,
) -> tuple[types.SimState, dict[str, np.ndarray], int] | None:
    """The checkpoint in `workdir` as (host state laid out like `template`, metrics, step), or None.

    Args:
      template: host arrays of the resuming run's state (leading axis: its padded lanes).
      inputs: the resuming run's {input file: digest}, to name the files that changed.
      lanes: the run's real lanes L; the checkpoint's first L lanes are kept and padded to
        the template's lane count. None: the lane counts must be equal.

    Raises:
      CheckpointError: unreadable, of a different config or seeds, of changed input files,
        or of state shapes that do not fit this run.
    """
    path = pathlib.Path(workdir) / FILE
    if not path.exists():
        return None
    payload = _read(path)
    if payload["fingerprint"] != print_:
        stored = payload.get("inputs")
        changed = _changed(stored, inputs) if isinstance(stored, dict) and inputs is not None else []
        if changed:
            raise CheckpointError(
                f"{path}: input file(s) changed since this checkpoint was written (step {payload['step']}): "
                f"{', '.join(changed)}; resuming would mix old and new data: {_FIX}"
            )
        raise CheckpointError(f"{path}: belongs to a run with a different config or seeds; {_FIX}")
    state = _fit_state(path, template, payload["state"], lanes)
    metrics = {name: np.asarray(payload["metrics"][name]) for name in payload["metric_names"]}
    return state, metrics, int(payload["step"])


def _read(path: pathlib.Path) -> dict[str, Any]:
    """The checkpoint's payload, checked for the keys and format version `save` writes."""
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except OSError:
        raise
    except Exception as err:  # msgpack raises several unrelated types on a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}); {_FIX}") from None
    keys = ("state", "metrics", "metric_names", "step", "fingerprint", "version")
    if not isinstance(payload, dict) or any(k not in payload for k in keys):
        raise CheckpointError(f"{path}: not a jaxanno checkpoint (missing fields); {_FIX}")
    if payload["version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['version']!r}, this version of jaxanno reads {FORMAT_VERSION}; {_FIX}"
        )
    return payload


def _changed(stored: dict[str, str], inputs: Mapping[str, str]) -> list[str]:
    """Input files whose digest differs (or that only one of the two runs reads)."""
    return sorted(p for p in set(stored) | set(inputs) if stored.get(p) != inputs.get(p))


def _fit_state(path: pathlib.Path, template: types.SimState, stored: Any, lanes: int | None) -> types.SimState:
    """`stored` restored into `template`'s structure, its lanes trimmed and re-padded to the template's."""
    try:
        state = serialization.from_state_dict(template, stored)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: its state does not fit this run ({err}); {_FIX}") from None

    def fit(name: str, x: Any, ref: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        keep = ref.shape[0] if lanes is None else lanes
        if x.ndim != ref.ndim or x.shape[1:] != ref.shape[1:] or x.dtype != ref.dtype or x.shape[0] < keep:
            raise CheckpointError(
                f"{path}: state field {name} has shape {x.shape} {x.dtype}, this run needs "
                f"({keep} lanes or more, *{ref.shape[1:]}) {ref.dtype}; {_FIX}"
            )
        return x[:keep][np.arange(ref.shape[0]) % keep]

    return jax.tree_util.tree_map_with_path(lambda p, x, ref: fit(jax.tree_util.keystr(p), x, ref), state, template)
