"""Heartbeat pings per case to Cronitor and Healthchecks: exact, bounded, and never carrying a secret in the open.

targets reads each target's URL and turns a case's start and end into pings; delivery sends them (paced, retried,
tallied); provision creates the Cronitor monitors. This module is the reporter over them, and what it says.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from ...case import Case
from ...errors import TelemetryConfigError
from ...outcome import Outcome
from ...probe.loop import BackgroundLoop
from ...redact import Redactor
from ...settings import Settings
from .._http import MONITOR
from .provision import provisioning
from .targets import Cronitor, Healthchecks, Ping, Target, cut_message, targets_from

if TYPE_CHECKING:
    from .delivery import Delivery

__all__ = [
    "Cronitor",
    "Healthchecks",
    "Ping",
    "Target",
    "TelemetryConfigError",
    "cut_message",
    "describe",
    "pacing_note",
    "provisioning",
    "start",
    "targets_from",
]


class Heartbeats:
    """Turns a case's verdict into its run and its end for every target, paired by one series.

    Both go out when the verdict is known, each stamped with when the request started and ended: a monitor is
    never left in `run` by a case that got its verdict, and the timeline is the request's, not pytest's."""

    flush_last: ClassVar[bool] = True  # its flush only waits for the pings sent during the run

    def __init__(self, targets: list[Target], delivery: Delivery) -> None:
        self.targets = targets
        self.delivery = delivery

    def ended(self, case: Case, outcome: Outcome) -> None:
        series = str(uuid.uuid4())
        for target in self.targets:
            self.delivery.send(functools.partial(_run_and_end, target, case, series, outcome), count=2)

    def flush(self, budget: float) -> None:
        """Wait for every ping still under way, at most `budget` seconds; what is left counts as failed."""
        self.delivery.flush(budget)

    @property
    def failed(self) -> bool:
        return bool(self.delivery.failures)

    def summary_lines(self) -> list[str]:
        delivery = self.delivery
        names = ", ".join(t.name for t in self.targets)
        if delivery.dry_run:
            return [f"telemetry (dry run, {names}): {len(delivery.sent)} pings not sent:"] + [
                f"  {p.method} {p.shown}" + (f"  body={p.body.decode(errors='replace')!r}" if p.body else "")
                for p in delivery.sent
            ]
        if not delivery.failures:
            return [f"telemetry ({names}): {len(delivery.sent)} pings sent"]
        causes: dict[str, int] = {}
        for reason in delivery.failures:
            causes[reason] = causes.get(reason, 0) + 1
        listed = "; ".join(f"{reason}" + (f" (x{n})" if n > 1 else "") for reason, n in causes.items())
        return [f"telemetry ({names}): {len(delivery.failures)} of {delivery.total} pings failed: {listed}"]


def start(
    targets: list[Target], s: Settings, loop: BackgroundLoop, redact: Redactor, selected: Iterable[Case]
) -> Heartbeats:
    """The reporter for the targets, its delivery started; with a Cronitor API key, the selected cases' monitors
    are created or updated first."""
    from .delivery import Delivery  # it brings httpx (9 MB, 70 ms with its command line): only for runs that ping

    delivery = Delivery(loop, redact, s.telemetry_rate, s.telemetry_deadline, dry_run=s.telemetry_dry_run)
    beats = Heartbeats(targets, delivery)
    cronitor = next((t for t in targets if isinstance(t, Cronitor)), None)
    if cronitor is not None and s.cronitor_api_key:
        ping = provisioning(s.cronitor_api_url, s.cronitor_api_key, cronitor, selected, s.cronitor_schedule)
        delivery.send(lambda: (ping,), count=1)
    return beats


def describe(targets: Iterable[Target], dry_run: bool) -> str:
    """For the report header: where pings go, key hidden."""
    shown = [f"{t.name} {t.address.shown(MONITOR)}" for t in targets]
    if not shown:
        return "telemetry: off (no --cronitor-url / CRONITOR_URL or --healthchecks-url / HEALTHCHECKS_URL)"
    return "telemetry: " + ", ".join(shown) + (" (dry run: pings are printed, not sent)" if dry_run else "")


def pacing_note(pings: int, rate: float, deadline: float) -> list[str]:
    """For the report header, when sending every ping at --telemetry-rate takes more than half the deadline that
    bounds the last ones: how long it takes (the pings of cases judged early go out during the run)."""
    took = pings / rate
    if took <= deadline / 2:
        return []
    return [f"telemetry: {pings} pings at {rate:g}/s take about {took:.0f} s; --telemetry-deadline is {deadline:g} s"]


def _run_and_end(target: Target, case: Case, series: str, outcome: Outcome) -> tuple[Ping, Ping]:
    return target.start(case, series, outcome), target.end(case, series, outcome)
