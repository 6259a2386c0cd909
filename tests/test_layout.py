"""The package's shape: data flows one way, each module says what it offers (`__all__`), and the errors form
one tree."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

from model_monitor import errors
from model_monitor.config import ConfigError
from model_monitor.errors import ProbeError
from model_monitor.telemetry import TelemetryConfigError

from .helpers import ROOT

PACKAGE = ROOT / "model_monitor"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
EVERY_MODULE_HAS = set(dir(types.ModuleType("any")))  # __doc__, __name__ ...
USERS = sorted(p for folder in ("model_monitor", "checks", "tests", "bench") for p in (ROOT / folder).glob("*.py"))


def taken(path: Path) -> set[tuple[str, str]]:
    """(module, name) for each name a file takes from one of the package's modules: `from .m import name`,
    `from model_monitor.m import name`, or `m.name` after `from . import m` or `import model_monitor.m as m`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[tuple[str, str]] = set()
    aliases: dict[str, str] = {}  # local name -> module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level and path.parent == PACKAGE:
                module = f"model_monitor.{module}".rstrip(".")
            if module == "model_monitor":
                aliases |= {a.asname or a.name: a.name for a in node.names if a.name in MODULES}
                found |= {("__init__", a.name) for a in node.names if a.name not in MODULES}
            elif module.startswith("model_monitor."):
                found |= {(module.removeprefix("model_monitor."), a.name) for a in node.names}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname or a.name: a.name.removeprefix("model_monitor.") for a in node.names if a.name.startswith("model_monitor.")}
    rebound = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}  # a hook's `report` argument is no module
    rebound |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases.keys() - rebound:
            found.add((aliases[node.value.id], node.attr))
    return found - {(module, name) for module in MODULES for name in EVERY_MODULE_HAS}


def test_outcome_is_at_the_bottom() -> None:
    assert {module for module, _ in taken(PACKAGE / "outcome.py")} == set()


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_only_the_plugin_imports_the_engine(path: Path) -> None:
    if path.name not in ("plugin.py", "engine.py"):
        assert "engine" not in {module for module, _ in taken(path)}


DECLARED = [p for p in sorted(PACKAGE.glob("*.py")) if "\n__all__ = " in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", DECLARED, ids=lambda p: p.name)
def test_all_is_what_other_code_takes_from_a_module(path: Path) -> None:
    """Every name in `__all__` exists, and every name another file takes from the module is in it."""
    module = importlib.import_module("model_monitor" if path.stem == "__init__" else f"model_monitor.{path.stem}")
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
    used = {name for user in USERS if user != path for m, name in taken(user) if m == path.stem}
    assert used - set(module.__all__) == set()


@pytest.mark.parametrize("error", [ConfigError, TelemetryConfigError, ProbeError], ids=lambda e: e.__name__)
def test_every_error_of_ours_is_a_monitor_error_drawn_in_the_tree(error: type[Exception]) -> None:
    assert issubclass(error, errors.MonitorError)
    assert error.__name__ in (errors.__doc__ or ""), "the docstring of errors.py draws the whole tree"
