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


def test_the_plus_method_selects_items_by_risk_reduction_and_the_others_at_random():
    for method in config.METHODS:
        r = config.resolve(_cfg(method=method))
        want = "risk_reduction" if method == "efficient_annotation_plus" else "random"
        assert r.sampler.item_score == want, method
        assert experiment.to_static(r, 60, 12, 3, 8).item_score == want
    plus, base = config.METHODS["efficient_annotation_plus"], config.METHODS["efficient_annotation"]
    assert {k: v for k, v in plus.items() if k != "sampler.item_score"} == base
    explicit = config.resolve(_cfg(method="efficient_annotation_plus", **{"sampler.item_score": "random"}))
    assert explicit.sampler.item_score == "random", "an explicit value beats the method preset"


def test_the_calibrated_method_fits_the_learner_temperature_exactly_and_the_others_by_the_reference():
    for method in config.METHODS:
        r = config.resolve(_cfg(method=method))
        want = "exact" if method == "efficient_annotation_calibrated" else "reference"
        assert r.learner.temperature_solver == want, method
        if method != "ds_model":
            assert experiment.to_static(r, 60, 12, 3, 8).learner.temperature_solver == want
    calibrated, base = config.METHODS["efficient_annotation_calibrated"], config.METHODS["efficient_annotation"]
    new_fields = ("sampler.item_score", "learner.temperature_solver")
    assert {k: v for k, v in calibrated.items() if k not in new_fields} == base
    assert calibrated["sampler.item_score"] == "random"


def test_sampler_temperature_is_a_checked_sweep_axis():
    cfg = _cfg(**{"sampler.temperature": -0.1})
    with pytest.raises(config.ConfigError, match=r"sampler.temperature=-0.1: expected a finite number in \[0, 100\]"):
        config.validate(config.resolve(cfg))
    cfg = _cfg()
    cfg.sweep.selection_temperature = (0.0, 0.5)
    points = experiment.sweep_points(config.resolve(cfg))
    assert points == [{"selection_temperature": 0.0}, {"selection_temperature": 0.5}]


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
        ({"risk_thres": 1.5}, "risk_thres=1.5: expected a finite number in (0, 1)"),
        ({"risk_thres": 0.0}, "risk_thres=0.0"),
        ({"sampler.max_annotation_per_example": 0}, "sampler.max_annotation_per_example=0"),
        ({"online.budget": -1}, "online.budget=-1: expected an integer in [0, 2147483647]"),
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


_BIG = 2**32 + 30
NUMERIC_PATHS = [p for p, f in config.SCHEMA.items() if type(f.default) in (int, float) or f.kind is int]


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"online.budget": 4294967326}, "online.budget=4294967326: expected an integer in [0, 2147483647] (labels"),
        ({"online.budget": 2**31}, "online.budget=2147483648"),
        ({"sampler.max_annotation_per_worker": 4294967302}, "sampler.max_annotation_per_worker=4294967302"),
        ({"sweep.budget": (30.7, 1e12)}, "sweep.budget value 30.7: expected a whole number"),
        ({"sweep.budget": (30, 1e12)}, "sweep.budget value 1000000000000: setting online.budget=1000000000000"),
        ({"sweep.max_annotation_per_worker": (_BIG,)}, f"max_annotation_per_worker={_BIG}"),
        ({"sweep.prior_strength": (1.0, "strong")}, "sweep.prior_strength value 'strong': expected a number"),
        ({"sweep.lr_ratio": (1e-3, float("nan"))}, "sweep.lr_ratio value nan: setting learner.lr_ratio=nan"),
        ({"worker.prior.strength": float("inf")}, "worker.prior.strength=inf: expected a finite number in [0, "),
        ({"worker.prior.strength": 1e40}, "worker.prior.strength=1e+40"),
        ({"worker.prior.strength": -1.0}, "worker.prior.strength=-1.0"),
        ({"worker.prior.pos_count": -2.0}, "worker.prior.pos_count=-2.0: expected a finite number in [0,"),
        ({"worker.prior.neg_count": float("nan")}, "worker.prior.neg_count=nan"),
        ({"worker.reliability.mean": float("nan")}, "worker.reliability.mean=nan: expected a finite number in (0, 1]"),
        ({"worker.reliability.mean": 2.0}, "worker.reliability.mean=2.0"),
        ({"worker.reliability.mean": -1.0}, "worker.reliability.mean=-1.0"),
        ({"worker.reliability.std": -0.1}, "worker.reliability.std=-0.1"),
        ({"worker.out_of_group_noise": 1.5}, "worker.out_of_group_noise=1.5"),
        ({"worker.difficulty.mean": 0.0}, "worker.difficulty.mean=0.0: expected a finite number in (0, 1)"),
        ({"worker.difficulty.spread": -0.1}, "worker.difficulty.spread=-0.1: expected a finite number in [0, 1]"),
        (
            {"worker.difficulty.mean": 0.5, "worker.difficulty.spread": 0.3},
            "setting worker.difficulty.spread=0.3: expected at most mean * sqrt((1 - mean) / (1 + mean)) = 0.2887 "
            "for worker.difficulty.mean=0.5",
        ),
        ({"sweep.difficulty_spread": (0.1, 0.2)}, "sweep.difficulty_spread value 0.2: setting worker.difficulty"),
        ({"learner.lr_ratio": float("nan")}, "learner.lr_ratio=nan: expected a finite number in (0, 1]"),
        ({"learner.lr_ratio": 1e6}, "learner.lr_ratio=1000000.0"),
        ({"learner.weight_decay": float("inf")}, "learner.weight_decay=inf"),
        ({"learner.mixmatch.alpha": 0.0}, "learner.mixmatch.alpha=0.0: expected a finite number > 0"),
        ({"optimizer.log_epsilon": -1.0}, "optimizer.log_epsilon=-1.0: expected a finite number in (0, 1)"),
        ({"optimizer.log_epsilon": 0.0}, "optimizer.log_epsilon=0.0"),
        ({"optimizer.likelihood_epsilon": float("nan")}, "optimizer.likelihood_epsilon=nan"),
        ({"risk_thres": float("nan")}, "risk_thres=nan"),
        ({"learner.risk_thres": 1.0}, "learner.risk_thres=1.0"),
        ({"wnids": "n02138441 n02326432 n02138441"}, "expected distinct class ids; repeated: ['n02138441']"),
        ({"run.num_seeds": 2 * 10**9}, "run.num_seeds=2000000000: expected an integer in [1, 65536]"),
        ({"run.chunk_steps": 10**9}, "run.chunk_steps=1000000000: expected an integer in [1, 10000]"),
        ({"run.num_seeds": 60000, "run.chunk_steps": 10000}, "60000 lanes x 10000 steps x 27 columns x 4 bytes"),
        ({"run.seed": -1}, "run.seed=-1: expected an integer in [0, 4294967295]"),
        ({"run.seed": 2**32 - 1}, "run.seed + run.num_seeds - 1 <= 4294967295"),
        ({"data.seed": -1}, "data.seed=-1"),
        ({"run.max_steps": 0}, "run.max_steps=0: expected -1 (automatic) or at least 1 step"),
        ({"run.max_steps": -5}, "run.max_steps=-5"),
        ({"sampler.max_annotation_per_example": 65}, "sampler.max_annotation_per_example=65: expected an integer in"),
        ({"worker.n": 10**5}, "worker.n=100000"),
        ({"learner.hidden_size": 0}, "learner.hidden_size=0"),
        ({"n_data_per_class": 10**7}, "n_data_per_class=10000000"),
    ],
)
def test_every_numeric_setting_is_range_checked_with_the_limit_and_why(changes, fragment):
    with pytest.raises(config.ConfigError) as err:
        config.validate(config.resolve(_cfg(**changes)))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_every_numeric_field_has_a_range_rule():
    """A new numeric field without a range would accept NaN, inf or a value that wraps."""
    ruled = {path for path, _, _ in config.RULES}
    assert set(NUMERIC_PATHS) - ruled == set()
    assert len(NUMERIC_PATHS) > 35


def test_the_recorded_config_holds_the_integers_that_run():
    r = config.resolve(_cfg(**{"sweep.budget": (30.0, 1e3)}))
    config.validate(r)
    assert r.sweep.budget == (30, 1000) and all(type(v) is int for v in r.sweep.budget)
    grid, points = experiment.sweep_grid(r)
    np.testing.assert_array_equal(grid.budget, [30, 1000])
    assert points == [{"budget": 30}, {"budget": 1000}]


def test_values_at_the_limits_are_accepted():
    at_limits = {
        "online.budget": 2**31 - 1, "sampler.max_annotation_per_worker": 2**31 - 1, "run.num_seeds": 65536,
        "sampler.max_annotation_per_example": 64, "worker.prior.strength": 1e6, "worker.reliability.mean": 1.0,
        "worker.reliability.std": 0.0, "learner.lr_ratio": 1.0, "optimizer.likelihood_epsilon": 0.0, "run.max_steps": 1,
        "run.seed": 2**32 - 65536, "sweep.budget": (0, 2**31 - 1), "worker.difficulty.mean": 0.5,
        "worker.difficulty.spread": 0.5 * (1 / 3) ** 0.5,
    }  # fmt: skip
    config.validate(config.resolve(_cfg(**at_limits)))
