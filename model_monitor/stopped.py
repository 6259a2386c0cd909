"""A stopped run's remaining cases, reported without being run: each case's outcome (a verdict if its request had
finished, else the stop's class) in the reports pytest would make, without fixtures, a call or a traceback.

Each case run in full costs milliseconds, which at thousands of cases would outlast the stop grace. In one process
the cases left are reported in one pass, outside pytest's per-case protocol and the hooks that wrap it: one by one
to every reporter while the rest would still fit in the reporting half of the grace in bulk, then in bulk, each
case only to the reporters that record it (the results file, the pings, the metrics, the degraded count), and to
pytest's terminal and JUnit as one failure that counts them. So the run ends within the grace whatever the number
of cases (its benchmark: python -m bench --only stop)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import pytest

from .outcome import Outcome
from .stop import Stopper

__all__ = ["DEGRADED", "NAME", "RECORDERS", "REPORTERS", "RESULTS", "Loop", "Order", "report_unrun"]

NAME = "model_monitor.stopped"
REPORTING_SHARE = 0.5  # of the stop grace: the cases left are all reported by then, one by one or in bulk
BULK_SPEEDUP = 3  # a case reported in bulk costs a third of one reported one by one (measured: 0.1 vs 0.3 ms)
CALIBRATION = 20  # cases reported one by one before their pace is trusted
# The plugins that record every case's verdict, by the names plugin.py registers them under: a bulk case reaches these.
RESULTS, DEGRADED, REPORTERS = "model_monitor.results", "model_monitor.degraded", "model_monitor.reporters"
RECORDERS = (RESULTS, DEGRADED, REPORTERS)


Order = Callable[[Sequence[pytest.Item]], Iterable[tuple[pytest.Item, pytest.Item | None]]]


class Loop:
    """pytest's run loop for a run in one process, in the order `order` gives (each item with one to run after it,
    None for the last), except that once the run is stopped each case left is reported by `outcome` (which records
    it on the item; None for a test that is not a case, which still runs): pytest's own loop would call each case's
    protocol, whose wrappers (pytest-timeout, warnings, faulthandler...) alone cost a third of a millisecond a case,
    and 50,000 cases would outlast the grace."""

    def __init__(self, stopper: Stopper, outcome: Callable[[pytest.Item], Outcome | None], order: Order) -> None:
        self._stopper = stopper
        self._outcome = outcome
        self._order = order
        self.bulk = 0  # cases reported in bulk

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if session.testsfailed or session.config.option.collectonly:
            return None  # pytest's own loop: its refusal of a run whose collection failed, or nothing to run
        items = session.items
        bulk: list[tuple[pytest.Item, Outcome]] = []
        pace = Pace(self._stopper, len(items))
        for index, (item, nextitem) in enumerate(self._order(items)):
            outcome = None if self._stopper.reason is None else self._outcome(item)
            if outcome is None:
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            elif bulk or pace.bulk_from(index):
                bulk.append((item, outcome))
            else:
                report_unrun(item, outcome)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
        if bulk:
            self.bulk = len(bulk)
            _report_bulk(session, bulk)
        return True


class Pace:
    """When a stopped run's cases must go in bulk: once the rest, in bulk (at a third of the pace seen so far one by
    one), would no longer end within the reporting share of the grace, or that share is over."""

    def __init__(self, stopper: Stopper, count: int) -> None:
        self._stopper = stopper
        self._count = count
        self._first: tuple[int, float] | None = None  # the first case reported one by one, and when

    def bulk_from(self, index: int) -> bool:
        now, left = time.monotonic(), self._stopper.grace_left(1 - REPORTING_SHARE)
        if self._first is None:
            self._first = index, now
        done, since = index - self._first[0], now - self._first[1]
        if left <= 0:
            return True
        if done < CALIBRATION:
            return False
        return (self._count - index) * since / done / BULK_SPEEDUP >= left


def _report_bulk(session: pytest.Session, bulk: list[tuple[pytest.Item, Outcome]]) -> None:
    """Each case's call to the RECORDERS alone, then one failure for pytest's terminal and JUnit that counts them."""
    manager = session.config.pluginmanager
    others = [plugin for name, plugin in manager.list_name_plugin() if plugin is not None and name not in RECORDERS]
    record = manager.subset_hook_caller("pytest_runtest_logreport", remove_plugins=others)
    for item, outcome in bulk:
        record(report=_report(item, _location(item), outcome, "call"))
    failures = [outcome.reason for _, outcome in bulk if not outcome.passed]
    first, _ = bulk[0]
    summary = Outcome(
        passed=False,
        reason=f"{len(bulk)} cases reported in bulk, not one by one, to end within the stop grace ({len(failures)} "
        f"failed, {len(bulk) - len(failures)} passed; each is in the results file, pings and metrics, where set)"
        + (f"; the first failure: {failures[0]}" if failures else ""),
    )
    nodeid = f"{first.nodeid.partition('[')[0]}[{len(bulk)} cases reported in bulk]"
    location = (*_location(first)[:2], nodeid.rpartition("::")[2])
    session.config.hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
    for when in ("call", "teardown"):
        session.config.hook.pytest_runtest_logreport(report=_report(first, location, summary, when, nodeid=nodeid))
    session.config.hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


def report_unrun(item: pytest.Item, outcome: Outcome) -> None:
    """Tell pytest's reporters (terminal, JUnit, ours) that `item` ran and ended with `outcome`: its call and its
    teardown (which carries the JUnit properties); a passed setup would say nothing to any of them."""
    location = _location(item)
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=location)
    for when in ("call", "teardown"):
        item.ihook.pytest_runtest_logreport(report=_report(item, location, outcome, when))
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=location)


def _report(
    item: pytest.Item, location: tuple[str, int | None, str], outcome: Outcome, when: str, nodeid: str | None = None
) -> pytest.TestReport:
    """The report pytest would make of `item`'s call (its verdict) or teardown (passed, with the properties)."""
    failed = when == "call" and not outcome.passed
    now = time.time()
    return pytest.TestReport(
        nodeid or item.nodeid,
        location,
        {},
        "failed" if failed else "passed",
        outcome.reason if failed else None,
        when,  # type: ignore[arg-type]  # one of pytest's three phases
        duration=(outcome.duration_s or 0.0) if when == "call" else 0.0,
        start=now,
        stop=now,
        user_properties=list(item.user_properties) if nodeid is None else [],
    )


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
