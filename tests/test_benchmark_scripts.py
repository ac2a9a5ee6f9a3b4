"""Benchmark scripts run for minutes and are not part of the suite: check statically that every
``common.<name>`` they use exists and every name they import from jaxanno resolves."""

from __future__ import annotations

import ast
import importlib
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "common.py")


@pytest.fixture(scope="module")
def common():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("common")
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_names_a_benchmark_uses_exist(script, common):
    tree = ast.parse(script.read_text(), filename=str(script))
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "common":
            if not hasattr(common, node.attr):
                missing.append(f"line {node.lineno}: common.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxanno"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    assert not missing, f"{script.name}: " + "; ".join(missing)
