"""Persistent compilation cache: reused by a second process, not by a different problem; where it
lives and how it is moved or switched off. Every case runs in fresh processes, as a user would."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jaxanno import compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One crowd fit, then the cache settings and what the process compiled and loaded, as JSON on the last line.
FIT = """
import json, sys
import jax, pandas as pd
from jaxanno import compile_cache, outputs
from jaxanno.crowd import DawidSkene
if len(sys.argv) > 2:
    compile_cache.configure(sys.argv[2])
with outputs.count_compiles() as log:
    if sys.argv[1] != "-":  # "-": only report the settings
        DawidSkene(n_iter=20).fit_predict(pd.read_csv(sys.argv[1]))
print(json.dumps({
    "location": compile_cache.location(),
    "programs": dict(log),
    "hits": dict(log.hits),
    "compiled": log.compiled(),
    "min_compile_secs": jax.config.jax_persistent_cache_min_compile_time_secs,
    "max_size": jax.config.jax_compilation_cache_max_size,
}))
"""

_JAX_VARS = ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE", "JAXANNO_CACHE_DIR", "XDG_CACHE_HOME")


def _start(csv: pathlib.Path | str, *extra: str, **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if k not in _JAX_VARS}
    return subprocess.Popen(
        [sys.executable, "-c", FIT, str(csv), *extra],
        cwd=ROOT,  # imports this checkout's jaxanno
        env={**clean, "JAX_PLATFORMS": "cpu", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    result["stderr"] = err
    return result


def _fit(csv: pathlib.Path | str, *extra: str, **env: str) -> dict:
    return _result(_start(csv, *extra, **env))


def _table(path: pathlib.Path, num_classes: int, seed: int) -> pathlib.Path:
    """A small crowd table: 24 tasks x 4 workers, labels right 80% of the time."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(num_classes, size=24)
    rows = [
        (t, f"w{w}", int(truth[t]) if rng.random() < 0.8 else int(rng.integers(num_classes)))
        for t in range(24)
        for w in range(4)
    ]
    pd.DataFrame(rows, columns=["task", "worker", "label"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same fit in two processes sharing an empty cache folder: named by JAXANNO_CACHE_DIR in
    the first, found at the default XDG location in the second."""
    tmp = tmp_path_factory.mktemp("cache")
    csv = _table(tmp / "two_classes.csv", num_classes=2, seed=0)
    root = tmp / "xdg" / "jaxanno"
    first = _fit(csv, JAXANNO_CACHE_DIR=str(root))
    second = _fit(csv, XDG_CACHE_HOME=str(tmp / "xdg"))
    return tmp, root, first, second


@pytest.mark.slow
def test_second_process_loads_every_program_from_the_cache(two_runs):
    _, root, first, second = two_runs
    assert first["location"] == second["location"] == str(root / compile_cache.folder_name())
    assert first["programs"].get("jit(solve)") == 1, first  # the EM program, compiled here
    assert first["hits"] == {} and first["compiled"] == sum(first["programs"].values())
    assert any(p.name.startswith("jit_solve-") for p in pathlib.Path(first["location"]).iterdir())
    assert second["compiled"] == 0, second
    assert second["hits"] == second["programs"] == first["programs"]
    assert first["min_compile_secs"] == 0.0  # small CPU programs are cached too
    if importlib.util.find_spec("filelock"):
        assert first["max_size"] == compile_cache.MAX_BYTES  # the bound that turns JAX's file lock on


@pytest.mark.slow
def test_concurrent_processes_share_an_empty_folder(two_runs):
    tmp, _, _, _ = two_runs
    env = {"JAXANNO_CACHE_DIR": str(tmp / "shared")}
    procs = [_start(tmp / "two_classes.csv", **env) for _ in range(2)]
    results = [_result(p) for p in procs]
    for r in results:  # JAX warns "Error reading/writing persistent compilation cache entry ..."
        assert "persistent compilation cache" not in r["stderr"], r["stderr"][-2000:]
    assert any(p.name.startswith("jit_solve-") for p in pathlib.Path(results[0]["location"]).iterdir())


@pytest.mark.slow
def test_a_different_problem_compiles_anew(two_runs):
    tmp, root, first, _ = two_runs
    csv = _table(tmp / "three_classes.csv", num_classes=3, seed=1)
    other = _fit(csv, JAXANNO_CACHE_DIR=str(root))
    assert other["programs"].get("jit(solve)") == 1
    assert "jit(solve)" not in other["hits"], other  # other shapes: another program, never the cached one


@pytest.mark.slow
def test_off_writes_nothing(two_runs):
    tmp, _, _, _ = two_runs
    home = tmp / "xdg_off"
    result = _fit(tmp / "two_classes.csv", XDG_CACHE_HOME=str(home), JAXANNO_CACHE_DIR="off")
    assert result["location"] is None and result["hits"] == {} and result["compiled"] > 0
    assert not home.exists()


@pytest.mark.slow
def test_jax_own_setting_is_kept_unless_a_folder_is_given(tmp_path):
    own = str(tmp_path / "jax_own")
    kept = _fit("-", JAXANNO_CACHE_DIR=str(tmp_path / "unused"), JAX_COMPILATION_CACHE_DIR=own)
    assert kept["location"] == own and kept["min_compile_secs"] == 1.0  # JAX's thresholds untouched too
    moved = _fit("-", str(tmp_path / "flag"), JAX_COMPILATION_CACHE_DIR=own)  # what the command-line flag does
    assert moved["location"] == str(tmp_path / "flag" / compile_cache.folder_name())


def test_help_names_the_folder_and_the_switch():
    text = compile_cache.help_text()
    assert compile_cache.ENV_VAR in text and "off" in text and str(compile_cache.cache_root()) in text
    assert compile_cache.resolve("off") is None and compile_cache.resolve("") is None
    assert compile_cache.resolve("/x") == str(pathlib.Path("/x") / compile_cache.folder_name())


def test_a_cache_set_up_or_switched_off_through_jax_is_followed(tmp_path):
    import jax

    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache)
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))
        assert compile_cache.resolve() == str(tmp_path)
        jax.config.update("jax_enable_compilation_cache", False)
        assert compile_cache.resolve() is None
        assert compile_cache.resolve(str(tmp_path / "x")) == str(tmp_path / "x" / compile_cache.folder_name())
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_enable_compilation_cache", before[1])
