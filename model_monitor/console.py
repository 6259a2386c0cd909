"""The `model-monitor` command's own voice on the terminal: a pytest plugin that only the command adds (cli.py).

It replaces pytest's plumbing (rootdir, plugins, progress dots, the FAILURES block and the short summary with node
ids, all turned off by the command's arguments) with the monitor's header, one line per failed case and, on long
runs, a progress line; the summary table stays the plugin's. `pytest checks` never loads it: pytest users keep
pytest's output exactly as it is, and `model-monitor -v` gets it back too.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path

import pytest

from . import __version__
from .reporters.verdicts import outcome_of
from .run import Monitor

__all__ = ["Console"]

PLUGIN_NAME = "model_monitor.console.Console"
PROGRESS_AFTER_S = 3.0  # a run shorter than this shows no progress at all
TTY_EVERY_S = 0.5  # how often a terminal's line is redrawn
LOG_EVERY_S = 30.0  # how often a log (stdout not a terminal) gets a progress line
ERASE_REST = "\x1b[K"  # ANSI: erase to the end of the line
QUIETER = -2  # pytest's verbosity that leaves out its last line too


class Console:
    """Header, failure lines and progress; registered by pytest_configure below for the command's runs.

    Progress comes from a ticker thread: the cases report in the order pytest runs them, so one slow case early
    holds back the reports of the finished probes behind it. It reads the engine's counts (a single process) or
    the reports seen so far (xdist's controller, whose workers hold the engines). It writes to its own copy of
    stdout, taken before pytest's output capture starts: while a case runs, capture turns stdout itself into a
    file that only a failing case's report would show."""

    def __init__(self, reporter: pytest.TerminalReporter, monitor: Monitor) -> None:
        self._reporter = reporter
        self._monitor = monitor
        sys.stdout.flush()
        self._out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", errors="replace")
        self._tty = self._out.isatty()
        self._started = time.monotonic()
        self._session: pytest.Session | None = None
        self._headed = False
        self._judged = 0
        self._failed = 0
        self._drawn = False  # a progress line waits at the end of the terminal's line
        self._lock = threading.Lock()  # the ticker and pytest's thread write to one terminal
        self._stopped = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="model-monitor progress", daemon=True)

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> Generator[None, tuple[str, str, str], object]:
        """Keep pytest's count of each outcome, drop its letters and words (the progress dots, PASSED/FAILED)."""
        category, _, _ = yield
        return category, "", ""

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session
        if not session.config.option.collectonly:
            self._ticker.start()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        case = self._monitor.cases.case_of(report)
        if case is None or report.skipped or (report.when != "call" and report.passed):
            return
        with self._lock:
            self._header()
            self._judged += 1
            if report.failed:
                self._failed += 1
                self._line(f"FAIL  {case.id}  {outcome_of(report).reason}")

    @pytest.hookimpl(tryfirst=True)  # before the plugin's last pings: progress is over then
    def pytest_sessionfinish(self, exitstatus: int) -> None:
        """A run that judged nothing (everything deselected, or left to the other shards) still says what it read;
        a usage error is said alone."""
        self._stopped.set()
        if self._ticker.is_alive():
            self._ticker.join()
        with self._lock:
            self._clear()
            if exitstatus != pytest.ExitCode.USAGE_ERROR:
                self._header()
            else:  # pytest's count (`1 deselected`) would come before the error pytest prints after the session
                self._reporter.config.option.verbose = QUIETER
        self._out.close()

    def _tick(self) -> None:
        every = TTY_EVERY_S if self._tty else LOG_EVERY_S
        if self._stopped.wait(PROGRESS_AFTER_S if self._tty else LOG_EVERY_S):
            return
        while True:
            if self._session is None or not self._session.testscollected:  # xdist's workers are still collecting
                if self._stopped.wait(TTY_EVERY_S):
                    return
                continue
            with self._lock:
                self._header()
                line = self._progress_line()
                if self._tty:
                    self._write("\r" + line + ERASE_REST)
                    self._drawn = True
                else:
                    self._line(line)
            if self._stopped.wait(every):
                return

    def _progress_line(self) -> str:
        total = self._session.testscollected if self._session is not None else 0
        engine = self._monitor.engine
        done, failed, in_flight = engine.progress() if engine is not None else (self._judged, self._failed, None)
        done, failed = max(done, self._judged), max(failed, self._failed)
        flight = f"{in_flight} in flight" if in_flight is not None else f"{max(total - done, 0)} to go"
        took = time.monotonic() - self._started
        return f"model-monitor: {done}/{total} done, {failed} failing, {flight} ({took:.0f} s)"

    def _header(self) -> None:
        """Written once, before anything else of ours: what is checked, and where the results go."""
        if not self._headed:
            self._headed = True
            selected = self._session.testscollected if self._session is not None else 0
            for line in header_lines(self._reporter.config, self._monitor, selected):
                self._line(line)

    def _line(self, line: str) -> None:
        self._clear()
        self._write(line + "\n")

    def _clear(self) -> None:
        if self._drawn:
            self._write("\r" + ERASE_REST)
            self._drawn = False

    def _write(self, text: str) -> None:
        sys.stdout.flush()  # what pytest wrote comes first
        try:
            self._out.write(text)
            self._out.flush()
        except OSError:  # the reader went away (`| head -1`): our copy goes on into /dev/null, as stdout does
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._out.fileno())
            os.close(devnull)
            self._out.flush()
            sys.stdout.write(text)  # the command's stdout notices the broken pipe and says so once
            sys.stdout.flush()


def header_lines(config: pytest.Config, monitor: Monitor, selected: int) -> list[str]:
    """The monitor's version, the endpoints file, the cases selected (of the file's) and its endpoints, and where
    results go; never a secret."""
    s = monitor.settings
    cases = monitor.suite.cases
    endpoints = len(monitor.suite.connections)
    shown = _count(selected, "case") + (f" of {len(cases)}" if selected != len(cases) else "")
    reports = [
        f"{name} {path}"
        for name, path in (
            ("junit", config.getoption("xmlpath", None)),
            ("results", s.results_json),
            ("step summary", s.step_summary),
        )
        if path
    ]
    metrics = [
        *([f"push to {monitor.destinations.gateway.url}"] if monitor.destinations.gateway else []),
        *([f"OTLP to ${monitor.destinations.otlp}"] if monitor.destinations.otlp else []),
    ]
    lines = [
        f"model-monitor {__version__}: {shown} on {_count(endpoints, 'endpoint')} from {Path(s.endpoints)}",
        *monitor.destinations.header_lines(s.telemetry_dry_run)[:1],
        "metrics: " + (", ".join(metrics) or "off (no --pushgateway-url, no OTEL_EXPORTER_OTLP_ENDPOINT)"),
        "reports: " + (", ".join(reports) or "none (--junitxml, --results-json, --step-summary)"),
    ]
    if s.shard is not None:
        lines.append(f"shard {s.shard}")
    return lines + monitor.destinations.pacing_lines(s, len(cases))


@pytest.hookimpl(trylast=True)  # after the plugin's pytest_configure has loaded the endpoints file
def pytest_configure(config: pytest.Config) -> None:
    # Imported here, once the entry point has registered the plugin: this module is loaded earlier (-p), and what
    # the run's module imports must not come before the plugin (pytest would warn it can no longer rewrite it).
    from .run import MONITOR

    monitor = config.stash.get(MONITOR, None)
    if monitor is None or hasattr(config, "workerinput"):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        config.pluginmanager.register(Console(reporter, monitor), PLUGIN_NAME)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
