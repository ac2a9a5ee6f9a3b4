"""Writing run outputs: atomic file writes, the workdir lock, stale temporary files, free
space, an append-only CSV stream, compile counting, device and version info.

Temporary files are named ``.<name>.tmp<pid>`` next to their target (`temp_path`); a write
that fails for any reason (a full disk, Ctrl-C) removes its own, and `sweep_stale_temp`
removes those left by a killed process (its pid is gone, or the file is over an hour old).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import json
import os
import pathlib
import platform
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import jax
import pandas as pd

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


LOCK_FILE = ".lock"
STALE_SECONDS = 3600.0  # a temporary file this old is debris even if its pid is alive again
_TEMP_NAME = re.compile(r"^\..+\.tmp(\d+)$")


class WorkdirError(OSError):
    """A workdir that cannot be used: busy, not a folder, not writable, or out of space.

    The message starts with the folder and says what to do.
    """


def temp_path(path: os.PathLike) -> pathlib.Path:
    """The temporary file an atomic write of `path` goes through: ``.<name>.tmp<pid>``."""
    path = pathlib.Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_bytes(path: os.PathLike, data: bytes, fsync: bool = False) -> None:
    """Write via a temporary file and rename, so readers never see half a file.

    On any exception (a full disk, an interrupt) the temporary file is removed and the
    previous `path`, if any, is left as it was. `fsync` forces the bytes to disk before the
    rename (a checkpoint must survive a power cut, not only a killed process).
    """
    path = pathlib.Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)  # a failed write or fsync does not say which file
        raise


def atomic_write_text(path: os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def atomic_write_csv(path: os.PathLike, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def append_csv(path: os.PathLike, frame: pd.DataFrame) -> None:
    """Append `frame`'s rows to a CSV file (with a header when the file is new or empty).

    One write call per frame, flushed before returning, so the rows of every finished call
    survive a killed process; only a row being appended at that instant can be cut short.
    """
    path = pathlib.Path(path)
    new = not path.exists() or path.stat().st_size == 0
    text = frame.to_csv(index=False, header=new)
    with open(path, "a") as f:
        f.write(text)
        f.flush()


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _lock_error(folder: pathlib.Path, err: OSError) -> WorkdirError:
    return WorkdirError(
        f"{folder}: cannot use this folder as a workdir ({err.strerror or err}); choose another --workdir"
    )


def ensure_workdir(folder: os.PathLike) -> pathlib.Path:
    """Create `folder` (and its parents) if needed.

    Raises:
      WorkdirError: it is a file, or cannot be created or written (read-only disk, permissions).
    """
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WorkdirError(f"{folder}: exists and is not a folder; choose another --workdir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _lock_error(folder, err) from None
    return folder


@contextlib.contextmanager
def workdir_lock(folder: os.PathLike) -> Iterator[None]:
    """Hold an exclusive OS lock (`fcntl.flock`) on ``folder/.lock`` for the block.

    The lock belongs to the open file, so the OS releases it when the process ends in any
    way, kill -9 included; the file keeps the holder's pid for the message a second
    launch gets. A filesystem without locks gets a warning and no lock.

    Raises:
      WorkdirError: another process holds the lock (the message names its pid), or the
        lock file cannot be created.
    """
    folder = pathlib.Path(folder)
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise _lock_error(folder, err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise WorkdirError(
                f"{folder}: in use by another launch (pid {holder}); wait for it to end or choose another --workdir"
            ) from None
        except OSError as err:  # e.g. ENOLCK on a network filesystem without locks
            print(
                f"warning: {folder}: cannot lock the workdir ({err.strerror or err}); running unlocked", file=sys.stderr
            )
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale_temp(folder: os.PathLike, max_age: float = STALE_SECONDS) -> list[pathlib.Path]:
    """Remove ``.<name>.tmp<pid>`` files in `folder` and its subfolders one level down whose
    process is gone or that are older than `max_age` seconds; returns what was removed."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    removed, now = [], time.time()
    for path in [*folder.glob(".*.tmp*"), *folder.glob("*/.*.tmp*")]:
        match = _TEMP_NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        with contextlib.suppress(OSError):
            if not _pid_alive(int(match.group(1))) or now - path.stat().st_mtime > max_age:
                path.unlink()
                removed.append(path)
    return removed


def check_free_space(folder: os.PathLike, needed: int, what: str) -> None:
    """Raise `WorkdirError` (errno ENOSPC) unless `folder`'s disk has `needed` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        err = WorkdirError(
            f"{folder}: not enough free space to write {what}: {needed} bytes needed, {free} free; "
            "free some space and rerun the same command"
        )
        err.errno = errno.ENOSPC
        raise err


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
