"""A stopped run's remaining cases, reported without being run: each case's outcome (a verdict if its request had
finished, else the stop's class) in the reports pytest would make, without fixtures, a call or a traceback. Each
case run in full costs milliseconds, which at thousands of cases would outlast the stop grace."""

from __future__ import annotations

import time

import pytest

from .outcome import Outcome

__all__ = ["report_unrun"]


def report_unrun(item: pytest.Item, outcome: Outcome) -> None:
    """Tell pytest's reporters (terminal, JUnit, ours) that `item` ran and ended with `outcome`."""
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    now, failed = time.time(), not outcome.passed
    for when, verdict, longrepr, duration in (
        ("setup", "passed", None, 0.0),
        ("call", "failed" if failed else "passed", outcome.reason if failed else None, outcome.duration_s),
        ("teardown", "passed", None, 0.0),
    ):
        report = pytest.TestReport(
            item.nodeid,
            item.location,
            {},
            verdict,  # type: ignore[arg-type]  # one of pytest's three outcomes
            longrepr,
            when,  # type: ignore[arg-type]  # one of pytest's three phases
            duration=duration or 0.0,
            start=now,
            stop=now,
            user_properties=list(item.user_properties),
        )
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
