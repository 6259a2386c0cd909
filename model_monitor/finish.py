"""The run's end: its own last work (the pushes and pings, the results document) around the other plugins', and
its summary on the terminal."""

from __future__ import annotations

import gc
import os
from collections.abc import Generator

import pytest

from . import stopped
from .reporters import junit, terminal, verdicts
from .reporters.paths import not_written
from .run import MONITOR, Monitor

__all__ = ["pytest_sessionfinish", "pytest_terminal_summary"]


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """The run's own end comes first and does not depend on another plugin's: the pushes and the last pings before
    any other plugin's end (pytest's JUnit writer among them) runs, the results document after them, whatever they
    did. A report another plugin could not write (a full disk) is said and exits REPORT_NOT_WRITTEN, not 1; the
    innermost wrapper, so that the terminal's summary still follows."""
    monitor = session.config.stash.get(MONITOR, None)
    if monitor is None:
        return (yield)
    # What the run made (items, reports, results) lives to its end: frozen, it is left out of the collections that
    # pytest's end (its check for unraisable exceptions) and the interpreter's exit make, 0.35 s at 5,000 cases.
    gc.freeze()
    _end(session, monitor)
    try:
        # pytest writes JUnit around a placeholder that the testcases, held as text since each ended, then fill
        with junit.written_from_text(session.config):
            yield
    except OSError as exc:
        monitor.unwritten.append(_unwritten(session.config, exc))
        session.exitstatus = not_written(session.exitstatus)
    finally:
        if monitor.results is not None:
            session.exitstatus = monitor.results.write(int(session.exitstatus))


def _unwritten(config: pytest.Config, exc: OSError) -> str:
    """`could not write /reports/junit.xml: No space left on device`: the file is JUnit's unless the error names it."""
    junit = config.getoption("xmlpath", None)
    where = exc.filename or (os.path.abspath(junit) if junit else "a report")
    return f"model-monitor: could not write {where}: {exc.strerror or exc}"


def _end(session: pytest.Session, monitor: Monitor) -> None:
    """Push the metrics and deliver the last pings (bounded, tighter after a stop) before the summary names any
    that failed."""
    if monitor.stopper.reason is not None:
        # The summary table gives every case's reason. pytest's FAILURES section would repeat them, in a time that
        # grows with the square of the cases (it looks for each one's teardown among all reports): minutes at 5,000.
        session.config.option.tbstyle = "no"
    session.exitstatus = monitor.flush(session.exitstatus)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    monitor = terminalreporter.config.stash.get(MONITOR, None)
    if monitor is None:
        return
    found = verdicts.verdicts((r for reports in terminalreporter.stats.values() for r in reports), monitor.cases)
    loop = terminalreporter.config.pluginmanager.get_plugin(stopped.NAME)  # a run in one process
    terminal.summary(
        terminalreporter,
        found,
        monitor.stopper.reason,
        monitor.reporters,
        shard=(monitor.settings.shard, monitor.others_shards),
        bulk=loop.bulk if isinstance(loop, stopped.Loop) else 0,
    )
    if (exhausted := terminal.exhausted(found)) is not None:  # once for the run, not the endpoints' news
        terminalreporter.write_line(exhausted, red=True, bold=True)
    for line in monitor.unwritten:
        terminalreporter.write_line(line, red=True, bold=True)
