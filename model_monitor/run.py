"""What one run holds: its settings, the loaded suite, and the machinery started for it (plugin.py's hooks drive
it through pytest's stash)."""

from __future__ import annotations

import resource
import subprocess
from dataclasses import dataclass, field

import pytest

from . import selection
from .config import Suite, discovery
from .outcome import Outcome
from .probe.engine import Engine
from .probe.loop import BackgroundLoop
from .probe.process import descriptor_cap
from .redact import RedactingRecords, Redactor
from .reporters import Destinations, Reporter
from .reporters.results import Results
from .reporters.verdicts import CaseIndex
from .settings import Settings
from .stop import WRITING_SHARE, Stopper

__all__ = ["MONITOR", "DegradedCount", "Monitor"]

MIN_FLUSH_S = 1.0  # even a stopped run gives its last pings this long


@dataclass
class Monitor:
    """Everything one run holds: settings, the loaded suite, and the machinery started for it."""

    settings: Settings
    suite: Suite
    redact: Redactor
    records: RedactingRecords
    cases: CaseIndex
    stopper: Stopper
    destinations: Destinations
    reporters: list[Reporter] = field(default_factory=list)  # on the process that sees every verdict
    loop: BackgroundLoop | None = None
    engine: Engine | None = None
    config_error: str | None = None  # xdist controller: a worker's, raised once the workers are done
    others_shards: int = 0  # selected cases this process left to the other shards
    listings: dict[str, discovery.Listing] = field(default_factory=dict)  # what discovery found, for the workers
    degraded: int = 0  # degraded passes seen by the process that sees every verdict
    results: Results | None = None  # --results-json and the step summary, written last of the session's end
    unwritten: list[str] = field(default_factory=list)  # why a report of another plugin's was not written

    def background(self) -> BackgroundLoop:
        if self.loop is None:
            self.loop = BackgroundLoop()
        return self.loop

    def start_engine(self, share: int, spare: subprocess.Popen[bytes] | None = None) -> Engine:
        """The run's engine, started once: `share` xdist workers split the caps (they hold for the whole run);
        `spare`, a probing process started ahead for its cap."""
        if self.engine is None:
            self.engine = Engine(self.redact, self.settings.max_concurrency, share=share, spare=spare)
            self.stopper.attach(self.engine)
        return self.engine

    def exit_status(self, status: int, telemetry_failed: bool) -> int:
        """The run's exit status from pytest's: a stop is an interruption (2); a shard with nothing to do did its
        part; --fail-on decides what the verdicts make of it; --telemetry-strict fails a run whose telemetry was not
        all delivered. Usage (4) and internal (3) errors stay what they are."""
        if self.stopper.signal_name and status in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            return pytest.ExitCode.INTERRUPTED
        if status == pytest.ExitCode.NO_TESTS_COLLECTED and self.others_shards:
            status = pytest.ExitCode.OK  # exit 5 would fail this shard's Job index
        fail_on = self.settings.fail_on
        if status == pytest.ExitCode.OK and fail_on == "degraded" and self.degraded:
            status = pytest.ExitCode.TESTS_FAILED
        if status == pytest.ExitCode.TESTS_FAILED and fail_on == "never":
            status = pytest.ExitCode.OK  # every case was judged and reported: the verdicts travel by telemetry
        if status == pytest.ExitCode.OK and telemetry_failed and self.settings.telemetry_strict:
            status = pytest.ExitCode.TESTS_FAILED
        return status

    def header_lines(self) -> list[str]:
        """What the run checks, with how many requests in flight, and where its results go."""
        s = self.settings
        here = [case for case in self.suite.cases if selection.runs_here(case, s)]
        lines = [
            f"model-monitor: {len(self.suite.cases)} cases from {self.suite.path}; "
            f"at most {_in_flight(s.max_concurrency)} requests in flight",
            *self.destinations.header_lines(s.telemetry_dry_run),
        ]
        if s.shard is not None:
            lines.append(f"model-monitor: shard {s.shard}: {len(here)} of the cases run here (before -k and -m)")
        return lines + self.destinations.pacing_lines(s, len(here))

    def flush(self, status: int) -> int:
        """Push the metrics and deliver the last pings (end pings after the pushes), within the telemetry deadline
        or what is left of a stopped run's grace but the part that writes the reports; the run's exit status."""
        budget = max(MIN_FLUSH_S, min(self.settings.telemetry_deadline, self.stopper.grace_left(WRITING_SHARE)))
        failed = False
        for reporter in sorted(self.reporters, key=lambda r: r.flush_last):
            reporter.flush(budget)
            failed |= reporter.failed
        return self.exit_status(status, telemetry_failed=failed)

    def close(self) -> None:
        self.stopper.uninstall()
        if self.engine is not None:
            self.engine.close()
        if self.loop is not None:
            self.loop.close()
        self.records.uninstall()


def _in_flight(asked: int) -> str:
    """--max-concurrency, or less when the open-file limit (ulimit -n) leaves room for fewer sockets."""
    cap = descriptor_cap()
    if cap is None or cap >= asked:
        return str(asked)
    return f"{cap} (not {asked}: ulimit -n {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"


MONITOR = pytest.StashKey[Monitor]()  # the run, in the config's stash


class DegradedCount:
    """Counts the degraded passes, for --fail-on degraded, on the process that sees every verdict."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = Outcome.from_properties(report.user_properties) if report.when == "call" and report.passed else None
        if outcome is not None and outcome.degraded:
            self._monitor.degraded += 1
