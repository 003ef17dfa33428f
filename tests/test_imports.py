"""Every test module imports in this environment: a dependency a test needs and pyproject.toml does not declare
fails here by name on a fresh machine, instead of turning into skips nobody reads."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MODULES = sorted(".".join(path.relative_to(TESTS.parent).with_suffix("").parts) for path in TESTS.rglob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_every_test_module_imports(module):
    importlib.import_module(module)


def test_the_optional_test_dependencies_are_installed():
    """What tests import lazily or skip without (scipy's exact SPRT cross-checks, protoc from grpcio-tools)."""
    for name in ("scipy.stats", "grpc_tools.protoc", "hypothesis"):
        importlib.import_module(name)
