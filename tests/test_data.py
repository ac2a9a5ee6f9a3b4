"""Data: the real-feature loaders (reference, npz, npy), their errors, the stand-ins, and a
short end-to-end run on tiny reference-format files with distraction items."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from configs import test as test_config
from jaxanno import config as config_lib
from jaxanno import data as data_lib
from jaxanno import experiment, results
from jaxanno.data import amt, files, lookalike, standin

CLASSES = ["n02138441", "n02326432", "n01558993"]  # meerkat, hare, robin (split 1)
OTHERS = ["n02009229", "n09999999"]  # another split-1 class and a wnid outside the 100
PER_CLASS = 12
WIDTH = 6


def _write_reference(folder, per_class=PER_CLASS, wnids=CLASSES + OTHERS, seed=0):
    """A features .npy and an image list; returns (features path, list path, features, wnids per line)."""
    rng = np.random.default_rng(seed)
    line_wnids = [w for w in wnids for _ in range(per_class)]
    order = rng.permutation(len(line_wnids))  # classes interleaved, as in a real list
    line_wnids = [line_wnids[i] for i in order]
    lines = [f"{w}/{w}_{i}.JPEG {wnids.index(w)}" for i, w in enumerate(line_wnids)]
    feats = rng.standard_normal((len(lines), WIDTH)).astype(np.float32)
    feat_path, list_path = folder / "features.npy", folder / "train_labeled.txt"
    np.save(feat_path, feats)
    list_path.write_text("\n".join(lines) + "\n")
    return str(feat_path), str(list_path), feats, line_wnids


@pytest.fixture
def reference(tmp_path):
    return _write_reference(tmp_path)


def _spec(**kw):
    base = dict(source="reference", wnids=tuple(CLASSES), n_data_per_class=None, n_prototype_per_class=3)
    base.update(kw)
    return data_lib.DataSpec(**base)


def _rows_in_file(fs, feats):
    """Row of the source file that every FeatureSet row came from (features are unique)."""
    lookup = {row.tobytes(): i for i, row in enumerate(feats)}
    return np.array([lookup[row.tobytes()] for row in np.asarray(fs.features)])


def test_reference_loader_takes_items_then_prototypes_of_the_configured_classes(reference):
    feat_path, list_path, feats, line_wnids = reference
    wnids = (CLASSES[2], CLASSES[0], CLASSES[1])  # class order follows the config, not the file
    fs = data_lib.load_features(_spec(wnids=wnids, features=feat_path, image_list=list_path))
    assert fs.num_items == 3 * (PER_CLASS - 3) and fs.num_prototypes == 3 * 3
    assert fs.wnids == list(wnids)
    assert fs.class_names == [amt.class_names()[w] for w in wnids]
    assert fs.features.dtype == np.float32 and fs.labels.dtype == np.int32
    src = _rows_in_file(fs, feats)
    assert len(set(src.tolist())) == src.size  # items and prototypes are disjoint
    np.testing.assert_array_equal([wnids.index(line_wnids[r]) for r in src], fs.labels)
    np.testing.assert_array_equal(np.bincount(fs.labels[fs.num_items :]), [3, 3, 3])


@pytest.mark.parametrize("cap, per_class", [(4, 4), (None, PER_CLASS - 3), (0, PER_CLASS - 3), (100, PER_CLASS - 3)])
def test_reference_loader_caps_items_per_class(reference, cap, per_class):
    feat_path, list_path, _, _ = reference
    fs = data_lib.load_features(_spec(n_data_per_class=cap, features=feat_path, image_list=list_path))
    np.testing.assert_array_equal(np.bincount(fs.labels[: fs.num_items]), [per_class] * 3)


def test_reference_loader_is_seeded(reference):
    feat_path, list_path, _, _ = reference
    load = lambda seed: data_lib.load_features(  # noqa: E731
        _spec(seed=seed, n_data_per_class=5, features=feat_path, image_list=list_path)
    )
    a, b, c = load(0), load(0), load(1)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.features[a.num_items :], c.features[c.num_items :])


def test_reference_loader_without_wnids_takes_every_class_of_the_list(reference):
    feat_path, list_path, _, line_wnids = reference
    fs = data_lib.load_features(_spec(wnids=(), features=feat_path, image_list=list_path))
    assert fs.wnids == list(dict.fromkeys(line_wnids)) and fs.num_classes == 5


def test_reference_loader_adds_distraction_items_as_one_other_class(reference):
    feat_path, list_path, feats, line_wnids = reference
    d = 2
    fs = data_lib.load_features(_spec(n_data_distraction_per_class=d, features=feat_path, image_list=list_path))
    k = len(CLASSES)
    assert fs.class_names[-1] == data_lib.OTHER_CLASS and fs.num_classes == k + 1 and fs.wnids == CLASSES
    items, protos = fs.labels[: fs.num_items], fs.labels[fs.num_items :]
    assert (items == k).sum() == k * d and (protos == k).sum() == d
    src = _rows_in_file(fs, feats)
    assert len(set(src.tolist())) == src.size
    assert all(line_wnids[r] in OTHERS for r in src[fs.labels == k])
    crowd = data_lib.make_dataset(fs, "structured_noise", "homegeneous_workers", with_other=True).crowd
    assert crowd.global_counts.shape == (k + 1, k + 1)
    assert float(crowd.global_counts[k].sum()) > 0  # other classes' real labels fold into 'other'


def test_npz_loader_draws_prototypes_from_the_data(tmp_path):
    feats = np.random.default_rng(0).standard_normal((40, WIDTH)).astype(np.float32)
    labels = np.arange(40) % 4
    path = tmp_path / "data.npz"
    np.savez(path, features=feats, labels=labels, class_names=np.array(["a", "b", "c", "d"]))
    fs = data_lib.load_features(data_lib.DataSpec(source="npz", features=str(path), n_prototype_per_class=2))
    assert fs.num_items == 32 and fs.num_prototypes == 8 and fs.class_names == ["a", "b", "c", "d"]
    assert fs.wnids is None
    src = _rows_in_file(fs, feats)
    assert len(set(src.tolist())) == 40
    np.testing.assert_array_equal(labels[src], fs.labels)


def test_npz_loader_keeps_given_prototypes_and_selects_configured_wnids(tmp_path):
    rng = np.random.default_rng(1)
    wnids = CLASSES + OTHERS[:1]
    feats, labels = rng.standard_normal((20, WIDTH)).astype(np.float32), np.arange(20) % 4
    pf, pl = rng.standard_normal((8, WIDTH)).astype(np.float32), np.arange(8) % 4
    path = tmp_path / "data.npz"
    np.savez_compressed(
        path, features=feats, labels=labels, prototype_features=pf, prototype_labels=pl, wnids=np.array(wnids)
    )
    spec = data_lib.DataSpec(source="npz", features=str(path), wnids=(wnids[3], wnids[1]))
    fs = data_lib.load_features(spec)
    assert fs.wnids == [wnids[3], wnids[1]] and fs.num_items == 10 and fs.num_prototypes == 4
    np.testing.assert_array_equal(fs.features[fs.num_items :], pf[np.isin(pl, [1, 3])])
    np.testing.assert_array_equal(fs.labels[fs.num_items :], np.where(pl[np.isin(pl, [1, 3])] == 3, 0, 1))


def test_npz_uncompressed_members_are_memory_mapped(tmp_path):
    feats = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.savez(tmp_path / "a.npz", features=feats, labels=np.arange(4))
    arrays = files.read_npz(str(tmp_path / "a.npz"))
    assert isinstance(arrays["features"], np.memmap)
    np.testing.assert_array_equal(arrays["features"], feats)


@pytest.mark.parametrize("kind", ["npy", "txt"])
def test_npy_loader_reads_labels_as_npy_or_text(tmp_path, kind):
    feats = np.random.default_rng(2).standard_normal((30, WIDTH)).astype(np.float32)
    labels = np.arange(30) % 3
    np.save(tmp_path / "f.npy", feats)
    if kind == "npy":
        np.save(tmp_path / "labels.npy", labels)
    else:
        (tmp_path / "labels.txt").write_text("\n".join(map(str, labels)) + "\n\n")
    spec = data_lib.DataSpec(
        source="npy",
        features=str(tmp_path / "f.npy"),
        labels=str(tmp_path / f"labels.{kind}"),
        wnids=tuple(CLASSES),
        n_prototype_per_class=4,
    )
    fs = data_lib.load_features(spec)
    assert fs.num_items == 18 and fs.num_prototypes == 12 and fs.wnids == CLASSES
    np.testing.assert_array_equal(labels[_rows_in_file(fs, feats)], fs.labels)


def _break(tmp_path, reference, how):
    """A spec whose files have one problem."""
    feat_path, list_path, feats, _ = reference
    spec = _spec(features=feat_path, image_list=list_path)
    if how == "missing features":
        return _spec(features=str(tmp_path / "nope.npy"), image_list=list_path)
    if how == "empty image list setting":
        return _spec(features=feat_path, image_list="")
    if how == "row count":
        np.save(feat_path, feats[:-1])
    elif how == "nan":
        bad = feats.copy()
        bad[5, 2] = np.nan
        np.save(feat_path, bad)
    elif how == "malformed line":
        lines = open(list_path).read().splitlines()
        lines[3] = "no-slash-here 1"
        open(list_path, "w").write("\n".join(lines))
    elif how == "unknown wnid":
        spec = _spec(wnids=(CLASSES[0], "n00000042"), features=feat_path, image_list=list_path)
    elif how == "too few images":
        spec = _spec(n_prototype_per_class=PER_CLASS, features=feat_path, image_list=list_path)
    elif how == "distraction without enough others":
        spec = _spec(n_data_distraction_per_class=PER_CLASS, features=feat_path, image_list=list_path)
    elif how == "not an array":
        open(feat_path, "w").write("not a numpy file")
    return spec


@pytest.mark.parametrize(
    "how, message",
    [
        ("missing features", "does not exist"),
        ("empty image list setting", "data.image_list is empty"),
        ("row count", "rows but data.image_list"),
        ("nan", "NaN or inf"),
        ("malformed line", "line 4: expected 'wnid/file.JPEG label'"),
        ("unknown wnid", "n00000042"),
        ("too few images", "expected at least n_prototype_per_class + 1"),
        ("distraction without enough others", "images of other wnids"),
        ("not an array", "is not a .npy array"),
    ],
)
def test_reference_loader_names_every_file_problem(tmp_path, reference, how, message):
    spec = _break(tmp_path, reference, how)
    with pytest.raises(ValueError, match=message.replace("+", r"\+").replace("(", r"\(")):
        data_lib.load_features(spec)


def _npz_error(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as err:
        data_lib.load_features(data_lib.DataSpec(source="npz", features=str(path), n_prototype_per_class=2))
    return str(err.value)


def test_npz_loader_names_every_field_problem(tmp_path):
    f = np.zeros((12, WIDTH), np.float32) + np.arange(12)[:, None]
    lab = np.arange(12) % 3
    assert "field 'labels'" in _npz_error(tmp_path, features=f)
    assert "found 11" in _npz_error(tmp_path, features=f, labels=lab[:11])
    assert ">= 0, found -1 at row 4" in _npz_error(tmp_path, features=f, labels=np.where(np.arange(12) == 4, -1, lab))
    assert "[0, 2)" in _npz_error(tmp_path, features=f, labels=lab, class_names=np.array(["a", "b"]))
    assert "integer labels" in _npz_error(tmp_path, features=f, labels=lab.astype(float))
    assert "2-D" in _npz_error(tmp_path, features=f[:, 0], labels=lab)
    assert "together" in _npz_error(tmp_path, features=f, labels=lab, prototype_features=f[:3])
    assert "width D = 6" in _npz_error(
        tmp_path, features=f, labels=lab, prototype_features=f[:3, :2], prototype_labels=lab[:3]
    )
    assert "class 2" in _npz_error(
        tmp_path, features=f, labels=np.where(lab == 2, 1, lab), class_names=np.array(["a", "b", "c"])
    )
    assert "inf" in _npz_error(tmp_path, features=np.where(np.arange(12)[:, None] == 7, np.inf, f), labels=lab)


def test_npy_loader_names_label_file_problems(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((4, WIDTH), np.float32))
    (tmp_path / "l.txt").write_text("0\n1\nbird\n0\n")
    spec = data_lib.DataSpec(source="npy", features=str(tmp_path / "f.npy"), labels=str(tmp_path / "l.txt"))
    with pytest.raises(ValueError, match=r"l.txt' line 3: found text 'bird' among integer labels"):
        data_lib.load_features(spec)
    with pytest.raises(ValueError, match="data.labels is empty"):
        data_lib.load_features(data_lib.DataSpec(source="npy", features=str(tmp_path / "f.npy")))


def test_configured_class_list_must_match_unnamed_labels(tmp_path):
    np.savez(tmp_path / "a.npz", features=np.eye(12, WIDTH, dtype=np.float32), labels=np.arange(12) % 2)
    spec = data_lib.DataSpec(
        source="npz", features=str(tmp_path / "a.npz"), wnids=tuple(CLASSES), n_prototype_per_class=2
    )
    with pytest.raises(ValueError, match="file has 2 classes and no 'wnids'.*has 3"):
        data_lib.load_features(spec)


def test_distraction_needs_the_reference_format(tmp_path):
    with pytest.raises(ValueError, match="needs data.source='reference'"):
        data_lib.load_features(data_lib.DataSpec(source="npz", features="x.npz", n_data_distraction_per_class=1))
    with pytest.raises(ValueError, match="needs data.source='reference'"):
        data_lib.load_features(data_lib.DataSpec(wnids=tuple(CLASSES), n_data_distraction_per_class=1))


def test_real_workers_need_classes_with_real_worker_data(reference):
    feat_path, list_path, _, _ = reference
    fs = data_lib.load_features(_spec(wnids=(CLASSES[0], OTHERS[1]), features=feat_path, image_list=list_path))
    with pytest.raises(ValueError, match="not among the 100 classes"):
        data_lib.make_dataset(fs, "structured_noise", "homegeneous_workers")
    data_lib.make_dataset(fs, "uniform", "predefined_homegeneous")  # synthetic workers need no crowd data


def _reference_config(feat_path, list_path, **overrides):
    cfg = test_config.get_config()
    cfg.method = "efficient_annotation"
    cfg.experiment = ""
    cfg.data.source, cfg.data.features, cfg.data.image_list = "reference", feat_path, list_path
    cfg.wnids = " ".join(CLASSES)
    cfg.n_prototype_per_class = 4
    for path, value in overrides.items():
        node = cfg
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def test_prepare_turns_file_problems_into_config_errors(tmp_path, reference):
    feat_path, list_path, _, _ = reference
    with pytest.raises(config_lib.ConfigError, match="data: .*does not exist"):
        experiment.prepare(_reference_config(str(tmp_path / "missing.npy"), list_path))
    with pytest.raises(config_lib.ConfigError, match="not among the 100 classes"):
        experiment.prepare(_reference_config(feat_path, list_path, wnids=f"{CLASSES[0]} {OTHERS[1]}"))


@pytest.mark.slow
def test_reference_files_with_distraction_run_end_to_end(tmp_path):
    feat_path, list_path, _, _ = _write_reference(tmp_path, per_class=20)
    # Separable features so the outcome is checkable: class c sits near 4 * e_c.
    feats = np.load(feat_path)
    line_wnids = [line.split("/")[0] for line in open(list_path).read().splitlines()]
    for i, w in enumerate(line_wnids):
        feats[i, min((CLASSES + OTHERS).index(w), len(CLASSES))] += 4.0
    np.save(feat_path, feats)
    cfg = _reference_config(
        feat_path,
        list_path,
        n_data_distraction_per_class=3,
        **{"run.max_steps": 6, "run.chunk_steps": 6, "worker.type": "structured_noise", "learner.lr_ratio": 1e-2},
    )
    problem = experiment.prepare(cfg)
    k = len(CLASSES)
    assert problem.static.num_classes == k + 1 and problem.static.num_items == k * 16 + k * 3
    result = experiment.run(problem)
    frame = results.metrics_frame(result.metrics, problem.seeds, problem.points)
    assert np.isfinite(frame["aggregate/all/top1"]).all() and frame["cost"].max() > 0
    confusion = np.asarray(result.state.workers.true_confusion)
    assert confusion.shape[-2:] == (k + 1, k + 1)
    np.testing.assert_allclose(confusion.sum(-1), 1.0, rtol=1e-5)
    step0 = frame[frame["step"] == 0]
    assert step0["learner/all/top1"].mean() > 0.8  # 2 training prototypes per class suffice here
    assert frame.groupby("seed")["aggregate/all/top1"].last().min() > 0.8
    n = problem.static.num_items
    posterior = np.asarray(result.state.em.posterior).reshape(-1, n, k + 1)  # every (grid, seed) lane
    is_other = problem.features.labels[:n] == k
    assert (posterior[:, is_other].argmax(-1) == k).mean() > 0.8  # distraction items end up in 'other'


def test_standin_is_deterministic_per_seed(tmp_path):
    args = (CLASSES, np.array([30, 20, 25]), 4, 16)
    a, la, _ = standin.generate(*args, seed=3, noise=(0.3, 0.2))
    b, lb, _ = standin.generate(*args, seed=3, noise=(0.3, 0.2))
    c, _, _ = standin.generate(*args, seed=4, noise=(0.3, 0.2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.allclose(a, c)
    spec = data_lib.DataSpec(
        wnids=tuple(CLASSES),
        n_data_per_class=10,
        n_prototype_per_class=4,
        feature_dim=16,
        seed=3,
        cache_dir=str(tmp_path),
    )
    first, again = data_lib.load_features(spec), data_lib.load_features(spec)  # generated, then cached
    np.testing.assert_array_equal(first.features, again.features)
    assert len(list(tmp_path.iterdir())) == 3  # features, labels and their checksum file


def test_standin_has_the_requested_counts(tmp_path):
    spec = data_lib.DataSpec(
        experiment="imagenet_split_2",
        wnids=tuple(amt.experiment_wnids("imagenet_split_2")),
        n_data_per_class=7,
        n_prototype_per_class=3,
        feature_dim=16,
        cache_dir=str(tmp_path),
    )
    fs = data_lib.load_features(spec)
    k = len(spec.wnids)
    assert fs.num_items == 7 * k and fs.num_prototypes == 3 * k and fs.features.shape == (10 * k, 16)
    np.testing.assert_array_equal(np.bincount(fs.labels[: fs.num_items]), [7] * k)
    assert fs.class_names[0] == amt.class_names()[spec.wnids[0]]
    counts = standin.class_counts("imagenet_100_classes", 100, 3000)
    assert counts.sum() == standin.PAPER_ITEM_COUNTS["imagenet_100_classes"] and counts.max() - counts.min() <= 1


def _pair_distances(wnids):
    means = standin.class_means(standin.class_similarity(wnids))
    return np.linalg.norm(means[:, None] - means[None], axis=-1)


def test_standin_same_group_classes_are_closer_and_human_confused_pairs_closest():
    wnids = amt.experiment_wnids("imagenet_animal")  # dogs (group 0) and vertebrates (group 1)
    dist = _pair_distances(wnids)
    group = amt.class_groups(wnids)
    same = (group[:, None] == group[None]) & ~np.eye(len(wnids), dtype=bool)
    cross = group[:, None] != group[None]
    assert dist[same].max() < dist[cross].min()
    counts = amt.crowd_arrays(wnids)["global_counts"]
    conf = counts / counts.sum(1, keepdims=True)
    sym = np.where(same, conf + conf.T, -1.0)
    i, j = np.unravel_index(np.argmax(sym), sym.shape)  # the pair humans confuse most
    assert dist[i, j] < np.median(dist[same]) and dist[i, j] == dist[same].min()


def test_standin_features_follow_the_class_geometry():
    wnids = amt.experiment_wnids("imagenet_animal")[15:25]  # both groups
    feats, labels, _ = standin.generate(wnids, np.full(10, 400), 0, 32, 0, (0.3, 0.3))
    centroids = np.stack([feats[labels == c].mean(0) for c in range(10)])
    empirical = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
    np.testing.assert_allclose(empirical, _pair_distances(wnids), atol=0.1)


def test_standin_noise_has_signal_std_in_k_dims_and_nuisance_std_elsewhere(monkeypatch):
    monkeypatch.setattr(standin, "TAIL_DOF", math.inf)  # Gaussian: sample variances are sharp
    k, width = 3, 12
    feats, labels, _ = standin.generate(CLASSES, np.full(k, 4000), 0, width, 0, (0.5, 0.1))
    centred = feats - np.stack([feats[labels == c].mean(0) for c in range(k)])[labels]
    eig = np.linalg.eigvalsh(np.cov(centred.T))[::-1]
    np.testing.assert_allclose(eig[:k], 0.25, rtol=0.08)
    np.testing.assert_allclose(eig[k:], 0.01, rtol=0.12)


def test_standin_calibration_covers_every_experiment_at_both_default_widths():
    for name in amt.experiments():
        for width in (128, 2048):
            s, u = standin.noise_levels(name, width)
            assert (name, width) in standin.CALIBRATION and s > 0 and u > 0
    assert standin.noise_levels("custom", 77) == standin.DEFAULT_NOISE


def test_lookalike_geometry_with_no_lookalikes_is_the_compact_set():
    """The look-alikes come from a stream of their own: the compact rows are unchanged."""
    args = (CLASSES, np.array([30, 20, 25]), 4, 16, 3, (0.3, 0.2))
    compact, labels, _ = standin.generate(*args)
    none, labels_none, _ = standin.generate(*args, lookalikes=lookalike.Settings(0.3, 0.2, 0.0, 0.9, 6.0))
    np.testing.assert_array_equal(compact, none)
    np.testing.assert_array_equal(labels, labels_none)


def test_lookalike_rows_sit_between_their_class_and_the_class_they_resemble():
    """Noise-free rows against the hand-computed means: (1 - pull) mu_c + pull mu_j, plus offset * dir[c, j]."""
    wnids = amt.experiment_wnids("imagenet_animal")[15:25]  # dogs and vertebrates
    settings = lookalike.Settings(0.0, 0.0, 0.4, 0.75, 2.0)
    per_class = np.full(10, 300)
    feats, labels, _ = standin.generate(wnids, per_class, 0, 32, 5, (0.0, 0.0), lookalikes=settings)
    d = standin.draw(wnids, per_class, 0, 32, 5, settings)
    other = d.lookalikes.resembles
    look = other >= 0
    assert abs(look.mean() - 0.4) < 0.03 and (other[look] != labels[look]).all()
    means = d.means.astype(np.float64)
    expected = means[labels]
    expected[look] = 0.25 * means[labels[look]] + 0.75 * means[other[look]]
    expected = expected @ d.basis
    expected[look] += 2.0 * d.lookalikes.directions[labels[look], other[look]]
    np.testing.assert_allclose(feats, expected, atol=1e-5)
    group = amt.class_groups(wnids)
    assert (group[other[look]] == group[labels[look]]).mean() > 0.6  # similar classes are resembled most


def test_lookalike_geometry_loads_calibrated_sets_only(tmp_path):
    dog = dict(
        experiment="imagenet_split_0",
        wnids=tuple(amt.experiment_wnids("imagenet_split_0")),
        n_data_per_class=20,
        n_prototype_per_class=2,
        cache_dir=str(tmp_path),
    )
    compact = data_lib.load_features(data_lib.DataSpec(**dog))
    look = data_lib.load_features(data_lib.DataSpec(**dog, standin_geometry="lookalike"))
    assert "lookalike geometry" in look.description and "lookalike" not in compact.description
    assert not np.allclose(compact.features, look.features)
    assert len(list(tmp_path.glob("*.features.npy"))) == 2  # cached apart
    settings = lookalike.CALIBRATION[("imagenet_split_0", 128)]
    regenerated, _, _ = standin.generate(
        list(dog["wnids"]), np.full(19, 20), 2, 128, 0, tuple(settings[:2]), lookalikes=settings
    )
    np.testing.assert_array_equal(look.features, regenerated)
    with pytest.raises(
        ValueError, match=r"standin_geometry='lookalike': no calibration for experiment 'imagenet_split_2'"
    ):
        spec = dict(dog, experiment="imagenet_split_2", wnids=tuple(amt.experiment_wnids("imagenet_split_2")))
        data_lib.load_features(data_lib.DataSpec(**spec, standin_geometry="lookalike"))
    with pytest.raises(ValueError, match=r"standin_geometry='lookalike': no calibration .* width data.feature_dim=64"):
        data_lib.load_features(data_lib.DataSpec(**dog, feature_dim=64, standin_geometry="lookalike"))
    with pytest.raises(ValueError, match=r"data.standin_geometry='bent': expected one of \['compact', 'lookalike'\]"):
        data_lib.load_features(data_lib.DataSpec(**dog, standin_geometry="bent"))
    with pytest.raises(ValueError, match=r"applies to stand-in features only"):
        data_lib.load_features(data_lib.DataSpec(source="npz", features="x.npz", standin_geometry="lookalike"))


def test_make_dataset_rejects_with_other_without_an_other_class(reference):
    feat_path, list_path, _, _ = reference
    fs = data_lib.load_features(_spec(features=feat_path, image_list=list_path))
    with pytest.raises(ValueError, match="last class is 'other'"):
        data_lib.make_dataset(copy.copy(fs), "uniform", "predefined_homegeneous", with_other=True)
