"""What one run holds: its settings, the loaded suite, and the machinery started for it (plugin.py's hooks drive
it through pytest's stash)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from .config import Suite, discovery
from .probe.engine import Engine
from .probe.loop import BackgroundLoop
from .redact import RedactingRecords, Redactor
from .reporters import Destinations, Reporter
from .reporters.results import Results
from .reporters.verdicts import CaseIndex
from .settings import Settings
from .stop import Stopper

__all__ = ["Monitor"]


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

    def start_engine(self, share: int, drain: bool) -> Engine:
        """The run's engine, started once: `share` xdist workers split the caps (they hold for the whole run);
        `drain` lets the first case wait for the prefetched probes (not when the user set --timeout)."""
        if self.engine is None:
            self.engine = Engine(
                self.background(), self.redact, self.settings.max_concurrency, share=share, drain=drain
            )
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

    def close(self) -> None:
        self.stopper.uninstall()
        if self.engine is not None:
            self.engine.close()
        if self.loop is not None:
            self.loop.close()
        self.records.uninstall()
