"""Reporting: where each case's verdict goes once it is known (heartbeats, metrics, documents, the terminal).

A Reporter is told each case's verdict and flushes at the run's end; `build` makes the ones the settings ask for,
and the plugin loops over them. A new reporter is its module and one line in `build` (and, when it has settings to
read at start-up, one in Destinations). The results document and the step summary (results.Results) are a pytest
plugin instead: they read every report and write after the exit status is final, which the Reporters' failures
may still change; the terminal table (terminal) is drawn by the plugin from pytest's own reports.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import pytest

from ..case import Case
from ..errors import TelemetryConfigError
from ..outcome import Outcome
from ..probe.loop import BackgroundLoop
from ..redact import Redactor
from ..settings import Settings, otlp_endpoint_variable
from . import heartbeats, pushgateway
from .verdicts import CaseIndex, outcome_of

__all__ = ["Destinations", "Fanout", "Reporter", "build"]

OTLP_EXPORTER = "opentelemetry.exporter.otlp.proto.http"  # the `otlp` extra: not in a base install


class Reporter(Protocol):
    """Where verdicts go, on the process that sees every one (the only one, or xdist's controller)."""

    # True when its flush only waits for what it sent during the run: it is flushed after the others, so that
    # their pushes overlap its last deliveries.
    flush_last: ClassVar[bool]

    def ended(self, case: Case, outcome: Outcome) -> None:
        """A case's verdict, stamped with when its request really started and ended."""

    def flush(self, budget: float) -> None:
        """At the run's end: push, export or deliver what is kept, at most `budget` seconds; never raises."""

    @property
    def failed(self) -> bool:
        """Something was not delivered (counted by --telemetry-strict, shown in the summary)."""

    def summary_lines(self) -> list[str]:
        """What the terminal summary says of it, once flushed."""


@dataclass(frozen=True)
class Destinations:
    """Where verdicts go besides the terminal, read from the settings at start-up on every process (their secrets
    join the Redactor there); a malformed one raises TelemetryConfigError naming its option."""

    targets: list[heartbeats.Target]
    gateway: pushgateway.Gateway | None
    otlp: str | None  # the variable that names the OTLP endpoint

    @classmethod
    def from_settings(cls, s: Settings) -> Destinations:
        targets = heartbeats.targets_from(s.cronitor_url, s.cronitor_env, s.healthchecks_url, s.healthchecks_create)
        gateway = pushgateway.gateway_from(s)
        otlp = otlp_endpoint_variable()
        if otlp is not None and not _installed(OTLP_EXPORTER):
            raise TelemetryConfigError(
                f"{otlp} is set, but the OTLP exporter is not installed: install model-monitor[otlp]"
            )
        return cls(targets, gateway, otlp)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets in their URLs and headers, in the open, for the Redactor only."""
        return (*(s for t in self.targets for s in t.secrets), *(self.gateway.secrets if self.gateway else ()))

    def header_lines(self, dry_run: bool) -> list[str]:
        """For the report header: where pings and metrics go, keys hidden."""
        return [
            heartbeats.describe(self.targets, dry_run),
            *([f"metrics: push to {self.gateway.url} at the end of the run"] if self.gateway else []),
        ]

    def pacing_lines(self, s: Settings, cases_here: int) -> list[str]:
        """For the report header: how long this process's pings take at --telemetry-rate, when that is long."""
        if not self.targets or s.telemetry_dry_run:
            return []
        pings = 2 * cases_here * len(self.targets)  # each case's run and end, to every target
        return heartbeats.pacing_note(pings, s.telemetry_rate, s.telemetry_deadline)


def _installed(module: str) -> bool:
    """Whether a module can be imported, without importing it (a missing parent package counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build(
    where: Destinations, s: Settings, loop: Callable[[], BackgroundLoop], redact: Redactor, selected: Iterable[Case]
) -> list[Reporter]:
    """The reporters `where` asks for, in the order the summary lists them, started; `selected` are the cases this
    process runs (read only if a reporter needs them)."""
    reporters: list[Reporter] = []
    if where.targets:
        reporters.append(heartbeats.start(where.targets, s, loop(), redact, selected))
    if where.gateway is not None:
        reporters.append(pushgateway.Pusher(where.gateway, redact, s.telemetry_dry_run))
    if where.otlp is not None:
        from .otlp import OtlpMetrics  # the SDK takes 0.1 s to import: only for the runs that export

        reporters.append(OtlpMetrics(where.otlp))
    return reporters


class Fanout:
    """Hands each case's verdict to every reporter from the process that sees every report: the only one, or
    xdist's controller."""

    def __init__(self, reporters: list[Reporter], cases: CaseIndex) -> None:
        self._reporters = reporters
        self._cases = cases

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """On a case's verdict (its call, or a failed setup, a crash, a timeout): its outcome, stamped with when
        its request really started and ended."""
        case = self._cases.case_of(report)
        if case is None or report.when == "teardown" or report.skipped or (report.when == "setup" and report.passed):
            return
        outcome = outcome_of(report)
        for reporter in self._reporters:
            reporter.ended(case, outcome)
