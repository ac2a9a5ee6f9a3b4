"""The module structure of jaxanno: a declared layer order, no import cycles, small modules.

Units are the top-level modules of ``jaxanno/`` and its subpackages taken whole
(``jaxanno/data/``, ``jaxanno/crowd/``); ``__init__`` is the package's public API. Every
import counts, including the ones inside functions. A new module is placed by adding its
name to `LAYERS`.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxanno"
MAX_LINES = 500

# Top to bottom. A unit may import units of its own layer or of a lower one, never of a higher one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("command line", ("__main__", "cli")),
    ("public API", ("__init__",)),
    ("entry points", ("runner", "label", "reproduce")),
    ("reports", ("report", "figures", "overview")),
    ("drivers", ("experiment", "crowd")),
    ("configuration", ("config",)),
    ("simulator", ("sim",)),
    ("parts", ("em", "sampler", "learner", "workers", "stopping")),
    ("model pieces", ("dawid_skene", "calibration", "metrics", "gain")),
    ("support", ("results", "checkpoint", "outputs", "distributed", "data", "compile_cache", "quick_compile")),
    ("base", ("ops", "types", "errors")),
)
LAYER_OF = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def _unit(path: pathlib.Path) -> str:
    """'em' for jaxanno/em.py, 'data' for jaxanno/data/files.py, '__init__' for jaxanno/__init__.py."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _is_unit(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def _imported_units(path: pathlib.Path) -> set[str]:
    """The jaxanno units a file imports (absolute or relative, at any depth of the file)."""
    package = ["jaxanno", *path.relative_to(PACKAGE).parts[:-1]]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            modules = [module + [alias.name] for alias in node.names]
        else:
            continue
        for parts in modules:
            if parts[0] != "jaxanno":
                continue
            found.add(parts[1] if len(parts) > 1 and _is_unit(parts[1]) else "__init__")
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        graph.setdefault(unit, set()).update(_imported_units(path) - {unit})
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished

    def visit(unit: str, path: list[str]) -> list[str] | None:
        state[unit] = 1
        for dep in sorted(graph.get(unit, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep, path + [dep])):
                return found
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state and (found := visit(unit, [unit])):
            return found
    return None


def test_every_module_has_a_declared_layer():
    missing = sorted(set(_graph()) - set(LAYER_OF))
    assert not missing, f"modules {missing} have no layer: add them to LAYERS in {__file__}"


def test_no_module_imports_one_above_it():
    graph = _graph()
    upward = [
        f"{unit} ({LAYERS[LAYER_OF[unit]][0]}) imports {dep} ({LAYERS[LAYER_OF[dep]][0]})"
        for unit, deps in graph.items()
        for dep in sorted(deps)
        if unit in LAYER_OF and dep in LAYER_OF and LAYER_OF[dep] < LAYER_OF[unit]
    ]
    assert not upward, "\n".join(upward)


def test_imports_have_no_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_checks_see_cycles_and_upward_imports():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert _imported_units(PACKAGE / "sim.py") >= {"types", "em"}
    assert "types" in _imported_units(PACKAGE / "data" / "__init__.py")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_the_size_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{path.relative_to(PACKAGE)} has {lines} lines (at most {MAX_LINES}): split it by concern"
    )
