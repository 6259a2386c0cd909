"""The run for machines to read: --results-json, one versioned JSON document per run (its schema ships beside
this module), and GitHub's step summary rendered from the same document.

Written by the process that sees every report (the only one, or xdist's controller) at the very end of the
session, after the exit status is final (plugin.py calls `write`, whatever another plugin's end did): a failed,
stopped or deadline-bound run has its document too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ..case import Case
from ..config import Suite
from ..outcome import Outcome
from ..stop import Stopper
from . import step_summary
from .paths import REPORT_NOT_WRITTEN, ReportPaths, not_written
from .verdicts import CaseIndex, token_totals, verdicts

__all__ = ["SCHEMA_PATH", "SCHEMA_VERSION", "Results", "case_entry", "write_atomically"]

SCHEMA_VERSION = 2  # raised when a field changes meaning or goes away; new fields keep it
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")


def case_entry(case: Case, outcome: Outcome) -> dict[str, Any]:
    """One case as the document holds it: a field the Outcome gains is one line here (and one in the schema)."""
    return {
        "id": case.id,
        "endpoint": case.endpoint.name,
        "model": case.model,
        "type": case.type.name,
        "monitor": case.monitor,
        "verdict": "pass" if outcome.passed else "fail",
        "degraded": list(outcome.degraded),
        "class": outcome.error_class,
        "reason": outcome.reason,
        "duration_s": outcome.duration_s,
        "elapsed_s": outcome.elapsed_s,
        "metrics": {name: value for name, value in outcome.metrics.items() if math.isfinite(value)},
        "attempts": [
            {"class": a.error_class, "status_code": a.status_code, "duration_s": a.duration_s} for a in outcome.attempts
        ],
    }


class Results:
    """Collects every report of the run and, at its end, writes the document and the step summary."""

    def __init__(
        self, config: pytest.Config, paths: ReportPaths, suite: Suite, index: CaseIndex, stopper: Stopper
    ) -> None:
        self._config = config
        self._paths = paths
        self._suite = suite
        self._index = index
        self._stopper = stopper
        self._reports: list[pytest.TestReport] = []
        self._selected = 0  # set once collection ends
        self._said: list[tuple[str, bool]] = []  # lines for the terminal summary, and whether each is an error

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._selected = len(session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """xdist's controller collects nothing itself: every worker collects the same items and says which."""
        self._selected = len(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._reports.append(report)

    def write(self, exit_code: int) -> int:
        """Write the document and the step summary with the run's final exit code (plugin.py calls this last of the
        session's end, whatever another plugin's end did); the code to exit with (not_written's when a file could
        not be)."""
        if self._paths.step_summary is not None:
            summary = step_summary.markdown(self.document(exit_code, time.time()))
            if not self._write("appended the step summary to", self._paths.step_summary, lambda p: _append(p, summary)):
                exit_code = not_written(exit_code)  # the document says so: it is written after
        if self._paths.results_json is not None:
            document = self.document(exit_code, time.time())
            text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
            if not self._write("wrote the results to", self._paths.results_json, lambda p: write_atomically(p, text)):
                exit_code = not_written(exit_code)
        return exit_code

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for line, failed in self._said:
            terminalreporter.write_line(line, red=failed, bold=failed)

    def document(self, exit_code: int, ended: float) -> dict[str, Any]:
        found = verdicts(self._reports, self._index)
        cases = [case_entry(case, outcome) for case, outcome, _ in found]
        in_file = len(self._suite.cases)
        stop = self._stopper.reason
        return {
            "schema_version": SCHEMA_VERSION,
            "run": {
                **_when("started_at", self._stopper.started),
                **_when("ended_at", ended),
                "host": socket.gethostname(),
                "selection": {
                    "endpoints_file": str(self._suite.path),
                    "only": list(self._config.option.only or ()),
                    "keyword": self._config.option.keyword or None,
                    "markers": self._config.option.markexpr or None,
                    "cases_in_file": in_file,
                    "selected": self._selected,
                    "deselected": in_file - self._selected,
                },
                "exit_status": {"code": exit_code, "name": _exit_name(exit_code)},
                "stopped": None if stop is None else {"class": stop[0].value, "reason": stop[1]},
                "tokens": token_totals([outcome for _, outcome, _ in found]),
            },
            "cases": cases,
        }

    def _write(self, done: str, path: Path, write: Callable[[Path], None]) -> bool:
        """A report that cannot be written at the end (the disk filled up) is said, not hidden, and ends nothing."""
        try:
            write(path)
        except OSError as exc:
            self._said.append((f"model-monitor: could not write {path}: {exc.strerror or exc}", True))
            return False
        self._said.append((f"model-monitor: {done} {path}", False))
        return True


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename over it: a reader sees the old document or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Made with the umask's permissions (not mkstemp's 0600): a host user reads what a container wrote.
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(text)


def _when(name: str, unix: float) -> dict[str, Any]:
    """A moment twice: ISO 8601 in UTC for people and tools, Unix seconds for arithmetic."""
    iso = datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {name: iso, f"{name}_unix": round(unix, 3)}


def _exit_name(code: int) -> str:
    """pytest's name for an exit code (TESTS_FAILED, INTERRUPTED ...) or ours, or OTHER for one a plugin made up."""
    if code == REPORT_NOT_WRITTEN:
        return "REPORT_NOT_WRITTEN"
    try:
        return pytest.ExitCode(code).name
    except ValueError:
        return "OTHER"
