"""Helpers shared by tests and benchmarks: synthetic crowd label tables."""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_labels(
    num_tasks: int,
    num_workers: int,
    num_classes: int,
    labels_per_task: int,
    seed: int = 0,
    accuracy: tuple[float, float] = (0.55, 0.95),
) -> tuple[pd.DataFrame, pd.Series]:
    """A synthetic crowd table for examples, tests and benchmarks (NumPy, host side).

    Worker j answers correctly with probability a_j ~ U(accuracy), otherwise uniformly
    among the other classes; each task gets `labels_per_task` distinct workers.

    Returns:
      (labels DataFrame with columns task, worker, label; gold Series task -> label).
    """
    if labels_per_task > num_workers:
        raise ValueError(f"labels_per_task: expected at most num_workers ({num_workers}), found {labels_per_task}")
    rng = np.random.default_rng(seed)
    truth = rng.integers(num_classes, size=num_tasks)
    skill = rng.uniform(*accuracy, size=num_workers)
    base = rng.integers(num_workers, size=num_tasks)
    coprime = np.array([s for s in range(1, num_workers + 1) if np.gcd(s, num_workers) == 1])
    stride = rng.choice(coprime, size=num_tasks)  # distinct workers: base + a * stride mod W
    worker = (base[:, None] + np.arange(labels_per_task) * stride[:, None]) % num_workers
    right = rng.random(worker.shape) < skill[worker]
    wrong = (truth[:, None] + rng.integers(1, max(num_classes, 2), size=worker.shape)) % num_classes
    label = np.where(right, truth[:, None], wrong)
    tasks = np.repeat(np.arange(num_tasks), labels_per_task)
    frame = pd.DataFrame({"task": tasks, "worker": worker.ravel(), "label": label.ravel()})
    return frame, pd.Series(truth, index=pd.Index(np.arange(num_tasks), name="task"), name="label")


def sparse_labels(
    num_tasks: int,
    num_workers: int,
    num_classes: int,
    seed: int = 0,
    max_labels: int = 3,
    accuracy: tuple[float, float] = (0.55, 0.95),
) -> tuple[pd.DataFrame, pd.Series]:
    """A sparse project: `simulate_labels` with `max_labels` per task, of which every task
    keeps its first 1..max_labels (uniformly many), as when most tasks were asked once.

    Returns:
      (labels DataFrame with columns task, worker, label; gold Series task -> label).
    """
    frame, gold = simulate_labels(num_tasks, num_workers, num_classes, max_labels, seed=seed, accuracy=accuracy)
    keep = np.random.default_rng([seed, 1]).integers(1, max_labels + 1, size=num_tasks)
    slot = frame.groupby("task").cumcount().to_numpy()
    return frame[slot < keep[frame.task.to_numpy()]].reset_index(drop=True), gold
