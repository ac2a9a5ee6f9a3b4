"""jaxanno.crowd and jaxanno.label on real crowd data (RTE, Bluebirds) and small synthetic sets.

crowd-kit runs inside the tests as the reference implementation. Tolerance for posteriors:
jaxanno works in float32, crowd-kit in float64. A task's log posterior sums up to A = 39
log-probabilities down to log(1e-10) ~ -23, so float32 rounding moves a logit by at most
about 39 * 23 * 2**-24 ~ 5e-5; a probability moves by at most a quarter of that per E-step
(dp/dlogit = p(1 - p) <= 1/4), and the few EM iterations compound it to well under 1e-4
(measured: <= 4e-6). Labels must agree exactly.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote

from jaxanno import crowd, label, outputs, sampler
from tests import reference
from tests.helpers import simulate_labels

DATA = pathlib.Path(__file__).parent / "data"
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:.*(inplace|copy) keyword"
)
POSTERIOR_ATOL = 1e-4  # see the module docstring
CROWDKIT_ACCURACY = {"rte": (0.9275, 0.9187), "bluebirds": (0.8889, 0.7593)}  # DawidSkene, MajorityVote


def _load(name: str):
    labels = pd.read_csv(DATA / f"{name}_labels.csv")
    gold = pd.read_csv(DATA / f"{name}_gold.csv").set_index("task")["label"]
    return labels, gold


def _accuracy(pred: pd.Series, gold: pd.Series) -> float:
    return float((pred.reindex(gold.index) == gold).mean())


def _aligned(reference: pd.DataFrame, ours: pd.DataFrame) -> np.ndarray:
    return reference.reindex(index=ours.index, columns=ours.columns).to_numpy(np.float64)


@pytest.fixture(scope="module", params=["rte", "bluebirds"])
def crowd_data(request):
    labels, gold = _load(request.param)
    return request.param, labels, gold


@pytest.fixture(scope="module")
def crowdkit_fit(crowd_data):
    name, labels, _ = crowd_data
    return CrowdKitDawidSkene(n_iter=100, tol=1e-5).fit(labels)


def test_dawid_skene_matches_or_beats_crowdkit_accuracy(crowd_data, crowdkit_fit):
    name, labels, gold = crowd_data
    ours = _accuracy(crowd.DawidSkene().fit_predict(labels), gold)
    theirs = _accuracy(crowdkit_fit.labels_, gold)
    assert theirs == pytest.approx(CROWDKIT_ACCURACY[name][0], abs=1e-4)
    assert ours >= theirs


def test_dawid_skene_soft_mode_reproduces_crowdkit_posteriors(crowd_data, crowdkit_fit):
    _, labels, _ = crowd_data
    ds = crowd.DawidSkene(n_iter=100, tol=1e-5).fit(labels)
    np.testing.assert_allclose(ds.probas_.to_numpy(), _aligned(crowdkit_fit.probas_, ds.probas_), atol=POSTERIOR_ATOL)
    pd.testing.assert_series_equal(
        ds.labels_, crowdkit_fit.labels_.reindex(ds.labels_.index), check_dtype=False, check_names=False
    )
    assert ds.n_iter_ == len(crowdkit_fit.loss_history_)
    np.testing.assert_allclose(ds.loss_history_, crowdkit_fit.loss_history_, rtol=1e-4)
    errors = crowdkit_fit.errors_  # crowd-kit lists only the (worker, label) pairs seen
    np.testing.assert_allclose(
        ds.errors_.reindex(errors.index)[errors.columns].to_numpy(), errors.to_numpy(), atol=POSTERIOR_ATOL
    )
    np.testing.assert_allclose(ds.priors_.reindex(crowdkit_fit.priors_.index), crowdkit_fit.priors_, atol=1e-5)


def test_dawid_skene_posterior_rows_sum_to_one_and_risk_is_one_minus_max(crowd_data):
    _, labels, _ = crowd_data
    ds = crowd.DawidSkene().fit(labels)
    probas = ds.probas_.to_numpy()
    np.testing.assert_allclose(probas.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ds.risks_.to_numpy(), 1.0 - probas.max(1), atol=1e-6)
    np.testing.assert_array_equal(ds.confident_.to_numpy(), ds.risks_.to_numpy() < 0.1)
    assert set(ds.probas_.index) == set(labels.task)
    np.testing.assert_allclose(ds.errors_.groupby("worker").sum().to_numpy(), 1.0, rtol=1e-5)


def test_majority_vote_equals_crowdkit(crowd_data):
    name, labels, gold = crowd_data
    ours = crowd.MajorityVote().fit(labels)
    theirs = CrowdKitMajorityVote().fit(labels)
    pd.testing.assert_series_equal(
        ours.labels_, theirs.labels_.reindex(ours.labels_.index), check_names=False, check_dtype=False
    )
    np.testing.assert_allclose(ours.probas_.to_numpy(), _aligned(theirs.probas_, ours.probas_), atol=1e-6)
    np.testing.assert_allclose(ours.skills_, theirs.skills_.reindex(ours.skills_.index), atol=1e-6)
    assert _accuracy(ours.labels_, gold) == pytest.approx(CROWDKIT_ACCURACY[name][1], abs=1e-4)


def test_gold_labels_are_clamped_like_crowdkit_true_labels(crowd_data):
    _, labels, gold = crowd_data
    some_gold = gold.iloc[::4]
    theirs = CrowdKitDawidSkene(n_iter=100, tol=1e-5).fit(labels, some_gold)
    ours = crowd.DawidSkene().fit(labels, some_gold)
    np.testing.assert_allclose(ours.probas_.to_numpy(), _aligned(theirs.probas_, ours.probas_), atol=POSTERIOR_ATOL)
    assert (ours.labels_.reindex(some_gold.index) == some_gold).all()
    assert ours.n_iter_ == len(theirs.loss_history_)


@pytest.mark.slow
def test_reference_model_beats_majority_vote(crowd_data):
    _, labels, gold = crowd_data
    ds = crowd.DawidSkene.reference().fit(labels)
    assert ds.m_step == "hard" and ds.n_iter_ <= 10
    assert _accuracy(ds.labels_, gold) > _accuracy(crowd.MajorityVote().fit_predict(labels), gold)


def test_string_labels_give_the_same_answer_as_integers():
    labels, gold = _load("rte")
    names = {0: "no", 1: "yes"}
    text = labels.assign(task="t" + labels.task.astype(str), label=labels.label.map(names))
    ours = crowd.DawidSkene().fit(text)
    as_int = crowd.DawidSkene().fit(labels)
    assert list(ours.probas_.columns) == ["no", "yes"]
    np.testing.assert_allclose(ours.probas_.to_numpy(), as_int.probas_.to_numpy(), atol=1e-6)
    assert (ours.labels_.to_numpy() == as_int.labels_.map(names).to_numpy()).all()
    assert ours.labels_.index[0] == "t" + str(labels.task.iloc[0])


@pytest.mark.slow
def test_keep_all_duplicates_equal_crowdkit_on_repeated_labels():
    labels, _ = _load("rte")
    repeated = pd.concat([labels, labels.iloc[:300]], ignore_index=True)
    theirs = CrowdKitDawidSkene(n_iter=100, tol=1e-5).fit(repeated)
    ours = crowd.DawidSkene(duplicates="keep_all").fit(repeated)
    np.testing.assert_allclose(ours.probas_.to_numpy(), _aligned(theirs.probas_, ours.probas_), atol=POSTERIOR_ATOL)


def test_duplicate_policies_error_keep_last_keep_first():
    labels = pd.DataFrame({"task": [1, 1, 1, 2], "worker": ["a", "a", "b", "a"], "label": [0, 1, 1, 0]})
    with pytest.raises(ValueError, match=r"worker 'a' labelled task 1 2 times.*keep_last"):
        crowd.DawidSkene().fit(labels)
    last = crowd.encode(labels, duplicates="keep_last")
    first = crowd.encode(labels, duplicates="keep_first")
    assert last.dropped_duplicates == first.dropped_duplicates == 1
    assert last.label_code.tolist() == [1, 1, 0] and first.label_code.tolist() == [0, 1, 0]
    assert crowd.encode(labels, duplicates="keep_all").item_count.tolist() == [3, 1]


def test_slots_are_sized_from_the_data_not_capped_at_three():
    labels, _ = _load("bluebirds")
    table = crowd.encode(labels)
    assert table.item_count.max() == 39
    assert table.annotations.worker.shape[1] >= 39
    np.testing.assert_array_equal(np.asarray(table.annotations.item_count)[: table.num_items], table.item_count)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 13, 100, 800, 1000, 200_000])
def test_buckets_are_two_per_octave_for_slots_and_powers_of_two_for_tasks(n):
    b = crowd.bucket(n)
    assert n <= b <= max(1.5 * n, 2) and crowd.bucket(b) == b
    assert b in {2**k for k in range(20)} | {3 * 2**k for k in range(20)}
    p = crowd.bucket_pow2(n)
    assert n <= p < 2 * n or p == n == 1
    assert p & (p - 1) == 0 and crowd.bucket_pow2(n, minimum=64) == max(p, 64)


def test_slot_buckets_are_exact_for_a_few_labels_per_task():
    assert [crowd.bucket(n) for n in range(1, 14)] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16]
    assert crowd.iteration_capacity(10) == crowd.iteration_capacity(100) == 128
    assert crowd.iteration_capacity(129) == 256


@pytest.mark.parametrize("seed", [0, 7, 2**31 - 1])
def test_host_key_is_jax_random_key(seed):
    np.testing.assert_array_equal(jax.random.key_data(crowd.host_key(seed)), jax.random.key_data(jax.random.key(seed)))


@pytest.mark.slow
def test_new_iteration_limit_tolerance_and_prior_strength_compile_nothing():
    labels, _ = _load("rte")
    options = dict(criterion="soft", init="prior", worker_prior="predefined_homegeneous")  # used by no other test
    with outputs.count_compiles() as first:
        crowd.DawidSkene(n_iter=37, tol=1e-5, prior_strength=5.0, **options).fit(labels)
    assert first["jit(solve)"] == 1, dict(first)
    fewer = labels[~labels.task.isin(labels.task.unique()[:30])]  # 770 tasks: same buckets as 800
    with outputs.count_compiles() as again:
        ds = crowd.DawidSkene(
            n_iter=90, tol=1e-3, prior_strength=2.0, prior_pos_count=3.0, log_epsilon=1e-8, seed=5, **options
        ).fit(fewer)
        crowd.next_batch(ds, n_hits=5, hit_size=40)
        crowd.next_batch(ds, n_hits=7, hit_size=33, max_per_task=4, risk_threshold=0.05, seed=3)
    assert ds.probas_.shape[0] == 770
    again.pop("jit(assign)", None)  # the batch program compiles once, for the first batch
    assert sum(again.values()) == 0, dict(again)


def test_iteration_limit_is_honoured_below_the_capacity():
    labels, _ = _load("rte")
    full = crowd.DawidSkene(n_iter=100, tol=1e-5).fit(labels)
    three = crowd.DawidSkene(n_iter=3, tol=1e-5).fit(labels)
    assert full.n_iter_ > 3 and three.n_iter_ == 3
    np.testing.assert_allclose(three.loss_history_, full.loss_history_[:3], rtol=1e-6)


def _reference_arrays(labels: pd.DataFrame, k: int):
    """(N, A) worker and label codes of a table, tasks and workers in first-seen order."""
    tasks, workers = pd.Index(labels.task.unique()), pd.Index(labels.worker.unique())
    slot = labels.groupby("task", sort=False).cumcount().to_numpy()
    w_codes = np.full((len(tasks), slot.max() + 1), -1)
    l_codes = np.full_like(w_codes, -1)
    rows = tasks.get_indexer(labels.task)
    w_codes[rows, slot] = workers.get_indexer(labels.worker)
    l_codes[rows, slot] = labels.label.to_numpy()
    return tasks, workers, w_codes, l_codes


def test_classic_fit_matches_the_float64_numpy_dawid_skene():
    labels, _ = simulate_labels(120, 12, 3, 4, seed=2, accuracy=(0.45, 0.9))
    tasks, workers, w_codes, l_codes = _reference_arrays(labels, 3)
    post, counts, class_prior, iterations, history = reference.classic_dawid_skene(
        w_codes, l_codes, len(workers), 3, n_iter=100, tol=1e-5
    )
    assert min(abs(np.diff(history) - 1e-5)) > 1e-7  # the stopping decision is not a float32 coin toss
    ds = crowd.DawidSkene(n_iter=100, tol=1e-5).fit(labels)
    assert ds.n_iter_ == iterations > 3
    np.testing.assert_allclose(ds.loss_history_, history, rtol=1e-5)
    np.testing.assert_allclose(ds.probas_.loc[tasks].to_numpy(), post, atol=1e-5)
    alpha = np.asarray(ds.alpha_)[ds.table_.workers.get_indexer(workers)]
    np.testing.assert_allclose(alpha, counts, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ds.priors_.to_numpy(), class_prior, atol=1e-6)


@pytest.mark.parametrize("criterion", ["soft", "hard"])
def test_reference_fit_matches_the_float64_numpy_online_em(criterion):
    labels, _ = simulate_labels(90, 10, 2, 5, seed=3, accuracy=(0.5, 0.9))  # 5 labels, 2 classes: no ties
    tasks, workers, w_codes, l_codes = _reference_arrays(labels, 2)
    one = reference.prior("predefined_homegeneous", np.zeros((2, 2)), None, 10.0)  # diagonal 20, off-diagonal 5
    prior = np.broadcast_to(one, (len(workers), 2, 2))
    counts, iterations = reference.em(prior, w_codes, l_codes, max_steps=10, eps=1e-3, criterion=criterion)
    want = reference.softmax(reference.log_belief(prior + counts, w_codes, l_codes))
    ds = crowd.DawidSkene.reference(criterion=criterion).fit(labels)
    assert ds.n_iter_ == iterations > 1
    alpha = np.asarray(ds.alpha_)[ds.table_.workers.get_indexer(workers)]
    np.testing.assert_allclose(alpha, prior + counts, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ds.probas_.loc[tasks].to_numpy(), want, atol=1e-5)


def test_unknown_options_are_named_before_any_input_is_read():
    labels, _ = _load("bluebirds")
    for options, match in [
        (dict(m_step="Soft"), r"m_step='Soft': expected one of \['hard', 'soft'\]"),
        (dict(criterion="likelihood"), r"criterion='likelihood': expected one of"),
        (dict(learner="svm"), r"DawidSkene.learner='svm': expected one of \['mlp', None\]"),
        (dict(learner_semi_supervised="fixmatch"), r"learner_semi_supervised='fixmatch'.*mixmatch"),
        (dict(n_iter=0), r"DawidSkene.n_iter"),
        (dict(worker_prior="heterogeneous_workers"), r"worker_prior='heterogeneous_workers': expected one of \[None"),
    ]:
        with pytest.raises(ValueError, match=match):
            crowd.DawidSkene(**options).fit(labels)
    with pytest.raises(ValueError, match=r"hit_size=0: expected an integer in \[1, 2\*\*31 - 1\]"):
        crowd.next_batch(crowd.DawidSkene().fit(labels), hit_size=0)


def _greedy_scenario() -> pd.DataFrame:
    """Tasks 0-59: an expert 'e' (always right) and a, b, c (right 4 times in 5);
    tasks 60-79: only x and y, who disagree, so these are the uncertain ones."""
    rows = []
    for t in range(80):
        truth = t % 2
        if t < 60:
            rows.append((t, "e", truth))
            for j, w in enumerate("abc"):
                rows.append((t, w, truth if (t + j) % 5 else 1 - truth))
        else:
            rows += [(t, "x", truth), (t, "y", 1 - truth)]
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


@pytest.mark.slow
def test_greedy_assignment_picks_the_highest_expected_accuracy_worker():
    ds = crowd.DawidSkene(worker_prior="predefined_homegeneous").fit(_greedy_scenario())
    batch = crowd.next_batch(ds, n_hits=3, hit_size=10, assignment="greedy", risk_threshold=0.1)
    assert batch.worker.iloc[0] == "e"
    posterior = ds.probas_.to_numpy()
    alpha = np.asarray(ds.alpha_)
    workers = list(ds.table_.workers)
    used = set()
    for _, hit in batch.groupby("hit"):
        rows = ds.table_.tasks.get_indexer(hit.task)
        scores = np.asarray(sampler.worker_accuracy_on(posterior[rows], np.ones(len(rows), bool), alpha))
        labelled = set(
            pd.DataFrame(
                {"task": ds.table_.tasks[ds.table_.task_code], "worker": ds.table_.workers[ds.table_.worker_code]}
            )
            .query("task in @hit.task")
            .worker
        )
        allowed = [w for w in workers if w not in used and w not in labelled]
        chosen = hit.worker.iloc[0]
        assert chosen in allowed
        assert scores[workers.index(chosen)] >= max(scores[workers.index(w)] for w in allowed) - 1e-6
        assert hit.expected_accuracy.iloc[0] == pytest.approx(scores[workers.index(chosen)], abs=1e-5)
        used.add(chosen)
    assert not set(batch.worker) & {"x", "y"}  # they labelled every uncertain task


@pytest.mark.parametrize("assignment", ["random", "greedy"])
def test_next_batch_gives_smaller_hits_when_few_tasks_qualify(assignment):
    ds = crowd.DawidSkene(worker_prior="predefined_homegeneous").fit(_greedy_scenario())
    uncertain = set(ds.risks_[ds.risks_ > 0.1].index)
    assert len(uncertain) == 20
    batch = crowd.next_batch(ds, n_hits=4, hit_size=50, assignment=assignment, risk_threshold=0.1)
    assert set(batch.task) <= uncertain
    assert batch.groupby("hit").size().max() == 20  # a HIT of 50 shrinks to the 20 qualifying tasks
    none_left = crowd.next_batch(ds, n_hits=4, hit_size=50, assignment=assignment, max_per_task=2)
    assert len(none_left) == 0  # every uncertain task already has 2 labels


def _write_synthetic(tmp_path: pathlib.Path) -> dict:
    labels, gold = simulate_labels(300, 30, 3, 3, seed=4, accuracy=(0.4, 0.8))
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    return {"labels": labels, "gold": gold, "path": path}


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ["random", "greedy"])
def test_cli_writes_consistent_files_and_a_batch_within_caps(tmp_path, assignment):
    data = _write_synthetic(tmp_path)
    out = tmp_path / "out"
    max_worker, max_task, threshold = 35, 4, 0.1
    code = label.main(
        [
            "label",
            f"--labels={data['path']}",
            f"--out={out}",
            "--hits=6",
            "--hit_size=15",
            f"--assignment={assignment}",
            f"--max_per_worker={max_worker}",
            f"--max_per_task={max_task}",
            f"--risk_thres={threshold}",
            "--worker_prior=predefined_homegeneous",
            "--quiet",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(label.OUTPUT_FILES)
    tasks = pd.read_csv(out / "tasks.csv", dtype={"task": str, "label": str})
    workers = pd.read_csv(out / "workers.csv", dtype={"worker": str})
    confusion = pd.read_csv(out / "worker_confusion.csv", dtype={"worker": str})
    batch = pd.read_csv(out / "next_batch.csv", dtype={"worker": str, "task": str})
    given = data["labels"].astype(str)

    probs = tasks.filter(like="p_").to_numpy()
    assert list(tasks.filter(like="p_").columns) == ["p_0", "p_1", "p_2"]
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert (tasks.label == tasks.filter(like="p_").idxmax(1).str[2:]).all()
    np.testing.assert_allclose(tasks.risk, 1.0 - tasks.prob, atol=1e-6)
    assert (tasks.confident == (tasks.risk < threshold)).all()
    assert tasks.set_index("task").n_labels.to_dict() == given.groupby("task").size().to_dict()
    assert workers.set_index("worker").n_labels.to_dict() == given.groupby("worker").size().to_dict()
    np.testing.assert_allclose(confusion.groupby(["worker", "true"]).prob.sum(), 1.0, rtol=1e-5)

    assert len(batch) > 0
    assert batch.groupby("hit").worker.nunique().eq(1).all()
    assert batch.groupby("hit").worker.first().is_unique  # distinct workers per batch
    assert not batch.duplicated(["hit", "task"]).any()  # distinct tasks per HIT
    assert batch.groupby("hit").size().max() <= 15 and batch.hit.nunique() <= 6
    risk = tasks.set_index("task").risk
    assert (risk[batch.task] > threshold).all()  # only uncertain tasks
    per_task = given.groupby("task").size().add(batch.groupby("task").size(), fill_value=0)
    assert per_task[batch.task.unique()].max() <= max_task
    per_worker = given.groupby("worker").size().add(batch.groupby("worker").size(), fill_value=0)
    assert per_worker[batch.worker.unique()].max() <= max_worker
    assert workers.set_index("worker").in_batch.sum() == len(batch)
    already = set(zip(given.task, given.worker))
    assert not any((t, w) in already for t, w in zip(batch.task, batch.worker))


@pytest.mark.slow
def test_run_function_api_returns_frames_without_writing(tmp_path):
    data = _write_synthetic(tmp_path)
    result = label.run(str(data["path"]), None, hits=2, hit_size=5, quiet=True)
    assert result["summary"]["labels"] == 900 and result["summary"]["tasks"] == 300
    assert set(result["frames"]) == set(label.OUTPUT_FILES)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_parquet_input_gives_the_same_labels_as_csv(tmp_path):
    labels, _ = _load("rte")
    labels.to_parquet(tmp_path / "labels.parquet")  # integer columns: read back as text
    from_parquet = label.run(str(tmp_path / "labels.parquet"), None, quiet=True)["frames"]["tasks.csv"]
    from_csv = label.run(str(DATA / "rte_labels.csv"), None, quiet=True)["frames"]["tasks.csv"]
    pd.testing.assert_frame_equal(from_parquet, from_csv)
    assert from_csv.task.iloc[0] == "25" and set(from_csv.label) == {"0", "1"}


@pytest.mark.slow
def test_npy_features_add_unlabelled_tasks_that_go_into_the_batch(tmp_path):
    labels = pd.DataFrame({"task": ["a", "a", "b", "b"], "worker": ["u", "v", "u", "v"], "label": ["x", "x", "y", "y"]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    np.save(tmp_path / "feats.npy", np.arange(12.0).reshape(4, 3))
    (tmp_path / "tasks.txt").write_text("c\nb\na\nd\n")
    result = label.run(
        str(tmp_path / "labels.csv"),
        tmp_path / "out",
        features=str(tmp_path / "feats.npy"),
        tasks=str(tmp_path / "tasks.txt"),
        hits=2,
        hit_size=5,
        learner=None,
        quiet=True,
    )
    tasks = result["frames"]["tasks.csv"].set_index("task")
    assert list(tasks.index) == ["a", "b", "c", "d"] and tasks.n_labels.tolist() == [2, 2, 0, 0]
    np.testing.assert_allclose(tasks.loc[["c", "d"], "prob"], 0.5, atol=1e-6)  # no label, no learner
    batch = pd.read_csv(tmp_path / "out" / "next_batch.csv", dtype=str)
    assert set(batch.task) == {"c", "d"} and set(batch.worker) == {"u", "v"}


def _expect_error(tmp_path, match, **files):
    """Write the input `files` ({run argument: (file name, text or writer)}), run the CLI
    body, expect a ValueError and find the output directory untouched."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "tasks.csv").write_text("previous run\n")
    paths = {}
    for argument, (name, content) in files.items():
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            content(path)
        paths[argument] = str(path)
    with pytest.raises(ValueError, match=match):
        label.run(paths.pop("labels"), out, quiet=True, **paths)
    assert sorted(p.name for p in out.iterdir()) == ["tasks.csv"]
    assert (out / "tasks.csv").read_text() == "previous run\n"


GOOD = "task,worker,label\n1,a,cat\n1,b,dog\n2,a,cat\n3,b,dog\n"


def test_error_missing_column(tmp_path):
    _expect_error(
        tmp_path,
        r"labels.csv: missing column\(s\) \['label'\].*found \['task', 'worker', 'answer'\]",
        labels=("labels.csv", "task,worker,answer\n1,a,cat\n"),
    )


def test_error_empty_file(tmp_path):
    _expect_error(tmp_path, r"labels.csv: empty file", labels=("labels.csv", ""))


def test_error_header_only_file(tmp_path):
    _expect_error(
        tmp_path, r"labels.csv: empty file; expected at least one row", labels=("labels.csv", "task,worker,label\n")
    )


def test_error_empty_value(tmp_path):
    _expect_error(tmp_path, r"labels.csv: column 'worker' has 1 empty value", labels=("labels.csv", GOOD + "4,,cat\n"))


def test_error_worker_labels_a_task_twice(tmp_path):
    _expect_error(
        tmp_path, r"labels.csv: worker 'a' labelled task '1' 2 times", labels=("labels.csv", GOOD + "1,a,dog\n")
    )


def test_error_label_outside_class_list(tmp_path):
    _expect_error(
        tmp_path,
        r"labels.csv: column 'label' has 1 label\(s\) outside the class list, e.g. \['dog'\]",
        labels=("labels.csv", "task,worker,label\n1,a,cat\n2,a,dog\n1,b,bird\n"),
        classes=("classes.txt", "cat\nbird\n"),
    )


def test_error_features_missing_for_some_tasks(tmp_path):
    def npz(path):
        np.savez(path, tasks=np.array(["1", "2"]), features=np.ones((2, 4)))

    _expect_error(
        tmp_path,
        r"feats.npz: 1 labelled task\(s\) have no feature row, e.g. \['3'\]",
        labels=("labels.csv", GOOD),
        features=("feats.npz", npz),
    )


def test_error_npy_features_without_task_list(tmp_path):
    _expect_error(
        tmp_path,
        r"feats.npy: a .npy feature file needs --tasks",
        labels=("labels.csv", GOOD),
        features=("feats.npy", lambda p: np.save(p, np.ones((3, 4)))),
    )


def test_error_feature_rows_and_task_list_disagree(tmp_path):
    _expect_error(
        tmp_path,
        r"tasks.txt: expected one task per feature row of .*feats.npy \(3\), found 2",
        labels=("labels.csv", GOOD),
        features=("feats.npy", lambda p: np.save(p, np.ones((3, 4)))),
        tasks=("tasks.txt", "1\n2\n"),
    )


def test_error_unknown_gold_tasks(tmp_path):
    _expect_error(
        tmp_path,
        r"gold.csv: 1 gold task\(s\) appear neither in the labels nor in the features.*'9'",
        labels=("labels.csv", GOOD),
        gold=("gold.csv", "task,label\n1,cat\n9,dog\n"),
    )


def test_error_gold_label_outside_class_list(tmp_path):
    _expect_error(
        tmp_path,
        r"gold.csv: 1 gold label\(s\) outside the class list",
        labels=("labels.csv", GOOD),
        gold=("gold.csv", "task,label\n1,fish\n"),
    )


def test_cli_reports_bad_input_with_exit_code_two(tmp_path, capsys):
    path = tmp_path / "labels.csv"
    path.write_text("task,worker\n1,a\n")
    assert label.main(["label", f"--labels={path}", f"--out={tmp_path / 'out'}"]) == 2
    assert "missing column(s) ['label']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_learner_prior_from_features_labels_unlabelled_tasks_and_helps(tmp_path):
    rng = np.random.default_rng(0)
    labels, truth = simulate_labels(600, 20, 3, 2, seed=1, accuracy=(0.5, 0.8))
    features = rng.normal(size=(3, 8))[truth.to_numpy()] * 3 + rng.normal(size=(600, 8))
    labelled = labels[labels.task < 400]  # tasks 400-599 only have features
    gold = truth[(truth.index >= 400) & (truth.index < 430)]  # prototypes / validation
    feats = pd.DataFrame(features, index=truth.index)
    plain = crowd.DawidSkene.reference().fit(labelled)
    ds = crowd.DawidSkene.reference(learner_epochs=100).fit(labelled, gold, features=feats)
    correct = ds.labels_.reindex(truth.index) == truth
    assert len(ds.labels_) == 600
    assert correct.iloc[430:].mean() > 0.95
    assert correct.iloc[:400].mean() > _accuracy(plain.labels_, truth.iloc[:400]) + 0.1
    assert (ds.labels_.reindex(gold.index) == gold).all()
    npz = tmp_path / "feats.npz"
    np.savez(npz, tasks=truth.index.to_numpy().astype(str), features=features)
    labelled.to_csv(tmp_path / "labels.csv", index=False)
    result = label.run(
        str(tmp_path / "labels.csv"),
        tmp_path / "out",
        features=str(npz),
        model="reference",
        hits=2,
        hit_size=10,
        quiet=True,
        learner_epochs=100,
    )
    assert result["summary"]["learner"] and result["summary"]["tasks"] == 600
    batch = pd.read_csv(tmp_path / "out" / "next_batch.csv", dtype={"task": str})
    assert len(batch) > 0
