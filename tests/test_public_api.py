"""The public API: every promised name resolves, `import jaxanno` stays light, and tests and
benchmarks touch no private jaxanno name."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import jaxanno

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", jaxanno.__all__)
def test_every_public_name_resolves(name):
    assert getattr(jaxanno, name) is not None
    assert name in dir(jaxanno)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'simulat'"):
        jaxanno.simulat  # noqa: B018


def test_import_does_not_load_heavy_libraries():
    code = (
        "import sys, jaxanno; print(sorted(m for m in ('flax', 'optax', 'matplotlib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_crowd_fit_loads_no_learner_or_plotting_library():
    """The crowd API without task features needs neither flax, optax, chex nor matplotlib."""
    code = (
        "import sys, pandas as pd; from jaxanno import DawidSkene\n"
        "rows = [(t, w, t % 2 if w != 'c' or t == 0 else 1 - t % 2) for t in range(6) for w in 'abc']\n"
        "labels = DawidSkene(n_iter=20).fit_predict(pd.DataFrame(rows, columns=['task', 'worker', 'label']))\n"
        "print(labels.tolist(), sorted(m for m in ('flax', 'optax', 'chex', 'matplotlib') if m in sys.modules))"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    assert out.stdout.strip() == "[0, 1, 0, 1, 0, 1] []"


def _jaxanno_aliases(tree: ast.AST) -> set[str]:
    """Local names bound to jaxanno modules or objects by the file's imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "jaxanno":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.asname or alias.name for alias in node.names if alias.name.startswith("jaxanno"))
    return names


def _private_uses(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    aliases = _jaxanno_aliases(tree) | {"jaxanno"}
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.parent.name}/{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_tests_and_benchmarks_use_only_public_names():
    files = sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    found = [use for path in files for use in _private_uses(path)]
    assert not found, "private jaxanno names used:\n" + "\n".join(found)


def test_private_name_detector_flags_a_private_use(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from jaxanno import sim\nsim._collect_labels\nsim.simulate\nsim.__name__\n")
    assert _private_uses(sample) == [f"{tmp_path.name}/sample.py:2 sim._collect_labels"]
