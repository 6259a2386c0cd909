"""The package's shape: data flows one way, so the modules at the bottom import nothing above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from model_monitor import errors
from model_monitor.config import ConfigError
from model_monitor.errors import ProbeError
from model_monitor.telemetry import TelemetryConfigError

from .helpers import ROOT

PACKAGE = ROOT / "model_monitor"


def our_imports(path: Path) -> set[str]:
    """The package modules a module imports (`from .x import y`, `from . import x`, `import model_monitor.x`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("model_monitor."):
            found.add(node.module.removeprefix("model_monitor."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("model_monitor.") for a in node.names if a.name.startswith("model_monitor.")}
    return found


def test_outcome_is_at_the_bottom() -> None:
    assert our_imports(PACKAGE / "outcome.py") == set()


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_only_the_plugin_imports_the_engine(path: Path) -> None:
    if path.name not in ("plugin.py", "engine.py"):
        assert "engine" not in our_imports(path)



@pytest.mark.parametrize("error", [ConfigError, TelemetryConfigError, ProbeError], ids=lambda e: e.__name__)
def test_every_error_of_ours_is_a_monitor_error_drawn_in_the_tree(error: type[Exception]) -> None:
    assert issubclass(error, errors.MonitorError)
    assert error.__name__ in (errors.__doc__ or ""), "the docstring of errors.py draws the whole tree"
