"""The package's shape: data flows one way, each module says what it offers (`__all__`), and the errors form
one tree."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from functools import cache
from pathlib import Path

import pytest

from model_monitor import errors
from model_monitor.config import ConfigError
from model_monitor.errors import ProbeError
from model_monitor.reporters.heartbeats import TelemetryConfigError

from .helpers import ROOT

PACKAGE = ROOT / "model_monitor"


def dotted(path: Path) -> str:
    """model_monitor.probe.engine for model_monitor/probe/engine.py; a package's __init__.py is the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {dotted(p): p for p in sorted(PACKAGE.rglob("*.py")) if "suite" not in p.parts}
EVERY_MODULE_HAS = set(dir(types.ModuleType("any")))  # __doc__, __name__ ...
USERS = sorted(
    {*PACKAGE.rglob("*.py"), *(p for folder in ("checks", "tests", "bench") for p in (ROOT / folder).glob("*.py"))}
)


def source(node: ast.ImportFrom, package: str) -> str:
    """The module a `from ... import` reads, absolute."""
    module = node.module or ""
    if node.level:
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        module = ".".join([*base, *([module] if module else [])])
    return module


@cache
def taken(path: Path) -> set[tuple[str, str]]:
    """(module, name) for each name a file takes from one of the package's modules: `from .m import name`,
    `from model_monitor.m import name`, or `m.name` after `from . import m` or `import model_monitor.m as m`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = dotted(path) if path.is_relative_to(PACKAGE) else ""
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[tuple[str, str]] = set()
    aliases: dict[str, str] = {}  # local name -> module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = source(node, package)
            if not module.startswith("model_monitor"):
                continue
            for a in node.names:
                if f"{module}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{module}.{a.name}"
                else:
                    found.add((module, a.name))
        elif isinstance(node, ast.Import):
            aliases |= {a.asname or a.name: a.name for a in node.names if a.name in MODULES}
    rebound = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}  # a hook's `report` argument is no module
    rebound |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases.keys() - rebound
        ):
            found.add((aliases[node.value.id], node.attr))
    return found - {(module, name) for module in MODULES for name in EVERY_MODULE_HAS}


def imported(path: Path) -> set[str]:
    """The package's modules a file imports, wherever the import stands: inside a function, and under
    TYPE_CHECKING (an import for hints only is still an arrow a reader and the type checker follow)."""
    here = dotted(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = source(node, package)
            found |= {f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return (found & MODULES.keys()) - {here}


def test_imports_run_one_way_with_no_circle() -> None:
    """No module imports, through others, one that imports it; hints (TYPE_CHECKING) and imports inside functions
    count. Peel off every module that imports none of those left, then every one that none of those left imports:
    whatever remains stands on a circle (or between two)."""
    arrows = {module: imported(path) for module, path in MODULES.items()}
    left = set(arrows)
    while peeled := {m for m in left if not arrows[m] & left or not any(m in arrows[o] for o in left)}:
        left -= peeled
    assert {m: sorted(arrows[m] & left) for m in sorted(left)} == {}


def test_outcome_is_at_the_bottom() -> None:
    assert {module for module, _ in taken(PACKAGE / "outcome.py")} == set()


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: dotted(p))
def test_only_the_plugin_and_its_run_import_the_engine(path: Path) -> None:
    if path.name not in ("plugin.py", "run.py", "engine.py"):
        assert "model_monitor.probe.engine" not in {module for module, _ in taken(path)}


# Loaded with the first probe (its session), the first validation or json_schema contract, the first push, the
# first ping or multipart body (httpx: 9 MB and 70 ms where its command line's rich and click are installed).
LOADED_WHEN_USED = ("aiohttp", "jsonschema", "prometheus_client", "httpx")


def test_importing_the_plugin_loads_no_library_that_only_some_processes_use() -> None:
    """Every pytest process and xdist worker imports the plugin: one that only collects, stops on its config or
    controls the workers must not load the probing, validation and push libraries."""
    code = f"import sys, model_monitor.plugin; print(*[m for m in {LOADED_WHEN_USED!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.split() == []


DECLARED = [p for p in MODULES.values() if "\n__all__ = " in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", DECLARED, ids=lambda p: dotted(p))
def test_all_is_what_other_code_takes_from_a_module(path: Path) -> None:
    """Every name in `__all__` exists, and every name another file takes from the module is in it."""
    module = importlib.import_module(dotted(path))
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
    used = {name for user in USERS if user != path for m, name in taken(user) if m == dotted(path)}
    assert used - set(module.__all__) == set()


@pytest.mark.parametrize("error", [ConfigError, TelemetryConfigError, ProbeError], ids=lambda e: e.__name__)
def test_every_error_of_ours_is_a_monitor_error_drawn_in_the_tree(error: type[Exception]) -> None:
    assert issubclass(error, errors.MonitorError)
    assert error.__name__ in (errors.__doc__ or ""), "the docstring of errors.py draws the whole tree"
