"""A stopped run's remaining cases, reported without being run: each case's outcome (a verdict if its request had
finished, else the stop's class) in the reports pytest would make, without fixtures, a call or a traceback. Each
case run in full costs milliseconds, which at thousands of cases would outlast the stop grace; in one process, the
cases left are reported in one pass, outside pytest's per-case protocol and the hooks that wrap it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from .outcome import Outcome
from .stop import Stopper

__all__ = ["NAME", "Loop", "report_unrun"]

NAME = "model_monitor.stopped"


class Loop:
    """pytest's run loop for a run in one process, except that once the run is stopped each case left goes to
    `report` (False for a test that is not a case, which still runs): pytest's own loop would call each case's
    protocol, whose wrappers (pytest-timeout, warnings, faulthandler...) alone cost a third of a millisecond a
    case, and 50,000 cases would outlast the grace."""

    def __init__(self, stopper: Stopper, report: Callable[[pytest.Item], bool]) -> None:
        self._stopper = stopper
        self._report = report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if session.testsfailed or session.config.option.collectonly:
            return None  # pytest's own loop: its refusal of a run whose collection failed, or nothing to run
        items = session.items
        for index, item in enumerate(items):
            nextitem = items[index + 1] if index + 1 < len(items) else None
            if self._stopper.reason is None or not self._report(item):  # a test that is not a case still runs
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
        return True


def report_unrun(item: pytest.Item, outcome: Outcome) -> None:
    """Tell pytest's reporters (terminal, JUnit, ours) that `item` ran and ended with `outcome`: its call and its
    teardown (which carries the JUnit properties); a passed setup would say nothing to any of them."""
    location = _location(item)
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=location)
    now, failed = time.time(), not outcome.passed
    for when, verdict, longrepr, duration in (
        ("call", "failed" if failed else "passed", outcome.reason if failed else None, outcome.duration_s),
        ("teardown", "passed", None, 0.0),
    ):
        report = pytest.TestReport(
            item.nodeid,
            location,
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
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=location)


def _location(item: pytest.Item) -> tuple[str, int | None, str]:
    """pytest's `item.location` (file, line, name), its file and line worked out once per test function: pytest
    reads them from the function's source for each item, a fifth of a millisecond that 50,000 cases would feel."""
    if not isinstance(item, pytest.Function):
        return item.location
    where = _WHERE.get(item.function)
    if where is None:
        where = _WHERE[item.function] = item.location[:2]
    return (*where, item.getmodpath())


_WHERE: dict[object, tuple[str, int | None]] = {}  # a test function -> its file and line, as item.location has them
