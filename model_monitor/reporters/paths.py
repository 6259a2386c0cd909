"""Where a run writes its reports, checked at start-up: a path that cannot be written is a usage error (exit 4)
before any request is sent, not a crash at the end that exits 1 as if a model had failed.

A report that still cannot be written at the end (the disk filled up) is said in the summary, and the run exits
REPORT_NOT_WRITTEN, a code of its own: the verdicts went out through the other channels, and a CI gate that reads
the report must not take its absence for a failed model.

A missing folder is made at the end, as pytest makes JUnit's; what must already allow writing is the nearest
folder that exists. The check writes and removes a file of its own there, so a read-only mount, a permission,
an SELinux label or a uid mismatch is caught as it will be at the end, and nothing is left behind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..settings import OPTIONS, Settings

__all__ = ["REPORT_NOT_WRITTEN", "ReportPaths", "not_written", "report_paths"]

REPORT_NOT_WRITTEN = 6  # exit code: past pytest's 0-5, below the shell's 126-255

# How an error names each option: its flag and its variable.
NAMED = {option.dest: f"{option.flag} ({option.env})" for option in OPTIONS if option.env}


@dataclass(frozen=True)
class ReportPaths:
    """The report files this run writes besides pytest's own (None: not asked for)."""

    results_json: Path | None
    step_summary: Path | None


def report_paths(config: pytest.Config, resolved: Settings) -> ReportPaths:
    """The report paths of the run, each checked; raise UsageError naming the option, the path and why not."""
    junit = _absolute(config, config.getoption("xmlpath", None))
    results_json = _absolute(config, resolved.results_json)
    step_summary = _absolute(config, resolved.step_summary)
    named = (("--junitxml", junit), (NAMED["results_json"], results_json), (NAMED["step_summary"], step_summary))
    for option, path in named:
        if path is not None and (why := unwritable(path)) is not None:
            raise pytest.UsageError(f"{option}: cannot write {path}: {why}")
    return ReportPaths(results_json, step_summary)


def not_written(exit_code: int) -> int:
    """The exit code of a run one of whose reports could not be written: REPORT_NOT_WRITTEN in place of a verdict
    (0 or 1); an interrupted or broken run keeps its own code."""
    return REPORT_NOT_WRITTEN if exit_code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) else exit_code


def unwritable(path: Path) -> str | None:
    """Why `path` cannot be written, or None when it can."""
    try:
        if path.is_dir():
            return "it is a folder"
        folder = next(parent for parent in path.parents if parent.exists())  # the root always exists
        if not folder.is_dir():
            return f"{folder} is a file, not a folder"
    except OSError as exc:  # a folder on the way that may not be searched
        return _said(exc, exc.filename or path)
    try:
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".model-monitor-check-")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as exc:
        return _said(exc, folder)
    try:
        if path.exists():
            path.open("a").close()  # opened, not written: the file stays as it is
    except OSError as exc:
        return _said(exc, path)
    return None


def _said(exc: OSError, where: object) -> str:
    """`permission denied in /reports`, `read-only file system in /reports`."""
    return f"{(exc.strerror or type(exc).__name__).lower()} in {where}"


def _absolute(config: pytest.Config, text: str | None) -> Path | None:
    """A path as pytest reads --junitxml: ~ and $VARS expanded, relative to where the run was started."""
    return config.invocation_params.dir / os.path.expanduser(os.path.expandvars(text)) if text else None
