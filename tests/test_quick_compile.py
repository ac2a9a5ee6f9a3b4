"""Quick compilation of small one-shot programs (`python -m jaxanno.label`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxanno import crowd, label, outputs, quick_compile


@quick_compile.program
def _add_one(x):
    return x + 1


def _struct(elements: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((elements,), jnp.float32)


def test_small_calls_inside_enabled_get_the_quick_program():
    small, large = _struct(quick_compile.MAX_ELEMENTS), _struct(quick_compile.MAX_ELEMENTS + 1)
    assert _add_one.variant(small) is _add_one.optimised  # outside enabled(): the API's default
    with quick_compile.enabled():
        assert _add_one.variant(small) is _add_one.quick
        assert _add_one.variant(large) is _add_one.optimised
        assert _add_one.variant(x=small) is _add_one.quick  # keyword arguments count too
    assert _add_one.variant(small) is _add_one.optimised


def test_element_count_sums_arrays_and_skips_other_leaves():
    tree = ({"a": np.zeros((3, 4)), "b": jnp.zeros(5)}, _struct(7), "text", 3.0, None)
    assert quick_compile.num_elements(tree) == 12 + 5 + 7


def test_background_work_keeps_the_setting_and_raises_its_error():
    small = _struct(8)
    with quick_compile.enabled():
        assert quick_compile.in_background(_add_one.variant, small).result() is _add_one.quick
    assert quick_compile.in_background(_add_one.variant, small).result() is _add_one.optimised
    with pytest.raises(ValueError, match="invalid literal"):
        quick_compile.in_background(int, "seven").result()


def test_both_programs_compute_the_same():
    x = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(_add_one.quick(x), _add_one.optimised(x))
    np.testing.assert_array_equal(_add_one(x), x + 1)


def _seven_class_table(num_tasks=60, per_task=3, num_workers=9, seed=3) -> pd.DataFrame:
    """Labels in 7 classes: no other test compiles programs of these shapes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(7, size=num_tasks)
    workers = np.stack([rng.choice(num_workers, per_task, replace=False) for _ in range(num_tasks)]).ravel()
    tasks = np.repeat(np.arange(num_tasks), per_task)
    right = rng.random(tasks.size) < 0.7
    given = np.where(right, truth[tasks], rng.integers(7, size=tasks.size))
    return pd.DataFrame({"task": tasks, "worker": workers, "label": given}).astype(str)


def test_label_run_compiles_two_quick_programs_once_and_matches_the_api():
    table = _seven_class_table()
    with outputs.count_compiles() as first:
        result = label.run(table, None, hits=3, hit_size=4, quiet=True, seed=2)
    # the batch program compiled in the background is the one next_batch runs: no second compile
    assert dict(first) == {"jit(solve)": 1, "jit(assign)": 1}, dict(first)
    with outputs.count_compiles() as again:
        repeat = label.run(table, None, hits=3, hit_size=4, quiet=True, seed=2)
    assert dict(again) == {}, dict(again)
    pd.testing.assert_frame_equal(repeat["frames"]["tasks.csv"], result["frames"]["tasks.csv"])

    api = crowd.DawidSkene.pooled(risk_threshold=0.1, seed=2).fit(table)  # optimised programs, outside enabled()
    np.testing.assert_allclose(result["model"].probas_.to_numpy(), api.probas_.to_numpy(), rtol=1e-5, atol=1e-6)
    batch = crowd.next_batch(api, n_hits=3, hit_size=4, seed=2)
    pd.testing.assert_frame_equal(batch, result["frames"]["next_batch.csv"][batch.columns], check_dtype=False)
