"""Every value of every `Static` / `EMStatic` / `LearnerStatic` option runs, and every invalid
value is refused at construction with a message naming the field, the value and what is allowed.

The smoke runs vary one option at a time from one base (a learner-free base for the
simulator options, a base with a tiny learner for the learner options) on one shared tiny
problem, and run a few `sim.online_step`s: one trace per option value, finite metrics, and
the sampler's slot and counter invariants after every step.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxanno import learner, sim, types
from tests.conftest import tiny_dataset, tiny_static

FLAGS = (False, True)
# (owner, field, every allowed value); owner names the dataclass the field belongs to.
OPTIONS = [
    ("Static", "sampler", types.SAMPLERS),
    ("Static", "item_score", types.ITEM_SCORES),
    ("Static", "worker_type", types.WORKER_TYPES),
    ("Static", "prior_type", types.PRIOR_TYPES),
    ("Static", "early_stop", FLAGS),
    ("Static", "early_stopper", types.EARLY_STOPPERS),
    ("EMStatic", "aggregator", types.AGGREGATORS),
    ("EMStatic", "criterion", types.EM_CRITERIA),
    ("EMStatic", "m_step", types.M_STEPS),
    ("EMStatic", "class_prior", types.CLASS_PRIORS),
    ("EMStatic", "init", types.EM_INITS),
    ("EMStatic", "warm_start", FLAGS),
    ("LearnerStatic", "calibrate", types.CALIBRATIONS),
    ("LearnerStatic", "temperature_solver", types.TEMPERATURE_SOLVERS),
    ("LearnerStatic", "semi_supervised", types.SEMI_SUPERVISED),
    ("LearnerStatic", "early_stop_scope", types.EARLY_STOP_SCOPES),
    ("LearnerStatic", "prototype_as_val", FLAGS),
]
CASES = [(owner, field, value) for owner, field, values in OPTIONS for value in values]

K, STEPS = 3, 4  # the initial fit and three online steps
BASE = tiny_static(num_items=30, num_prototypes=12, num_classes=K, num_workers=6, feature_dim=8, hit_size=5,
                   hits_per_step=2, n_prototype_per_class=4)  # fmt: skip
BASE_LEARNER = types.LearnerStatic(model=learner.MLP(num_classes=K, hidden_sizes=(4,)), batch_size=8, max_epochs=4,
                                   eval_every=2, cv_folds=2)  # fmt: skip


def _static(owner: str, field: str, value) -> types.Static:
    """BASE with one option changed (learner options on BASE + BASE_LEARNER)."""
    if owner == "Static":
        return dataclasses.replace(BASE, **{field: value})
    if owner == "EMStatic":
        return dataclasses.replace(BASE, em=dataclasses.replace(BASE.em, **{field: value}))
    return dataclasses.replace(BASE, learner=dataclasses.replace(BASE_LEARNER, **{field: value}))


def test_the_table_lists_every_option_field():
    """A new option field (str or bool) must be added to OPTIONS, and its values come from types."""
    listed = {(owner, field) for owner, field, _ in OPTIONS}
    for cls in (types.Static, types.EMStatic, types.LearnerStatic):
        for f in dataclasses.fields(cls):
            if f.type in ("str", "bool"):
                assert (cls.__name__, f.name) in listed, f"{cls.__name__}.{f.name} is missing from OPTIONS"


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset(BASE)


PARAMS = types.make_params(risk_threshold=0.0, lr_ratio=0.01)  # nothing is ever confident: the run never stops
KEY = jax.random.key(0)
_RUNS: dict[types.Static, tuple] = {}  # one run per distinct Static: default values share the base run


@functools.cache
def _init_fn(init_static: types.Static):
    return jax.jit(lambda data, key: sim.init_state(init_static, PARAMS, data, key))


def _initial_state(static: types.Static, data: types.Dataset) -> types.SimState:
    """A valid initial state for `static`, from a program shared by every option that
    leaves the worker model alone (any initial state of the right shapes serves a smoke run)."""
    learner_static = None if static.learner is None else BASE_LEARNER
    init_static = dataclasses.replace(BASE, worker_type=static.worker_type, prior_type=static.prior_type,
                                      learner=learner_static)  # fmt: skip
    return _init_fn(init_static)(data, KEY)


def _run(static: types.Static, data: types.Dataset):
    """STEPS online steps through one jitted `sim.online_step` that may trace only once."""
    if static not in _RUNS:
        traces = []

        def step(state, run_key):
            traces.append(1)  # runs once per trace, not per call
            return sim.online_step(static, PARAMS, data, state, run_key)

        jstep, state, states, rows = jax.jit(step), _initial_state(static, data), [], []
        for _ in range(STEPS):
            state, row = jstep(state, KEY)
            states.append(state)
            rows.append(row)
        assert len(traces) == 1, "one trace per option value: every step reuses the first step's program"
        _RUNS[static] = jax.device_get((states, jax.tree.map(lambda *x: jnp.stack(x), *rows)))
    return _RUNS[static]


def _assert_finite_metrics(m: types.StepMetrics):
    for belief in [m.aggregate] + ([] if m.learner is None else [m.learner]):
        assert np.isfinite(belief.all.top1).all() and np.isfinite(belief.all.ece).all()
        for sub in (belief.confident, belief.unconfident):
            defined = sub.n_items > 0
            assert np.isfinite(sub.top1[defined]).all() and np.isnan(sub.top1[~defined]).all()
    assert np.isfinite(m.cost_per_item).all() and np.isfinite(m.frac_labelled).all()


def _assert_slot_invariants(static: types.Static, ann: types.AnnotationState, cost: int):
    filled = ann.worker >= 0
    np.testing.assert_array_equal(filled, ann.label >= 0)
    # slots fill left to right, one label each: the filled slots are exactly the first item_count
    np.testing.assert_array_equal(filled, np.arange(static.max_annotations) < ann.item_count[:, None])
    np.testing.assert_array_equal(filled.sum(1), ann.item_count)
    np.testing.assert_array_equal(np.bincount(ann.worker[filled], minlength=static.num_workers), ann.worker_count)
    assert (ann.label[filled] < static.num_classes).all() and (ann.worker[filled] < static.num_workers).all()
    assert int(ann.item_count.sum()) == cost


@pytest.mark.slow
@pytest.mark.parametrize("owner, field, value", CASES, ids=[f"{o}.{f}={v}" for o, f, v in CASES])
def test_every_option_value_runs(owner, field, value, dataset):
    static = _static(owner, field, value)
    states, metrics = _run(static, dataset)
    np.testing.assert_array_equal(metrics.step, np.arange(STEPS))
    assert metrics.active.all()
    _assert_finite_metrics(metrics)
    for t, state in enumerate(states):
        _assert_slot_invariants(static, state.annotations, int(metrics.cost[t]))
        np.testing.assert_allclose(state.em.posterior.sum(-1), 1.0, rtol=1e-5)
    for before, after in zip(states, states[1:]):  # a label, once written, stays
        kept = before.annotations.worker >= 0
        np.testing.assert_array_equal(after.annotations.worker[kept], before.annotations.worker[kept])
        np.testing.assert_array_equal(after.annotations.label[kept], before.annotations.label[kept])
    new_labels = np.diff(metrics.cost)
    assert metrics.cost[0] == 0 and (new_labels > 0).all(), "no labels at the initial fit, some at every step"
    assert (new_labels <= static.hit_size * static.hits_per_step).all()


@pytest.mark.slow
def test_option_values_reach_the_simulation(dataset):
    """Not a no-op: a few options that must change the labels or beliefs of the base run do."""
    base = _run(BASE, dataset)[0][-1]
    changes = [("Static", "worker_type", "adversarial"), ("Static", "worker_type", "item_difficulty"),
               ("EMStatic", "aggregator", "mj"), ("EMStatic", "m_step", "soft"),
               ("Static", "sampler", "greedy_task_assignment"), ("Static", "item_score", "risk_reduction")]  # fmt: skip
    for owner, field, value in changes:
        other = _run(_static(owner, field, value), dataset)[0][-1]
        assert not np.array_equal(other.em.posterior, base.em.posterior), (owner, field, value)


BAD = "bogus"
SIZES = [
    ("Static", "num_items", 0, 1),
    ("Static", "num_classes", 0, 1),
    ("Static", "num_workers", 0, 1),
    ("Static", "max_annotations", 0, 1),
    ("Static", "hit_size", 0, 1),
    ("Static", "hits_per_step", -1, 1),
    ("EMStatic", "max_em_steps", 0, 1),
    ("EMStatic", "item_block", -1, 0),
    ("LearnerStatic", "batch_size", 0, 1),
    ("LearnerStatic", "eval_every", 0, 1),
]


def _construct(owner: str, field: str, value):
    if owner == "Static":
        return tiny_static(**{field: value})
    if owner == "EMStatic":
        return types.EMStatic(**{field: value})
    return dataclasses.replace(BASE_LEARNER, **{field: value})


@pytest.mark.parametrize("owner, field, allowed", [(o, f, v) for o, f, v in OPTIONS if v is not FLAGS])
def test_an_invalid_option_string_is_refused_at_construction(owner, field, allowed):
    for bad in (BAD, allowed[0].upper(), allowed[0] + " "):
        with pytest.raises(ValueError) as err:
            _construct(owner, field, bad)
        assert str(err.value) == f"{owner}.{field}={bad!r}: expected one of {list(allowed)}"


@pytest.mark.parametrize("owner, field", [(o, f) for o, f, v in OPTIONS if v is FLAGS])
def test_a_flag_must_be_a_bool(owner, field):
    with pytest.raises(ValueError, match=rf"^{owner}\.{field}='yes': expected True or False$"):
        _construct(owner, field, "yes")


@pytest.mark.parametrize("owner, field, bad, minimum", SIZES)
def test_sizes_out_of_range_are_refused(owner, field, bad, minimum):
    with pytest.raises(ValueError, match=rf"^{owner}\.{field}={bad}: expected an integer >= {minimum}$"):
        _construct(owner, field, bad)
    with pytest.raises(ValueError, match=rf"^{owner}\.{field}=2\.0: expected an integer"):
        _construct(owner, field, 2.0)


def test_the_examples_from_the_documentation():
    with pytest.raises(ValueError, match=r"^EMStatic\.m_step='Soft': expected one of \['hard', 'soft'\]$"):
        types.EMStatic(m_step="Soft")
    with pytest.raises(ValueError, match=r"^Static\.sampler='greedy': expected one of \['random', "):
        tiny_static(sampler="greedy")
    with pytest.raises(ValueError, match=r"^LearnerStatic\.cv_folds=1: expected an integer >= 2$"):
        dataclasses.replace(BASE_LEARNER, calibrate="cv", cv_folds=1)
    with pytest.raises(ValueError, match=r"^LearnerStatic\.model=None: expected a flax\.linen\.Module$"):
        types.LearnerStatic(model=None)
    with pytest.raises(ValueError, match=r"^Static\.em=None: expected an EMStatic$"):
        tiny_static(em=None)
    types.check_option("Crowd", "assignment", "random", types.SAMPLERS)  # valid: no error
    with pytest.raises(ValueError, match=r"^Crowd\.assignment='mixed': expected one of \['random', "):
        types.check_option("Crowd", "assignment", "mixed", types.SAMPLERS)
