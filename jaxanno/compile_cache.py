"""Persistent compilation cache: a second run loads its XLA programs from disk instead of compiling.

Where: ``$XDG_CACHE_HOME/jaxanno`` (``~/.cache/jaxanno`` when XDG_CACHE_HOME is unset), in a
subfolder named after the jax and jaxlib versions, the backend, the jaxanno version and the host
CPU, e.g. ``jax0.10.2-jaxlib0.10.2-cpu-jaxanno0.1.0-x86_64.3f2a91c0``.

Moving or switching it off, most specific first:
  1. ``--compilation_cache=PATH|off`` on ``launch.py`` and ``python -m jaxanno.label``
     (``configure(setting)`` from Python);
  2. a cache folder configured through JAX itself (``JAX_COMPILATION_CACHE_DIR`` or
     ``jax.config.update("jax_compilation_cache_dir", ...)`` before the first compilation): left
     exactly as the user set it, thresholds included;
  3. ``JAXANNO_CACHE_DIR=PATH`` (the root; the versioned subfolder goes inside), or
     ``JAXANNO_CACHE_DIR=off`` / empty to switch it off;
  4. the default location above.

When: on ``import jaxanno``. JAX reads its cache settings once, at the first compilation of the
process, so they must be in place before anything compiles; importing the package is the one
step that every entry point (``launch.py``, ``python -m jaxanno.label`` / ``.report``, the Python
API) takes before its first compilation, whereas a lazy hook would have to sit in every function
that can compile. Configuring only sets JAX options: it touches no device and starts no backend,
so ``jax.distributed.initialize`` can still follow. A later ``configure`` (the command-line flag)
calls JAX's ``reset_cache`` so the new folder takes effect even after a compilation.

Correctness of reuse: JAX keys every entry by a hash of the program's HLO (so every config value
that shapes the program or is baked into it), the compile options, the XLA flags, the jaxlib
version, the backend platform and version, and the device topology. The versioned subfolder adds
the jax, jaxlib and jaxanno versions and the host CPU's instruction-set flags (compiled CPU code
targets the machine it was built on; a home folder shared by different machines must not hand
one machine's code to another), and keeps stale programs of an old version in a folder that can
simply be deleted.

Small programs: JAX only writes programs that took at least 1 s to compile; jaxanno's CPU
programs often take less, so the threshold is set to 0 and the entry-size floor is removed
(unless the user set either through JAX).

Concurrent processes: JAX's file cache writes an entry with a plain ``write_bytes`` (no temporary
file and rename), so without a lock a second process could read a half-written entry. Setting a
size bound (``jax_compilation_cache_max_size``, here ``MAX_BYTES`` unless set through JAX) makes
JAX take a file lock around every read and write of the folder, so readers wait for writers; it
also evicts the least recently used entries beyond the bound. JAX needs the ``filelock`` package
for the bound, so jaxanno depends on it; an environment without it (installed by other means)
gets neither bound nor lock. An entry that cannot be read
whole (read while being written without the lock, or left truncated by a killed process) fails
to decompress: JAX warns and compiles the program again, never runs it; a truncated entry stays
until the folder is deleted. Only process 0 of a multi-host run writes entries.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import pathlib
import platform

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

ENV_VAR = "JAXANNO_CACHE_DIR"
OFF_VALUES = ("", "off", "none", "0", "false", "no")
MAX_BYTES = 2 << 30  # 2 GiB per versioned folder; a bound is also what turns JAX's file lock on
_JAX_DEFAULT_MIN_COMPILE_SECS = 1.0

# What this module last set (None: nothing yet), to tell its own settings from a user's.
_applied: dict[str, str | bool | None] = {"dir": None, "enabled": None}


def cache_root() -> pathlib.Path:
    """``$XDG_CACHE_HOME/jaxanno``, or ``~/.cache/jaxanno`` (the XDG base-directory convention)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "jaxanno"


def _version(dist: str, fallback: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return fallback


def _backend_name() -> str:
    """The backend this process will use, without starting it (that would forbid distributed init).

    JAX_PLATFORMS / jax_platforms when set, else the accelerator plugin that is installed. A wrong
    guess only misfiles entries: JAX's own key holds the exact platform and devices.
    """
    chosen = jax.config.jax_platforms
    if chosen:
        return chosen.split(",")[0].strip() or "cpu"
    for prefix, name in (("jax_cuda", "cuda"), ("jax_rocm", "rocm")):
        for major in ("13", "12", "7", "60"):
            if importlib.util.find_spec(f"{prefix}{major}_plugin") is not None:
                return name
    if importlib.util.find_spec("libtpu") is not None:
        return "tpu"
    return "cpu"


def _host_tag() -> str:
    """Machine architecture and a short hash of the CPU's instruction-set flags."""
    flags = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), flags)
    except OSError:
        pass
    return f"{platform.machine() or 'unknown'}.{hashlib.sha256(flags.encode()).hexdigest()[:8]}"


def folder_name() -> str:
    """The versioned subfolder: jax, jaxlib, backend, jaxanno, host CPU."""
    return (
        f"jax{jax.__version__}-jaxlib{_version('jaxlib', 'unknown')}-{_backend_name()}"
        f"-jaxanno{_version('jaxanno', 'dev')}-{_host_tag()}"
    )


def _is_off(value: str) -> bool:
    return value.strip().lower() in OFF_VALUES


def _jax_own() -> tuple[bool, str | None]:
    """(True, folder or None for off) when the cache was set up or switched off through JAX itself."""
    if not jax.config.jax_enable_compilation_cache and _applied["enabled"] is not False:
        return True, None
    current = jax.config.jax_compilation_cache_dir
    if current and current != _applied["dir"]:
        return True, current
    return False, None


def resolve(setting: str | None = None) -> str | None:
    """The folder `configure(setting)` would use, or None for off; changes nothing.

    setting: a folder (the root: the versioned subfolder goes inside), an off word
    (``off``, ``none``, empty, ...), or None to follow JAX's own setting, then JAXANNO_CACHE_DIR,
    then the default location.
    """
    if setting is None:
        own, where = _jax_own()
        if own:
            return where
        setting = os.environ.get(ENV_VAR)
    if setting is not None and _is_off(setting):
        return None
    root = pathlib.Path(setting).expanduser() if setting is not None else cache_root()
    return str(root / folder_name())


def configure(setting: str | None = None) -> str | None:
    """Point JAX's persistent compilation cache at `resolve(setting)`; returns that folder or None.

    Safe to call again (the command-line flag does, after the import-time default). A cache set up
    or switched off through JAX is left as it is, thresholds included, unless `setting` is given.
    """
    own, where = _jax_own()
    if setting is None and own:
        return where
    target = resolve(setting)
    if target == _applied["dir"] == jax.config.jax_compilation_cache_dir and _applied["enabled"] is not None:
        return target  # nothing changes
    if target is None:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_enable_compilation_cache", False)
    else:
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", target)
        if jax.config.jax_persistent_cache_min_compile_time_secs == _JAX_DEFAULT_MIN_COMPILE_SECS:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        if jax.config.jax_persistent_cache_min_entry_size_bytes == 0:
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no floor, no override
        if jax.config.jax_compilation_cache_max_size == -1 and importlib.util.find_spec("filelock"):
            jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)  # JAX needs filelock for a bound
    _applied.update(dir=target, enabled=target is not None)
    _jax_cache.reset_cache()  # JAX opens its cache once; a changed folder needs a fresh start
    return target


def location() -> str | None:
    """The folder in use now, or None when the cache is off."""
    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir


def help_text() -> str:
    """For ``--help``: where programs are cached and how to move or switch that off."""
    where = resolve()
    return (
        f"Persistent compilation cache: a folder, or 'off'. Now: {where or 'off'}. "
        f"Default: ${ENV_VAR} if set (a folder or 'off'), else {cache_root()}/<versions>."
    )


def compile_summary(log, program: str) -> str:
    """The launch's compile line, e.g. 'simulation program compiled 1 time(s), 1 XLA compilation(s)
    in all; compiling 0.4 s (all 1 loaded from the persistent cache)'.

    log: an `outputs.CompileLog` (counts include programs loaded from the persistent cache, which
    `log.hits` counts apart); program: the simulation program's name in it.
    """
    n_all, hits = sum(log.values()), sum(log.hits.values())
    if location() is None:
        source = "persistent cache off"
    elif n_all and hits == n_all:
        source = f"all {hits} loaded from the persistent cache"
    elif hits:
        source = f"{hits} of {n_all} loaded from the persistent cache"
    else:
        source = "none in the persistent cache yet"
    return (
        f"simulation program compiled {log.get(program, 0)} time(s), {n_all} XLA compilation(s) in all; "
        f"compiling {log.seconds:.1f} s ({source})"
    )
