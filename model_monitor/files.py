"""The command's work on an endpoints file itself: `validate` checks one without sending anything, `init` writes a
commented starter (config/starter.yaml) that validate accepts.

Both exit as a run would on the same file: 0, or 4 (pytest's usage error) with one line per problem.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import config as endpoints_config
from . import settings
from .config import ConfigError
from .redact import Redactor

__all__ = ["STARTER", "init", "validate"]

STARTER = Path(__file__).resolve().parent / "config" / "starter.yaml"  # package data, beside the schema
USAGE_ERROR = 4  # pytest's ExitCode.USAGE_ERROR: a run on the same file would stop with it
# --endpoints: its environment variable and default name the file here too
DEFAULT_FILE = next(option for option in settings.OPTIONS if option.dest == "endpoints")


def validate(argv: Sequence[str]) -> int:
    """Load the file as a run would, listing every problem (file:line: field: problem); read no variable that
    only a request needs unless --resolve asks, and send nothing (discovering endpoints are not listed)."""
    parser = _parser("validate", "Check an endpoints file without sending anything (exit 0 valid, 4 not).")
    parser.add_argument(
        "--resolve",
        action="store_true",
        help="also check that the variables its URLs, headers and API keys read are set (their values stay unshown)",
    )
    args = parser.parse_args(argv)
    path = Path(args.file)
    redact = Redactor()  # a problem in a resolved URL (`not a URL: https://host/<key>`) shows no secret
    try:
        suite = endpoints_config.load(path)
        if args.resolve:
            suite.resolve_all(redact)
    except ConfigError as exc:
        print(redact(f"{exc}"), file=sys.stderr)
        return USAGE_ERROR
    needs = [name for connection in suite.connections.values() for name in connection.variables]
    endpoints = len(suite.connections)
    discovering = f", {len(suite.discoveries)} of them list their models at run time" if suite.discoveries else ""
    print(f"{path}: valid: {len(suite.cases)} cases on {endpoints} endpoints{discovering}")
    if needs:
        shown = ", ".join(dict.fromkeys(needs))
        print(f"reads {shown}: " + ("each is set" if args.resolve else "not checked (add --resolve to check them)"))
    return 0


def init(argv: Sequence[str]) -> int:
    """Write the starter endpoints file; never over an existing file."""
    parser = _parser("init", "Write a commented starter endpoints file (vLLM, llama.cpp, Ollama, LiteLLM, OpenAI).")
    path = Path(parser.parse_args(argv).file)
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(STARTER.read_text(encoding="utf-8"))
    except FileExistsError:
        print(f"{path}: already exists; not overwritten (give another file name)", file=sys.stderr)
        return USAGE_ERROR
    except OSError as exc:
        print(f"{path}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return USAGE_ERROR
    print(f"wrote {path}: keep the servers you run, then `model-monitor validate {path}`")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error exits 4, as the run's do (argparse's own is 2, which pytest uses for an interrupted run)."""
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _parser(name: str, description: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"model-monitor {name}", description=description)
    parser.add_argument(
        "file",
        nargs="?",
        default=_default_file(),
        help=f"the endpoints file [env {DEFAULT_FILE.env}] [default: {DEFAULT_FILE.default}]",
    )
    return parser


def _default_file() -> str:
    """As a run finds it: $MODEL_MONITOR_ENDPOINTS, else endpoints.yaml in the current folder."""
    return os.environ.get(str(DEFAULT_FILE.env), "") or str(DEFAULT_FILE.default)
