"""The config schema: presets, precedence, conversion to `Static` / `Params`, sweep grids and
the input checks that run before anything compiles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from configs import test as test_config
from jaxanno import config, experiment, outputs, types
from jaxanno.data import amt


def _cfg(**changes):
    cfg = test_config.get_config()
    for path, value in changes.items():
        config.set_field(cfg, path, value)
    return cfg


def test_presets_fill_only_what_is_unset():
    cfg = _cfg(experiment="imagenet_split_0", method="efficient_annotation", **{"learner.lr_ratio": 5e-4})
    cfg.learner.semi_supervised = "mixmatch"
    r = config.resolve(cfg)
    assert r.online.hit_size == 6, "an explicit value beats the experiment preset"
    assert r.online.budget == 400000 and r.risk_thres == 0.1, "unset fields come from the experiment"
    assert r.learner.semi_supervised == "mixmatch", "an explicit value beats the method preset"
    assert r.learner.early_stop_scope == "global" and r.learner.calibrate == "temperature"
    assert r.learner.lr_ratio == 5e-4
    assert config.resolve(config.default_config()).learner.algo == "dummy"


def test_without_an_experiment_the_defaults_come_from_types():
    cfg = config.default_config()
    cfg.experiment, cfg.wnids = "", "n02138441 n02326432"
    r = config.resolve(cfg)
    assert r.online.budget == types.PARAM_DEFAULTS["budget"] and r.risk_thres == types.PARAM_DEFAULTS["risk_threshold"]
    assert r.online.hit_size == 40 and r.n_prototype_per_class == 10 and r.n_data_per_class is None


def test_every_preset_sets_only_fields_a_preset_governs():
    """A preset value for a field that starts set would silently never apply."""
    governed = {path for path, f in config.SCHEMA.items() if f.preset}
    for table in (config.METHODS, config.SIMULATIONS):
        for name, fields in table.items():
            assert set(fields) <= governed, name
    for name in amt.experiments():
        r = config.resolve(_cfg(experiment=name, wnids=None, n_data_per_class=None, **{"online.hit_size": None}))
        assert r.wnids.split() == amt.experiments()[name]["wnids"]
        assert r.online.hit_size == amt.experiments()[name]["online"]["hit_size"]


def test_every_params_field_is_one_config_field():
    assert list(config.PARAM_PATHS) == list(types.PARAM_DEFAULTS)
    assert len(set(config.PARAM_PATHS.values())) == len(types.PARAM_DEFAULTS)


def test_every_packaged_experiment_and_method_resolves():
    for name in amt.experiments():
        for method in config.METHODS:
            cfg = config.default_config()
            cfg.experiment, cfg.method = name, method
            config.validate(config.resolve(cfg))


def test_to_static_puts_every_field_in_its_place():
    cfg = _cfg(method="lean", **{"optimizer.m_step": "soft", "sampler.algo": "greedy_task_assignment"})
    cfg.learner.calibrate, cfg.optimizer.item_block, cfg.worker.prior.type = "cv_4", 64, "heterogeneous_workers"
    r = config.resolve(cfg)
    static = experiment.to_static(r, 60, 12, 3, 8)
    expected = types.Static(
        num_items=60, num_prototypes=12, num_classes=3, num_workers=6, feature_dim=8, hit_size=6, hits_per_step=2,
        n_prototype_per_class=4, sampler="greedy_task_assignment", prior_type="heterogeneous_workers",
        em=types.EMStatic(criterion="hard", m_step="soft", item_block=64),
        learner=types.LearnerStatic(
            model=static.learner.model, batch_size=16, max_epochs=20, eval_every=5, calibrate="cv", cv_folds=4,
            prototype_as_val=False,
        ),
    )  # fmt: skip
    assert static == expected
    assert static.learner.model.hidden_sizes == (8,)
    params = experiment.to_params(r)
    assert params.budget.dtype == np.int32 and int(params.budget) == 400000
    assert float(params.pseudo_label_threshold) == pytest.approx(r.learner.risk_thres)


def test_the_default_config_gives_the_default_static():
    r = config.resolve(config.default_config())
    static = experiment.to_static(r, 10, 4, 2, 5)
    sizes = dict(num_items=10, num_prototypes=4, num_classes=2, num_workers=50, feature_dim=5)
    default = types.Static(**sizes, em=dataclasses.replace(types.EMStatic(), item_block=static.em.item_block))
    assert static == default and static.learner is None


def test_sweep_grid_is_the_cartesian_product():
    cfg = _cfg(**{"sweep.risk_threshold": (0.05, 0.2), "sweep.lr_ratio": (1e-4, 1e-3, 1e-2)})
    grid, points = experiment.sweep_grid(config.resolve(cfg))
    assert len(points) == 6
    np.testing.assert_allclose(grid.risk_threshold, [0.05] * 3 + [0.2] * 3)
    np.testing.assert_allclose(grid.lr_ratio, [1e-4, 1e-3, 1e-2] * 2, rtol=1e-6)
    assert grid.budget.shape == (6,) and grid.budget.dtype == np.int32


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"method": "bogus"}, "method='bogus'"),
        ({"simulation": "robots"}, "simulation='robots'"),
        ({"experiment": "imagenet_split_9"}, "experiment='imagenet_split_9'"),
        ({"risk_thres": 1.5}, "risk_thres=1.5: expected a value in (0, 1)"),
        ({"risk_thres": 0.0}, "risk_thres=0.0"),
        ({"sampler.max_annotation_per_example": 0}, "sampler.max_annotation_per_example=0"),
        ({"online.budget": -1}, "online.budget=-1: expected a non-negative"),
        ({"online.n_hits_per_step": 7}, "online.n_hits_per_step=7: expected at most worker.n=6"),
        ({"worker.type": "martian"}, "worker.type='martian': expected one of ['perfect'"),
        ({"sampler.algo": "greedy"}, "sampler.algo='greedy': expected one of ['random', 'greedy_task_assignment']"),
        ({"learner.calibrate": "cv_1"}, "learner.calibrate='cv_1'"),
        ({"learner.calibrate": "cv"}, "learner.calibrate='cv'"),
        ({"method": "lean", "learner.prototype_as_val": True}, "only with learner.prototype_as_val=False"),
        ({"sweep.risk_threshold": (0.1, 2.0)}, "sweep.risk_threshold value 2.0"),
        ({"online.hit_size": 61}, "online.hit_size=61: expected at most the number of items to label (60)"),
    ],
)
def test_bad_settings_stop_before_compiling_with_a_clear_message(changes, fragment):
    with outputs.count_compiles() as compiles, pytest.raises(config.ConfigError) as err:
        experiment.prepare(_cfg(**changes))
    assert fragment in str(err.value)
    assert sum(compiles.values()) == 0


def test_unknown_and_missing_keys_are_one_clear_error():
    cfg = test_config.get_config()
    with cfg.unlocked():
        cfg.learner.lr_ration = 0.1
    with pytest.raises(
        config.ConfigError, match="unknown config key 'learner.lr_ration'; did you mean 'learner.lr_ratio'"
    ):
        config.resolve(cfg)
    partial = config.default_config()
    with partial.unlocked():
        del partial.run["seed"]
    with pytest.raises(config.ConfigError, match=r"config keys \['run.seed'\] are missing"):
        config.resolve(partial)


@pytest.mark.parametrize("name", sorted(amt.experiments()))
def test_every_experiment_runs_with_its_stand_in(name, tmp_path):
    """Each experiment prepares with its own classes and stand-in (small counts: no compile)."""
    cfg = config.default_config()
    cfg.experiment, cfg.method = name, "efficient_annotation"
    cfg.n_data_per_class, cfg.data.cache_dir = 4, str(tmp_path)
    problem = experiment.prepare(cfg)
    k = len(amt.experiments()[name]["wnids"])
    assert problem.static.num_classes == k
    assert problem.static.num_items == 4 * k and problem.static.num_prototypes == 10 * k
    assert problem.static.learner is not None and problem.static.feature_dim == 128


def test_a_user_flax_module_plugs_in_by_config():
    cfg = _cfg(method="efficient_annotation", **{"learner.module": "tests.custom_model:TwoLayerGelu"})
    static = experiment.prepare(cfg).static
    from tests.custom_model import TwoLayerGelu

    assert isinstance(static.learner.model, TwoLayerGelu) and static.learner.model.num_classes == 3
    bad = _cfg(method="efficient_annotation", **{"learner.module": "tests.custom_model:Nope"})
    with pytest.raises(config.ConfigError, match="learner.module"):
        experiment.prepare(bad)
