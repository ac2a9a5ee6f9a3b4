"""Accuracy of the label command's models against gold: RTE, Bluebirds and sparse projects.

Models: majority vote (jaxanno's, equal to crowd-kit's), crowd-kit's DawidSkene, and the
label command's three models (`jaxanno.label.build_model`): 'ds' (crowd-kit's model in
jaxanno, which also reports risks), 'reference' (the paper's) and 'pooled' (the default:
workers shrunk toward the crowd's pooled confusion). Sparse projects are the tests'
`sparse_labels` (1-3 labels per task, worker accuracy U(0.55, 0.95)), several seeds each.

Per model: accuracy (mean over seeds), its difference to majority vote (mean and worst
seed), tasks called confident (risk < 0.1), the accuracy of those, and how many tasks with
weak evidence (one label, or two that disagree) were called confident.

    python benchmarks/bench_label_accuracy.py [--seeds 8] [--out DIR | --save]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import warnings

import numpy as np
import pandas as pd
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene

import common
from jaxanno import crowd, label

SPARSE = ((400, 30, 2), (400, 30, 3), (1000, 50, 2), (600, 20, 4), (300, 10, 2))  # tasks, workers, classes
MODELS = ("majority vote", "crowd-kit DS", "ds", "reference", "pooled (default)")


def _sparse_labels(*args, **kwargs):
    """`tests/helpers.py`'s sparse project, loaded by file path (as `common.simulate_labels`)."""
    spec = importlib.util.spec_from_file_location(
        "jaxanno_test_helpers", os.path.join(common.ROOT, "tests", "helpers.py")
    )
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers.sparse_labels(*args, **kwargs)


def _fit(model: str, labels: pd.DataFrame) -> tuple[pd.Series, pd.Series | None]:
    """(labels, confident flags or None) of one model on one table."""
    if model == "majority vote":
        return crowd.MajorityVote().fit_predict(labels), None
    if model == "crowd-kit DS":
        return CrowdKitDawidSkene(n_iter=100, tol=1e-5).fit_predict(labels), None
    ds = label.build_model(model.split()[0]).fit(labels)
    return ds.labels_, ds.confident_


def score(labels: pd.DataFrame, gold: pd.Series) -> dict[str, dict[str, float]]:
    """{model: accuracy, confident, confident_accuracy, weak_confident} on one table."""
    per_task = labels.groupby("task").label
    weak = (per_task.size() == 1) | ((per_task.size() == 2) & (per_task.nunique() == 2))
    out = {}
    for model in MODELS:
        pred, confident = _fit(model, labels)
        right = pred.reindex(gold.index).to_numpy() == gold.to_numpy()
        row = {"accuracy": float(right.mean())}
        if confident is not None:
            sure = confident.reindex(gold.index).to_numpy(bool)
            row["confident"] = int(confident.sum())
            row["confident_accuracy"] = float(right[sure].mean()) if sure.any() else float("nan")
            row["weak_confident"] = int((confident & weak.reindex(confident.index)).sum())
        out[model] = row
    return out


def summarise(data: str, runs: list[dict[str, dict[str, float]]]) -> list[dict]:
    """One row per model: means over the runs (seeds), worst difference to majority vote."""
    votes = np.array([r["majority vote"]["accuracy"] for r in runs])
    rows = []
    for model in MODELS:
        acc = np.array([r[model]["accuracy"] for r in runs])
        row = {"data": data, "model": model, "accuracy": float(acc.mean())}
        if model != "majority vote":
            row["vs_vote_mean"] = float((acc - votes).mean())
            row["vs_vote_worst"] = float((acc - votes).min())
        if "confident" in runs[0][model]:
            row["confident"] = float(np.mean([r[model]["confident"] for r in runs]))
            row["confident_accuracy"] = float(np.nanmean([r[model]["confident_accuracy"] for r in runs]))
            row["weak_confident"] = int(sum(r[model]["weak_confident"] for r in runs))
        rows.append(row)
    return rows


def _datasets(seeds: int):
    for name in ("rte", "bluebirds"):
        labels = pd.read_csv(os.path.join(common.ROOT, "tests", "data", f"{name}_labels.csv"))
        gold = pd.read_csv(os.path.join(common.ROOT, "tests", "data", f"{name}_gold.csv")).set_index("task")["label"]
        yield name, [(labels, gold)]
    for n, w, k in SPARSE:
        yield f"sparse {n} tasks, {w} workers, K={k}", [_sparse_labels(n, w, k, seed=s) for s in range(seeds)]


def _markdown(rows: list[dict], env: dict, seeds: int) -> str:
    columns = ["data", "model", "accuracy", "vs_vote_mean", "vs_vote_worst", "confident", "confident_accuracy"]
    return (
        "# Label command models against gold\n\n"
        f"{common.env_line(env)}. Sparse projects: 1-3 labels per task, {seeds} seeds each (means; "
        "vs_vote_worst is the worst seed); confident: risk < 0.1; weak_confident: tasks with one label or two "
        "disagreeing labels called confident (sum over seeds).\n\n"
        + common.markdown_table(rows, [*columns, "weak_confident"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="sparse projects per configuration")
    common.add_output_args(parser)
    args = parser.parse_args()
    out = common.output_dir(args)
    warnings.filterwarnings("ignore")  # crowd-kit's pandas deprecation warnings
    env = common.environment()
    rows = []
    for data, tables in _datasets(args.seeds):
        rows += summarise(data, [score(labels, gold) for labels, gold in tables])
        for row in rows[-len(MODELS) :]:
            print(common.rounded(row), flush=True)
        common.write_results(
            out, "label_accuracy", {"environment": env, "results": rows}, _markdown(rows, env, args.seeds)
        )


if __name__ == "__main__":
    main()
