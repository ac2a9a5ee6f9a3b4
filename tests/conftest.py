"""Shared tiny fixtures. Shapes are tiny so that every compile takes a second or two."""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile

# One persistent compilation cache for the whole test session, shared with the processes
# that CLI tests start (they inherit the variable), and never the user's own cache. Set
# before jaxanno is imported: the cache is configured at import.
_SESSION_CACHE = tempfile.mkdtemp(prefix="jaxanno-test-cache-")
os.environ["JAXANNO_CACHE_DIR"] = _SESSION_CACHE
atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)

# The suite compiles a few thousand tiny programs, and on a 2-core CPU their compilation (mostly
# LLVM code generation) is most of its time: XLA's CPU back end at optimisation level 0 halves it
# (measured: the ds_model whole-simulation vmap == loop test, 36 s -> 19 s CPU). The programs are
# the same HLO; only their machine code is less optimised. The optimised code users run is what
# the README's commands and the benchmarks exercise; JAXANNO_TEST_XLA_OPT=default runs the suite
# on it too. Set before JAX starts its CPU client (which reads XLA_FLAGS once); CLI tests' child
# processes inherit it. A level set by the user in XLA_FLAGS is kept.
_OPT_FLAG = "--xla_backend_optimization_level"
_TEST_OPT = os.environ.get("JAXANNO_TEST_XLA_OPT", "0")
if _TEST_OPT not in ("0", "default"):
    raise RuntimeError(f"JAXANNO_TEST_XLA_OPT: expected '0' (the default) or 'default', found {_TEST_OPT!r}")
if _TEST_OPT == "0" and _OPT_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_OPT_FLAG}=0".strip()


def xla_flags(*extra: str) -> str:
    """This session's XLA_FLAGS plus `extra`: for a child process that needs more flags."""
    return " ".join([os.environ.get("XLA_FLAGS", ""), *extra]).strip()


import chex  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxanno import data as data_lib  # noqa: E402
from jaxanno import types  # noqa: E402

VERTEBRATE4 = ["n02138441", "n02326432", "n01558993", "n02009229"]  # 4 classes of split 1


@pytest.fixture(scope="module", autouse=True)
def release_compiled_programs():
    """Free every compiled program when a test module ends.

    Each XLA CPU executable keeps about 20 memory mappings while any jit cache holds it, and a
    process may have at most `vm.max_map_count` (65530 by default) of them: a full session
    compiles a few thousand programs, and without this XLA segfaults late in the session.
    Programs a later module needs again come back from the session's persistent cache.
    """
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(autouse=True)
def clear_trace_counter():
    chex.clear_trace_counter()
    yield


def tiny_static(**overrides) -> types.Static:
    base = dict(
        num_items=48,
        num_prototypes=16,
        num_classes=4,
        num_workers=6,
        feature_dim=6,
        max_annotations=3,
        hit_size=5,
        hits_per_step=2,
        n_prototype_per_class=4,
    )
    base.update(overrides)
    return types.Static(**base)


def tiny_dataset(static: types.Static, seed: int = 0, separation: float = 3.0) -> types.Dataset:
    """Gaussian blobs with the real-crowd counts of 4 Vertebrate classes."""
    rng = np.random.default_rng(seed)
    n, p, k, d = static.num_items, static.num_prototypes, static.num_classes, static.feature_dim
    labels = np.concatenate([np.arange(n) % k, np.arange(p) % k]).astype(np.int32)
    means = rng.normal(size=(k, d)) * separation
    feats = (means[labels] + rng.normal(size=(n + p, d))).astype(np.float32)
    fs = data_lib.FeatureSet(
        features=feats,
        labels=labels,
        num_items=n,
        class_names=VERTEBRATE4[:k],
        wnids=VERTEBRATE4[:k],
        description="test blobs",
    )
    return data_lib.make_dataset(fs, "structured_noise", "homegeneous_workers")


def tiny_learner(**overrides) -> types.LearnerStatic:
    """A small efficient_annotation-style learner (pseudo-labels, global early stop)."""
    from jaxanno import learner

    base = dict(model=learner.MLP(num_classes=4, hidden_sizes=(8,)), batch_size=16, max_epochs=20, eval_every=5,
                semi_supervised="pseudolabel", early_stop_scope="global")  # fmt: skip
    base.update(overrides)
    return types.LearnerStatic(**base)


@pytest.fixture(scope="session")
def static():
    return tiny_static()


@pytest.fixture(scope="session")
def dataset(static):
    return tiny_dataset(static)


@pytest.fixture(scope="session")
def params():
    return types.make_params()


def random_annotations(rng, n, a, w, k, fill=0.7):
    """(N, A) worker / label arrays with -1 in empty slots (filled left to right)."""
    counts = rng.binomial(a, fill, size=n)
    workers = np.full((n, a), -1, np.int32)
    labels = np.full((n, a), -1, np.int32)
    for i in range(n):
        ws = rng.choice(w, size=counts[i], replace=False)
        workers[i, : counts[i]] = ws
        labels[i, : counts[i]] = rng.integers(0, k, counts[i])
    return workers, labels


def annotation_state(workers, labels, num_workers):
    valid = workers >= 0
    wc = np.bincount(workers[valid], minlength=num_workers).astype(np.int32)
    return types.AnnotationState(
        worker=jax.device_put(workers),
        label=jax.device_put(labels),
        item_count=jax.device_put(valid.sum(1).astype(np.int32)),
        worker_count=jax.device_put(wc),
    )
