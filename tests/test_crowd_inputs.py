"""Bad settings and bad inputs of the crowd API and the label command: every one a clear
ValueError (exit code 2 and one line from the command), before anything is written.

Ranges: jaxanno.crowd.checks. Input normalisation: jaxanno.label's readers (text keys,
BOMs and whitespace removed, 'NaN' missing) and jaxanno.crowd.table (no mixed types).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from jaxanno import crowd, label, outputs
from tests.helpers import sparse_labels

TINY = pd.DataFrame({"task": [1, 1, 2, 2, 3], "worker": ["a", "b", "a", "c", "b"], "label": [0, 0, 1, 1, 0]})
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def pooled_fit():
    labels, _ = sparse_labels(200, 20, 2, seed=5)
    return crowd.DawidSkene.pooled().fit(labels)


BAD_SETTINGS = [
    ("risk_threshold", 0),
    ("risk_threshold", 1),
    ("risk_threshold", -1),
    ("risk_threshold", 2),
    ("risk_threshold", NAN),
    ("tol", NAN),
    ("tol", -1e-3),
    ("prior_strength", -1.0),
    ("prior_strength", NAN),
    ("prior_strength", INF),
    ("prior_strength", 1e40),  # finite in float64, inf in float32
    ("prior_pos_count", -2.0),
    ("prior_neg_count", NAN),
    ("log_epsilon", -1),
    ("log_epsilon", NAN),
    ("n_iter", 0),
    ("n_iter", 2**40),
    ("n_iter", 10.0),
    ("n_iter", True),
    ("learner_epochs", 0),
    ("seed", -1),
]


@pytest.mark.parametrize("name,value", BAD_SETTINGS)
def test_out_of_range_settings_are_refused_before_anything_compiles(name, value):
    expected = rf"^DawidSkene\.{name}={re.escape(repr(value))}: expected (an integer|a number) in [\[(].*\(.+\)$"
    with outputs.count_compiles() as compiled:
        with pytest.raises(ValueError, match=expected):
            crowd.DawidSkene(**{name: value}).fit(TINY)
    assert sum(compiled.values()) == 0, dict(compiled)


def test_boundary_settings_are_accepted():
    crowd.DawidSkene(tol=0.0, prior_strength=0.0, log_epsilon=0.0, risk_threshold=0.999, seed=2**63 - 1).check_options()
    crowd.DawidSkene(n_iter=2**16, prior_strength=3.4e38, learner_hidden=(8, 8)).check_options()
    with pytest.raises(ValueError, match=r"learner_hidden=\(0,\): expected one or more layer widths"):
        crowd.DawidSkene(learner_hidden=(0,)).check_options()


@pytest.mark.parametrize(
    "options,match",
    [
        (dict(max_per_worker=2**40), r"^max_per_worker=1099511627776: expected an integer in \[0, 1073741824\]"),
        (dict(max_per_task=-1), r"^max_per_task=-1: expected an integer in \[0, 1073741824\]"),
        (dict(n_hits=0), r"^n_hits=0: expected an integer in \[1, 2\*\*31 - 1\]"),
        (dict(hit_size=2**31), r"^hit_size=2147483648: expected an integer in \[1, 2\*\*31 - 1\]"),
        (dict(hit_size=2.5), r"^hit_size=2.5: expected an integer"),
        (dict(risk_threshold=NAN), r"^risk_threshold=nan: expected a number in \(0, 1\)"),
        (dict(risk_threshold=1.0), r"^risk_threshold=1.0: expected a number in \(0, 1\)"),
        (dict(assignment="best"), r"^assignment: expected one of \('random', 'greedy'\), found 'best'"),
    ],
)
def test_out_of_range_batch_options_are_value_errors(pooled_fit, options, match):
    with pytest.raises(ValueError, match=match):
        crowd.next_batch(pooled_fit, **options)


@pytest.mark.slow
def test_huge_hit_counts_are_capped_at_the_workers_and_tasks(pooled_fit):
    table = pooled_fit.table_
    batch = crowd.next_batch(pooled_fit, n_hits=10**9, hit_size=10**9, risk_threshold=0.01)
    per_hit = batch.groupby("hit")
    assert 1 < batch.hit.nunique() <= table.num_workers
    assert per_hit.size().max() <= table.num_items
    assert per_hit.worker.nunique().eq(1).all() and per_hit.worker.first().is_unique
    assert not batch.duplicated(["hit", "task"]).any()


def test_next_batch_needs_a_fitted_dawid_skene():
    with pytest.raises(ValueError, match=r"^next_batch: model is a MajorityVote, which has no worker confusion"):
        crowd.next_batch(crowd.MajorityVote().fit(TINY))
    with pytest.raises(ValueError, match=r"^next_batch: the DawidSkene is not fitted yet; call its fit"):
        crowd.next_batch(crowd.DawidSkene())
    with pytest.raises(ValueError, match=r"^next_batch: model: expected a fitted DawidSkene, found DataFrame"):
        crowd.next_batch(TINY)


def test_non_finite_posterior_is_an_error_not_nan_probabilities():
    ds = crowd.DawidSkene(worker_prior="predefined_homegeneous", prior_strength=3e38)  # in range; x2 overflows
    with pytest.raises(ValueError, match=r"^DawidSkene.fit: the posterior of 3 of 3 task\(s\) is not finite.*3e\+38"):
        ds.fit(TINY)
    assert not hasattr(ds, "probas_")


def _main(tmp_path, capsys, *flags: str, labels: str = "labels.csv") -> tuple[int, str]:
    code = label.main(["label", f"--labels={tmp_path / labels}", f"--out={tmp_path / 'out'}", *flags])
    return code, capsys.readouterr().err


def test_cli_refuses_to_write_labels_from_nan_posteriors(tmp_path, capsys):
    TINY.to_csv(tmp_path / "labels.csv", index=False)
    code, err = _main(
        tmp_path, capsys, "--model=ds", "--worker_prior=predefined_homegeneous", "--prior_strength=3e38", "--quiet"
    )
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: DawidSkene.fit: the posterior of 3 of 3 task(s) is not finite")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--risk_thres=0", "risk_thres=0.0: expected a number in (0, 1)"),
        ("--risk_thres=nan", "risk_thres=nan: expected a number in (0, 1)"),
        ("--hits=0", "hits=0: expected an integer in [1, 2**31 - 1]"),
        ("--hit_size=1099511627776", "hit_size=1099511627776: expected an integer in [1, 2**31 - 1]"),
        ("--max_per_worker=1099511627776", "max_per_worker=1099511627776: expected an integer in [0, 1073741824]"),
        ("--prior_strength=nan", "DawidSkene.prior_strength=nan: expected a number in [0, 3.4e+38]"),
        ("--prior_strength=-1", "DawidSkene.prior_strength=-1.0: expected a number in [0, 3.4e+38]"),
        ("--tol=-1", "DawidSkene.tol=-1.0: expected a number in [0, 3.4e+38]"),
        ("--n_iter=0", "DawidSkene.n_iter=0: expected an integer in [1, 65536]"),
    ],
)
def test_cli_settings_are_checked_before_any_file_is_read(tmp_path, capsys, flag, message):
    code, err = _main(tmp_path, capsys, flag, labels="missing.csv")
    assert code == 2 and err.count("\n") == 1, err
    assert message in err and "missing.csv" not in err


def test_readers_strip_boms_and_whitespace_and_csv_equals_parquet(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "\ufefftask , worker,label\n4 ,w1, cat\n4,w2,cat \n 5,\ufeffw1,dog\n", encoding="utf-8"
    )
    from_csv = label.load_labels(str(tmp_path / "labels.csv"))
    assert from_csv.to_dict("list") == {
        "task": ["4", "4", "5"],
        "worker": ["w1", "w2", "w1"],
        "label": ["cat"] * 2 + ["dog"],
    }
    spaced = pd.DataFrame(
        {"task": [4.0, 4.0, 5.0], "worker": ["w1 ", "w2", "\ufeffw1"], "label": [" cat", "cat", "dog"]}
    )
    spaced.to_parquet(tmp_path / "labels.parquet")  # integral floats read as '4', as in a CSV
    pd.testing.assert_frame_equal(label.load_labels(str(tmp_path / "labels.parquet")), from_csv)


def test_list_files_lose_their_bom(tmp_path):
    (tmp_path / "classes.txt").write_text("\ufeffcat\n dog \n\n", encoding="utf-8")
    assert label.load_classes(str(tmp_path / "classes.txt")) == ["cat", "dog"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt: not UTF-8 text"):
        label.load_classes(str(tmp_path / "latin1.txt"))


@pytest.mark.parametrize("cell", ["NaN", "nan", " ", "<NA>", ""])
def test_nan_or_blank_in_a_label_column_is_missing_not_a_class(tmp_path, cell):
    (tmp_path / "labels.csv").write_text(f"task,worker,label\n1,a,cat\n1,b,{cell}\n2,a,dog\n")
    with pytest.raises(ValueError, match=r"labels.csv: column 'label' has 1 empty value\(s\) \(blank, NaN or None"):
        label.run(str(tmp_path / "labels.csv"), tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "column,values,shown",
    [
        ("task", [5, "5", 6, 6, 7], "5 and '5', which would be different keys"),
        ("label", [0, "0", 1, 1, 0], "0 and '0', which would be different keys"),
        ("worker", ["a", 1, "b", "c", "a"], "1 and 'a'"),
    ],
)
def test_columns_mixing_text_and_numbers_are_refused(column, values, shown):
    mixed = TINY.assign(**{column: pd.Series(values, dtype=object)})
    expected = rf"^data: column '{column}' mixes text and numbers \(.*e.g. {re.escape(shown)}\); .*astype\(str\)"
    for model in (crowd.DawidSkene(), crowd.MajorityVote()):
        with pytest.raises(ValueError, match=expected):
            model.fit(mixed)
    with pytest.raises(ValueError, match=r"^gold: tasks mixes text and numbers"):
        crowd.DawidSkene().fit(TINY, pd.Series([0, 1], index=pd.Index([1, "2"], dtype=object)))


def test_range_table_covers_every_numeric_setting():
    numeric = {
        name
        for name, value in vars(crowd.DawidSkene()).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    assert numeric == set(crowd.DAWID_SKENE_RANGES)
    assert all(math.isfinite(r.high) for r in crowd.DAWID_SKENE_RANGES.values())
    assert np.float32(crowd.DAWID_SKENE_RANGES["prior_strength"].high) < np.inf
