"""The label command's default model (`DawidSkene.pooled`), gold-built priors that keep their
weight, majority-vote ties as crowd-kit breaks them, and the --evaluate report.

Sparse projects are `tests.helpers.sparse_labels`: 1-3 labels per task from workers of
accuracy U(0.55, 0.95). One table shape (400 tasks, 30 workers, 3 slots, 2 classes) is
shared by most tests, so the EM and batch programs compile once.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote

from jaxanno import crowd, label
from tests import reference
from tests.helpers import simulate_labels, sparse_labels

DATA = pathlib.Path(__file__).parent / "data"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
SPARSE_SEEDS = (0, 1, 2)


def _accuracy(pred: pd.Series, gold: pd.Series) -> float:
    return float((pred.reindex(gold.index).to_numpy() == gold.to_numpy()).mean())


def _weak_evidence(labels: pd.DataFrame) -> pd.Series:
    """Tasks with one label, or with two labels that disagree."""
    per_task = labels.groupby("task").label
    return (per_task.size() == 1) | ((per_task.size() == 2) & (per_task.nunique() == 2))


@pytest.fixture(scope="module")
def sparse_runs():
    """(labels, gold, the label command's result with its defaults) per sparse project."""
    runs = []
    for seed in SPARSE_SEEDS:
        labels, gold = sparse_labels(400, 30, 2, seed=seed)
        runs.append((labels, gold, label.run(labels, None, quiet=True)))
    return runs


def test_default_is_at_least_majority_vote_and_never_confident_on_weak_evidence(sparse_runs):
    ours = votes = 0.0
    for labels, gold, result in sparse_runs:
        tasks = result["frames"]["tasks.csv"].set_index("task")
        assert result["summary"]["model"] == "pooled"
        weak = _weak_evidence(labels).reindex(tasks.index)
        assert weak.sum() > 150 and tasks.confident.sum() > 40
        assert not (tasks.confident & weak).any()
        ours += _accuracy(tasks.label, gold)
        votes += _accuracy(crowd.MajorityVote().fit_predict(labels), gold)
    assert ours >= votes
    labels, gold, _ = sparse_runs[0]
    classic = crowd.DawidSkene().fit(labels)  # what the default used to be: sure of itself on one label
    assert (classic.confident_ & _weak_evidence(labels).reindex(classic.confident_.index)).sum() > 20


def _pooled_reference(workers, labels, num_workers, k, strength, n_iter=100, tol=1e-5):
    """Float64 loops: classic EM (majority-vote start, soft M-step, uniform class prior,
    ELBO rule) under a prior of `strength` x the pooled confusion, re-estimated after
    every solve until no entry moves by 1e-3 (at most 20 solves)."""
    valid, uniform = workers >= 0, np.full(k, 1.0 / k)
    population = reference.confusion(np.where(np.eye(k, dtype=bool), 2.0, 1.0 / k)[None])[0]
    rounds = 0
    while rounds < 20:
        rounds += 1
        prior = np.broadcast_to(strength * population, (num_workers, k, k))
        counts = reference.soft_counts(workers, labels, reference.majority_vote(labels, valid, k), num_workers, k)
        history = []
        while len(history) < n_iter and (len(history) < 2 or history[-1] - history[-2] >= tol):
            log_b = reference.log_belief(prior + counts, workers, labels, log_prior=np.log(uniform), log_eps=0.0)
            post = reference.softmax(log_b)
            counts = reference.soft_counts(workers, labels, post, num_workers, k)
            history.append(reference.elbo_per_label(workers, labels, post, prior + counts, uniform))
        pooled = counts.sum(0)
        updated = pooled / pooled.sum(1, keepdims=True)
        moved, population = np.abs(updated - population).max(), updated
        if moved < 1e-3:
            break
    return post, prior + counts, population, rounds, history


def test_pooled_fit_matches_the_float64_numpy_hierarchical_em():
    labels, _ = sparse_labels(150, 12, 3, seed=4)
    tasks, workers = pd.Index(labels.task.unique()), pd.Index(labels.worker.unique())
    slot = labels.groupby("task", sort=False).cumcount().to_numpy()
    w_codes = np.full((len(tasks), slot.max() + 1), -1)
    l_codes = np.full_like(w_codes, -1)
    w_codes[tasks.get_indexer(labels.task), slot] = workers.get_indexer(labels.worker)
    l_codes[tasks.get_indexer(labels.task), slot] = labels.label.to_numpy()
    post, alpha, population, rounds, history = _pooled_reference(w_codes, l_codes, len(workers), 3, 20.0)
    assert min(abs(np.diff(history) - 1e-5)) > 1e-7  # the last solve's stop is not a float32 coin toss
    ds = crowd.DawidSkene.pooled().fit(labels)
    assert ds.population_rounds_ == rounds > 2 and ds.n_iter_ == len(history)
    np.testing.assert_allclose(ds.population_, population, atol=1e-4)
    np.testing.assert_allclose(ds.probas_.loc[tasks].to_numpy(), post, atol=1e-4)
    order = ds.table_.workers.get_indexer(workers)
    np.testing.assert_allclose(np.asarray(ds.alpha_)[order], alpha, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ds.prior_alpha_.sum(-1), 20.0, rtol=1e-5)  # 20 pseudo-labels per row


def _veteran_and_newcomer() -> pd.DataFrame:
    """'vet' labels tasks 0-159 (right 19 times in 20), 'new' tasks 160-163 (always right);
    two average workers label every task (tasks 200-239: one right, one wrong)."""
    rng = np.random.default_rng(0)
    average = [f"m{i}" for i in range(8)]
    rows = []
    for t in range(240):
        truth = t % 2
        pair = rng.choice(average, 2, replace=False)
        if t < 160:
            rows.append((t, "vet", truth if t % 20 else 1 - truth))
        elif t < 164:
            rows.append((t, "new", truth))
        if t < 200:
            rows += [(t, w, truth if rng.random() < 0.75 else 1 - truth) for w in pair]
        else:
            rows += [(t, pair[0], truth), (t, pair[1], 1 - truth)]
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


@pytest.mark.slow
def test_shrunk_skills_send_greedy_hits_to_proven_workers_not_lucky_newcomers():
    labels = _veteran_and_newcomer()
    chosen = {}
    for name, model in (("pooled", crowd.DawidSkene.pooled()), ("classic", crowd.DawidSkene())):
        model.fit(labels)
        batch = crowd.next_batch(model, n_hits=1, hit_size=5, assignment="greedy", max_per_task=3)
        assert len(batch) == 5 and set(batch.task) <= set(range(164, 240))  # tasks neither vet nor new labelled
        chosen[name] = (batch.worker.iloc[0], model.skills_["vet"] - model.skills_["new"])
    assert chosen["pooled"][0] == "vet" and chosen["pooled"][1] > 0.03
    assert chosen["classic"][0] == "new" and chosen["classic"][1] < 0  # 4 of 4 right reads as perfect


def test_normalised_gold_prior_keeps_its_weight_as_the_gold_set_grows():
    labels = pd.read_csv(DATA / "rte_labels.csv")
    gold = pd.read_csv(DATA / "rte_gold.csv").set_index("task")["label"]
    totals = {}
    for rows in ("scaled", "normalised"):
        for name, subset in (("eighth", gold.iloc[::8]), ("all", gold)):
            ds = crowd.DawidSkene(worker_prior="homegeneous_workers", prior_rows=rows, prior_strength=10.0)
            totals[rows, name] = ds.fit(labels, subset).prior_alpha_.sum(-1)  # (W, K) pseudo-labels per row
    grown = totals["scaled", "all"].mean() / totals["scaled", "eighth"].mean()
    assert 7 < grown < 9  # scaled: the prior's weight is the gold set's size
    np.testing.assert_allclose(totals["normalised", "eighth"], 10.0, rtol=1e-5)
    np.testing.assert_allclose(totals["normalised", "all"], 10.0, rtol=1e-5)
    with pytest.raises(ValueError, match=r"prior_rows='per_row': expected one of \['scaled', 'normalised'\]"):
        crowd.DawidSkene(prior_rows="per_row").fit(labels)


@pytest.mark.parametrize("name", ["rte", "bluebirds", "many_ties"])
def test_majority_vote_breaks_ties_as_crowdkit_does(name):
    if name == "many_ties":  # shuffled rows: the first label seen is not the first class
        labels = simulate_labels(300, 10, 4, 2, seed=1)[0].sample(frac=1.0, random_state=0)
    else:
        labels = pd.read_csv(DATA / f"{name}_labels.csv")
    theirs = CrowdKitMajorityVote().fit(labels).labels_
    # crowd-kit 1.4.2 orders its columns by pandas' value_counts: first seen since pandas 3, sorted before
    rule = "first_seen" if int(pd.__version__.split(".")[0]) >= 3 else "class_order"
    ours = crowd.MajorityVote(ties=rule).fit(labels).labels_
    pd.testing.assert_series_equal(ours, theirs.reindex(ours.index), check_names=False, check_dtype=False)
    if rule == "first_seen":
        pd.testing.assert_series_equal(crowd.MajorityVote().fit_predict(labels), ours)
    if name == "many_ties":
        other = crowd.MajorityVote(ties="class_order" if rule == "first_seen" else "first_seen").fit(labels)
        assert (other.labels_ != ours).sum() > 20  # the rule decides many labels of this table


@pytest.mark.slow
def test_evaluate_prints_accuracy_against_gold(tmp_path, capsys, sparse_runs):
    labels, gold, _ = sparse_runs[0]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    gold.rename_axis("task").reset_index().to_csv(tmp_path / "gold.csv", index=False)
    argv = ["label", f"--labels={tmp_path / 'labels.csv'}", f"--out={tmp_path / 'out'}", "--hits=2", "--hit_size=8"]
    assert label.main([*argv, f"--evaluate={tmp_path / 'gold.csv'}"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("accuracy against")]
    tasks = pd.read_csv(tmp_path / "out" / "tasks.csv").set_index("task")
    accuracy = _accuracy(tasks.label, gold)
    confident = tasks[tasks.confident]
    votes = _accuracy(crowd.MajorityVote().fit_predict(labels), gold)
    assert printed == [
        f"accuracy against {tmp_path / 'gold.csv'}: {accuracy:.1%} of 400 task(s) "
        f"({_accuracy(confident.label, gold[confident.index]):.1%} on the {len(confident)} confident); "
        f"majority vote {votes:.1%}"
    ]
    (tmp_path / "bad.csv").write_text("task,label\n0,1\n9999,0\n")
    assert label.main([*argv, f"--evaluate={tmp_path / 'bad.csv'}"]) == 2
    assert "bad.csv: 1 gold task(s) appear neither in the labels" in capsys.readouterr().err


@pytest.mark.slow
def test_labelling_doc_example_is_what_the_command_prints(tmp_path, capsys, monkeypatch):
    doc = (DATA.parents[1] / "docs" / "labelling.md").read_text()
    command = doc.split("(run from the repository root):\n\n```bash\n", 1)[1].split("\n```", 1)[0]
    printed = doc.split("prints (timings vary):\n\n```\n", 1)[1].split("```", 1)[0]
    argv = command.split()
    assert argv[:3] == ["python", "-m", "jaxanno.label"] and "--out=out" in argv
    monkeypatch.chdir(DATA.parents[1])  # the documented paths are relative to the repository
    out = tmp_path / "out"
    assert label.main(["label", *(f"--out={out}" if a == "--out=out" else a for a in argv[3:])]) == 0
    timings = r"read \d+\.\d+s, fit \+ batch \d+\.\d+s"
    got = re.sub(timings, "read -, fit + batch -", capsys.readouterr().out.replace(str(out), "out"))
    assert got == re.sub(timings, "read -, fit + batch -", printed)
