"""Presets, precedence, sweep grids and the input checks that run before anything compiles."""

from __future__ import annotations

import numpy as np
import pytest

from configs import test as test_config
from jaxanno import config, experiment, outputs


def _cfg(**changes):
    cfg = test_config.get_config()
    for path, value in changes.items():
        config._set(cfg, path, value)
    return cfg


def test_presets_fill_only_what_is_unset():
    cfg = test_config.get_config("imagenet_split_0,efficient_annotation")
    cfg.learner.lr_ratio = 5e-4
    r = config.resolve(cfg)
    assert r.online.hit_size == 6, "an explicit value beats the experiment preset"
    assert r.online.budget == 400000 and r.risk_thres == 0.1, "unset fields come from the experiment"
    assert r.learner.semi_supervised == "pseudolabel" and r.learner.early_stop_scope == "global"
    assert r.learner.lr_ratio == 5e-4
    assert config.resolve(config.default_config()).learner.algo == "dummy"


def test_every_packaged_experiment_and_method_resolves():
    from jaxanno.data import amt

    for name in amt.experiments():
        for method in config.METHODS:
            cfg = config.apply_preset_names(config.default_config(), f"{name},{method}")
            config.validate(config.resolve(cfg))


def test_sweep_grid_is_the_cartesian_product():
    cfg = _cfg(**{"sweep.risk_threshold": (0.05, 0.2), "sweep.lr_ratio": (1e-4, 1e-3, 1e-2)})
    grid, points = config.sweep_grid(config.resolve(cfg))
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
        ({"worker.type": "martian"}, "worker.type='martian'"),
        ({"learner.calibrate": "cv_1"}, "learner.calibrate='cv_1'"),
        ({"sweep.risk_threshold": (0.1, 2.0)}, "sweep.risk_threshold value 2.0"),
        ({"online.hit_size": 61}, "online.hit_size=61: expected at most the number of items to label (60)"),
    ],
)
def test_bad_settings_stop_before_compiling_with_a_clear_message(changes, fragment):
    with outputs.count_compiles() as compiles, pytest.raises(config.ConfigError) as err:
        experiment.prepare(_cfg(**changes))
    assert fragment in str(err.value)
    assert sum(compiles.values()) == 0


def test_unknown_config_key_is_rejected_by_the_locked_config():
    cfg = test_config.get_config()
    cfg.lock()
    with pytest.raises(AttributeError):
        cfg.learner.learning_rate = 0.1


def test_from_dict_round_trips_a_resolved_config():
    r = config.resolve(_cfg(**{"sweep.prior_strength": (1.0, 10.0)}))
    back = config.from_dict(config.to_dict(r))
    assert config.to_dict(back) == config.to_dict(r)


@pytest.mark.parametrize("name", sorted(__import__("jaxanno.data.amt", fromlist=["x"]).experiments()))
def test_every_experiment_runs_with_its_stand_in(name, tmp_path):
    """Each experiment prepares with its own classes and stand-in (small counts: no compile)."""
    cfg = config.apply_preset_names(config.default_config(), f"{name},efficient_annotation")
    cfg.n_data_per_class, cfg.data.cache_dir = 4, str(tmp_path)
    problem = experiment.prepare(cfg)
    k = len(cfg.wnids.split()) if cfg.wnids else len(config.resolve(cfg).wnids.split())
    assert problem.static.num_classes == k
    assert problem.static.num_items == 4 * k and problem.static.num_prototypes == 10 * k
    assert problem.static.learner is not None and problem.static.feature_dim == 128


def test_a_user_flax_module_plugs_in_by_config():
    cfg = test_config.get_config("efficient_annotation")
    cfg.learner.module = "tests.custom_model:TwoLayerGelu"
    static = experiment.prepare(cfg).static
    from tests.custom_model import TwoLayerGelu

    assert isinstance(static.learner.model, TwoLayerGelu) and static.learner.model.num_classes == 3
    bad = test_config.get_config("efficient_annotation")
    bad.learner.module = "tests.custom_model:Nope"
    with pytest.raises(config.ConfigError, match="learner.module"):
        experiment.prepare(bad)
