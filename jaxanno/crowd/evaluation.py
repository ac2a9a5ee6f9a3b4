"""Scoring a fitted model against known true labels (host side, pandas).

`evaluate` reports the accuracy of a fitted `DawidSkene`'s labels, of the ones it calls
confident, and of majority vote on the same labels, so a project can check on a few
hundred known answers that the model helps. The true labels are only compared with, never
fitted on; tasks whose label was given to the fit as gold are left out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from jaxanno.crowd.estimators import DawidSkene, MajorityVote
from jaxanno.crowd.table import LabelTable, Problem, check_gold


def check_truth(true_labels: Any, problem: Problem, source: str = "true_labels") -> pd.Series:
    """True labels (Series task -> label, or a frame with task and label), checked against
    the problem's tasks and classes, without the tasks clamped as gold (their label is
    given, not estimated)."""
    truth = check_gold(true_labels, problem.table.tasks, problem.table.classes, source)
    if problem.gold is not None:
        truth = truth[~truth.index.isin(problem.gold.index)]
    if truth.empty:
        raise ValueError(f"{source}: every task in it is also a gold task of the fit; expected tasks it estimated")
    return truth


def evaluate(model: DawidSkene, true_labels: Any, source: str = "true_labels") -> dict[str, Any]:
    """Accuracy of a fitted model on `true_labels`, on its confident tasks, and of majority vote.

    Returns:
      {'source', 'tasks', 'accuracy', 'confident_tasks', 'confident_accuracy' (None when
      none is confident), 'majority_vote_tasks' (the true-labelled tasks that have a label:
      feature-only tasks count for the model only), 'majority_vote_accuracy'}.
    """
    truth = check_truth(true_labels, model.problem_, source)
    table = model.table_
    right = model.labels_.reindex(truth.index).to_numpy() == truth.to_numpy()
    confident = model.confident_.reindex(truth.index).to_numpy(bool)
    voted = truth[truth.index.isin(table.tasks[table.item_count > 0])]
    votes = MajorityVote(classes=table.classes, duplicates="keep_all").fit(_kept_labels(table)).labels_
    return {
        "source": source,
        "tasks": int(right.size),
        "accuracy": float(right.mean()),
        "confident_tasks": int(confident.sum()),
        "confident_accuracy": float(right[confident].mean()) if confident.any() else None,
        "majority_vote_tasks": int(len(voted)),
        "majority_vote_accuracy": float((votes.reindex(voted.index) == voted).mean()) if len(voted) else None,
    }


def _kept_labels(table: LabelTable) -> pd.DataFrame:
    """The labels a table kept (after its duplicate policy), as a task, worker, label frame."""
    return pd.DataFrame(
        {
            "task": table.tasks[table.task_code],
            "worker": table.workers[table.worker_code],
            "label": table.classes[table.label_code],
        }
    )
