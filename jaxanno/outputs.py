"""Writing run outputs: atomic file writes, compile counting, device and version info."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pathlib
import platform
import threading
from collections.abc import Iterator
from typing import Any

import jax
import pandas as pd

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def atomic_write_bytes(path: os.PathLike, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_text(path: os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def atomic_write_csv(path: os.PathLike, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def environment() -> dict[str, str]:
    """Device and library versions, for results that quote timings."""
    import flax
    import optax

    dev = jax.devices()[0]
    return {
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', dev.platform)}",
        "device_count": str(jax.device_count()),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "cpu_count": str(os.cpu_count()),
    }


class CompileLog(collections.Counter):
    """XLA programs built, by compiled function name, plus their total time in `seconds`.

    A program loaded from the persistent compilation cache counts too (it is a compilation request
    that the in-process cache could not answer); `hits` counts those apart, so
    ``log[name] - log.hits[name]`` programs were compiled by XLA.
    """

    seconds: float = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hits: collections.Counter = collections.Counter()

    def compiled(self) -> int:
        """Programs XLA compiled (not loaded from the persistent cache)."""
        return sum(self.values()) - sum(self.hits.values())


@contextlib.contextmanager
def count_compiles() -> Iterator[CompileLog]:
    """Count (and time) the XLA compilations inside the block, telling persistent-cache hits apart.

    JAX records a cache hit (a plain event, without the function's name) inside the same call, on
    the same thread, that then records the backend compile duration of that function; the hit is
    held per thread until that duration event names it.
    """
    counter = CompileLog()
    pending = threading.local()

    def on_event(event: str, **kwargs: Any) -> None:
        if event == _CACHE_HIT_EVENT:
            pending.hit = True

    def on_duration(event: str, duration: float, **kwargs: Any) -> None:
        if event == _COMPILE_EVENT:
            name = str(kwargs.get("fun_name", "?"))
            counter[name] += 1
            counter.seconds += duration
            if getattr(pending, "hit", False):
                counter.hits[name] += 1
                pending.hit = False

    jax.monitoring.register_event_listener(on_event)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)
        jax.monitoring.unregister_event_listener(on_event)
