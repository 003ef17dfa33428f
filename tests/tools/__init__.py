"""Tests of the tools/ scripts, which are not a package: load_tool imports one as a module."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import PROJECT_ROOT


def load_tool(name: str) -> ModuleType:
    """tools/NAME.py as the module NAME (registered in sys.modules: its dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
