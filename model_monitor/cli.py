"""The `model-monitor` command: the packaged suite run by pytest, from any folder, and the file's own commands.

    model-monitor --endpoints staging.yaml [any pytest argument]
    model-monitor validate [FILE] [--resolve]     check an endpoints file, sending nothing
    model-monitor init [FILE]                      write a commented starter endpoints file

Relative paths are read from the caller's folder and the exit code is pytest's. The suite's own pytest.ini makes
the suite's folder the rootdir, so that no configuration or conftest.py around the install location changes a run.
A run speaks for the monitor (console.py) rather than for pytest; `-v` brings pytest's own reporting back.
A closed or broken stdout or stderr (`>&-`, `| head -1`) costs only what would have been printed there: the run
goes on and reports through its other channels (pings, metrics, JUnit, the results file).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import pytest

from . import __version__, settings
from .files import init, validate
from .suite import SUITE_DIR  # not the plugin: imported before pytest starts, pytest could not rewrite it

__all__ = ["main", "usage"]

PROG = "model-monitor"
STREAMS = {1: "stdout", 2: "stderr"}
HELP_FLAGS = frozenset({"-h", "--help"})
# The entry point by name (also when plugin autoloading is off); no cache: the rootdir is inside the installed package.
# Not anyio's plugin (httpx brings it): the suite has no anyio tests, and loading it cost each process and xdist
# worker ~0.2 s of CPU (its modules are assertion-rewritten anew where bytecode is not written, as in the image).
PYTEST_ARGS = (
    "-p",
    "model_monitor.entry",
    "-p",
    "no:cacheprovider",
    "-p",
    "no:anyio",
    "-c",
    str(SUITE_DIR / "pytest.ini"),
)
# The monitor's voice instead of pytest's: no header (rootdir, plugins), no progress dots or percentages, no
# FAILURES block or short summary of node ids (console.py says each failure once, by its case id).
CONSOLE_ARGS = (
    "-p",
    "model_monitor.console",
    "-q",
    "--no-header",
    "--tb=no",
    "-rN",
    "-o",
    "console_output_style=classic",
)
VERBOSE = re.compile(r"-v+|--verbose")  # pytest's own reporting, node ids and tracebacks, for whoever asks
SUBCOMMANDS = {"validate": validate, "init": init}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the packaged suite with the caller's pytest arguments (or a subcommand); with --help, ours come first."""
    args = list(sys.argv[1:] if argv is None else argv)
    sys.stdout, sys.stderr = _unbroken(sys.stdout, 1), _unbroken(sys.stderr, 2)
    if args and args[0] in SUBCOMMANDS:
        return SUBCOMMANDS[args[0]](args[1:])
    if "--version" in args or "-V" in args:
        print(f"{PROG} {__version__}\npytest {pytest.__version__}", flush=True)
        return 0
    if HELP_FLAGS & set(args):
        print(usage(), flush=True)
    console = () if any(VERBOSE.fullmatch(arg) for arg in args) else CONSOLE_ARGS
    code = int(pytest.main([*PYTEST_ARGS, *console, str(SUITE_DIR), *args]))
    sys.stdout.flush()  # here, where a broken pipe is caught, not at the interpreter's exit (which would exit 120)
    return code


class _Unbroken(io.TextIOWrapper):
    """A standard stream whose reader may go away: once a write finds the pipe broken, the stream goes on into
    /dev/null (a broken pipe would otherwise end the run before a request, exit 1, with nothing said)."""

    said = False

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            self._lost()
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            self._lost()
            super().flush()  # what was kept goes to /dev/null now

    def _lost(self) -> None:
        _onto_devnull(self.fileno())
        if not _Unbroken.said:
            _Unbroken.said = True
            _say(f"{STREAMS.get(self.fileno(), 'a stream')} was closed by its reader (broken pipe)")


def _unbroken(stream: TextIO | None, descriptor: int) -> TextIO:
    """The process's stream on `descriptor`, wrapped; a closed one (Python leaves None) is /dev/null from the start.
    Another stream (a caller's capture) is left as it is."""
    if stream is None:
        _onto_devnull(descriptor)
        if descriptor == 1:
            _say("stdout is closed")
        return _Unbroken(open(descriptor, "wb", closefd=False), encoding="utf-8", errors="backslashreplace")
    with contextlib.suppress(OSError, ValueError):
        if isinstance(stream, io.TextIOWrapper) and stream.fileno() == descriptor:
            return _Unbroken(
                stream.buffer, encoding=stream.encoding, errors=stream.errors, line_buffering=stream.line_buffering
            )
    return stream


def _onto_devnull(descriptor: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != descriptor:
        os.dup2(devnull, descriptor)
        os.close(devnull)


def _say(what: str) -> None:
    """One line on stderr, when it can still be written."""
    with contextlib.suppress(OSError, ValueError):
        os.write(
            2, f"{PROG}: {what}: the run goes on, reported through pings, metrics, JUnit and --results-json\n".encode()
        )


def usage() -> str:
    """Our options, each with its environment variable and default, before pytest's own help."""
    lines = [
        f"usage: {PROG} [--endpoints PATH] [options] [pytest options]",
        f"       {PROG} validate [FILE] [--resolve]   check an endpoints file, sending nothing (exit 0 or 4)",
        f"       {PROG} init [FILE]                   write a commented starter endpoints file",
        f"       {PROG} --version",
        "",
        "Checks every endpoint/model in the endpoints file, one pytest case each. Relative paths are read from",
        "the current folder. Exit code: 0 every case passed, 1 a case failed (--fail-on chooses), 2 interrupted,",
        "4 usage error, 5 no case selected, 6 a report (JUnit, results, step summary) could not be written at the",
        "end. -v shows pytest's own reporting (node ids, tracebacks) instead.",
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
