"""A fitted model as tables: what the label command writes (formats in docs/labelling.md).

`output_frames` gives every table by file name: per task (label, posterior, risk), per
worker (labels, model accuracy, agreement, tasks in the batch), the confusion matrices in
long format, and the next batch as `next_batch` returned it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jaxanno.crowd.estimators import DawidSkene

OUTPUT_FILES = ("tasks.csv", "workers.csv", "worker_confusion.csv", "next_batch.csv")


def task_frame(ds: DawidSkene) -> pd.DataFrame:
    """tasks.csv: task, label, prob, risk, confident, n_labels, gold, then p_<class> columns."""
    table = ds.table_
    probas = ds.probas_.to_numpy()
    gold = ds.problem_.gold
    out = pd.DataFrame(
        {
            "task": np.asarray(table.tasks, dtype=object),
            "label": ds.labels_.to_numpy(),
            "prob": probas.max(1),
            "risk": ds.risks_.to_numpy(),
            "confident": ds.confident_.to_numpy(),
            "n_labels": table.item_count,
            "gold": gold.reindex(table.tasks).to_numpy() if gold is not None else None,
        }
    )
    posterior = pd.DataFrame(probas, columns=[f"p_{c}" for c in table.classes])
    return pd.concat([out, posterior], axis=1)


def worker_frame(ds: DawidSkene, batch: pd.DataFrame) -> pd.DataFrame:
    """workers.csv: worker, n_labels, accuracy (model), agreement (with labels), in_batch."""
    table = ds.table_
    in_batch = batch.groupby("worker").size().reindex(table.workers, fill_value=0).to_numpy()
    return pd.DataFrame(
        {
            "worker": np.asarray(table.workers, dtype=object),
            "n_labels": table.worker_count,
            "accuracy": ds.skills_.to_numpy(),
            "agreement": ds.agreement_.to_numpy(),
            "in_batch": in_batch,
        }
    )


def output_frames(ds: DawidSkene, batch: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{file name: table} of everything the command writes (see `OUTPUT_FILES`)."""
    return {
        "tasks.csv": task_frame(ds),
        "workers.csv": worker_frame(ds, batch),
        "worker_confusion.csv": ds.confusion_frame(),
        "next_batch.csv": batch,
    }
