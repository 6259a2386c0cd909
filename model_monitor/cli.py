"""The `model-monitor` command: the packaged suite run by pytest, from any folder.

    model-monitor --endpoints staging.yaml [any pytest argument]

Relative paths are read from the caller's folder and the exit code is pytest's. The suite's own pytest.ini makes
the suite's folder the rootdir, so that no configuration or conftest.py around the install location changes a run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pytest

from . import settings
from .suite import SUITE_DIR  # not the plugin: imported before pytest starts, pytest could not rewrite it

__all__ = ["main", "usage"]

PROG = "model-monitor"
HELP_FLAGS = frozenset({"-h", "--help"})
# The entry point by name (also when plugin autoloading is off); no cache: the rootdir is inside the installed package.
PYTEST_ARGS = ("-p", "model_monitor.entry", "-p", "no:cacheprovider", "-c", str(SUITE_DIR / "pytest.ini"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the packaged suite with the caller's pytest arguments; with --help, our options come first."""
    args = list(sys.argv[1:] if argv is None else argv)
    if HELP_FLAGS & set(args):
        print(usage(), flush=True)
    return int(pytest.main([*PYTEST_ARGS, str(SUITE_DIR), *args]))


def usage() -> str:
    """Our options, each with its environment variable and default, before pytest's own help."""
    lines = [
        f"usage: {PROG} [--endpoints PATH] [options] [pytest options]",
        "",
        "Checks every endpoint/model in the endpoints file, one pytest case each. Relative paths are read from",
        "the current folder. Exit code: 0 every case passed, 1 a case failed (--fail-on chooses), 2 interrupted,",
        "4 usage error, 5 no case selected.",
        "",
        "Model Monitor options (a flag wins over its environment variable):",
    ]
    for option in settings.OPTIONS:
        name = f"{option.env} (environment only)" if option.env_only else _flag(option)
        env = f" [env {option.env}]" if option.env and not option.env_only else ""
        lines += [f"  {name}", f"      {option.help}{env} [default: {_shown(option.default)}]"]
    lines += [f"  --only {settings.ONLY_METAVAR}", f"      {settings.ONLY_HELP} [default: every case]", ""]
    lines.append("pytest's own options follow (ours again among them, under 'Model Monitor').")
    return "\n".join(lines)


def _flag(option: settings.Option) -> str:
    return option.flag if option.is_flag else f"{option.flag} {option.metavar}"


def _shown(default: Any) -> str:
    return "off" if default is False else "not set" if default is None else str(default)
