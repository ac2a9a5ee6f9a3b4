"""Shared helpers of the benchmark scripts: timing, environment, result files, workloads.

Benchmarks print ratios measured side by side in one run (these machines are noisy), the
device and library versions, and write JSON plus markdown under an output folder.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from jaxanno import outputs, types  # noqa: E402

# ImageNet100-sized annotation sets: N items, A slots, K classes, W workers.
SIZES = {
    "vertebrate": dict(num_items=23220, max_annotations=3, num_classes=18, num_workers=50),
    "imagenet100": dict(num_items=125689, max_annotations=3, num_classes=100, num_workers=50),
}
H200_BANDWIDTH = 4.2e12  # bytes / s, a measured device-to-device copy rate


def environment() -> dict[str, str]:
    env = outputs.environment()
    try:
        import crowdkit

        env["crowd-kit"] = crowdkit.__version__
    except ImportError:
        env["crowd-kit"] = "not installed"
    env["numpy"] = np.__version__
    return env


def block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, min_seconds: float = 0.0) -> dict[str, float]:
    """Median and min wall time of `fn()` (results blocked on), after `warmup` calls."""
    for _ in range(warmup):
        block(fn())
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}


def aot(fn: Callable, *args: Any, static_argnums=()) -> tuple[Callable, float]:
    """Compile `fn` ahead of time for `args`; returns (compiled, compile seconds)."""
    jitted = jax.jit(fn, static_argnums=static_argnums)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def synthetic_annotations(
    num_items: int, max_annotations: int, num_classes: int, num_workers: int, seed: int = 0, accuracy: float = 0.7
):
    """(truth, workers, labels): every item has A labels from distinct workers, each right
    with probability `accuracy`, otherwise uniform over the classes (numpy)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, num_classes, num_items)
    order = np.argsort(rng.random((num_items, num_workers)), axis=1)[:, :max_annotations]
    workers = order.astype(np.int32)
    noise = rng.integers(0, num_classes, (num_items, max_annotations))
    labels = np.where(rng.random((num_items, max_annotations)) < accuracy, truth[:, None], noise).astype(np.int32)
    return truth, workers, labels


def annotation_state(workers: np.ndarray, labels: np.ndarray, num_workers: int) -> types.AnnotationState:
    valid = workers >= 0
    return types.AnnotationState(
        worker=jnp.asarray(workers),
        label=jnp.asarray(labels),
        item_count=jnp.asarray(valid.sum(-1).astype(np.int32)),
        worker_count=jnp.asarray(np.bincount(workers[valid], minlength=num_workers).astype(np.int32)),
    )


def write_results(out_dir: str, name: str, payload: dict[str, Any], markdown: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    outputs.atomic_write_json(os.path.join(out_dir, f"{name}.json"), payload)
    outputs.atomic_write_text(os.path.join(out_dir, f"{name}.md"), markdown + "\n")


def env_lines(env: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in env.items())


def markdown_table(rows: list[dict[str, Any]], columns: list[str], headers: list[str] | None = None) -> str:
    headers = headers or columns
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def dump(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, default=str)
