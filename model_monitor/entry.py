"""The pytest entry point: our options in every run, the plugin itself only in runs that collect our suite.

Installed next to a user's own tests, the package adds its options to their `pytest --help` and nothing else: the
plugin, and what it imports (httpx, aiohttp, jsonschema, prometheus_client: about half a second), loads only when
the run collects the suite (checks/ in a checkout, or the packaged suite the model-monitor command runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import settings
from .suite import SUITE_DIR

__all__ = ["CHECKS_DIR", "PLUGIN", "collects_suite", "pytest_addoption", "pytest_configure"]

PLUGIN = "model_monitor.plugin"
CHECKS_DIR = Path(__file__).resolve().parent.parent / "checks"  # a checkout's suite, beside this package


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.addoption(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Load the plugin for a run of our suite; pytest then calls its pytest_configure as it registers it."""
    if collects_suite(config):
        config.pluginmanager.import_plugin(PLUGIN)  # a no-op when it is registered already


def collects_suite(config: pytest.Config) -> bool:
    """The endpoints file matters only to runs that collect our suite (not `pytest tests`, nor a user's own tests
    next to the installed package)."""
    for arg in config.args:
        raw = Path(arg.split("::")[0])
        for base in (config.invocation_params.dir, config.rootpath):
            path = (base / raw).resolve()
            if path.exists():
                if _is_suite(path):
                    return True
                break
    return False


def _is_suite(path: Path) -> bool:
    """A checkout's checks/, also named by a folder above it; the packaged suite only by its own path (a user's
    project may hold the virtualenv it is installed in, and pytest collects nothing there)."""
    in_checkout = CHECKS_DIR.is_dir() and (_within(path, CHECKS_DIR) or path in CHECKS_DIR.parents)
    return in_checkout or _within(path, SUITE_DIR)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
