"""Heartbeat pings per case to Cronitor and Healthchecks: exact, bounded, and never carrying a secret in the open.

A target turns a case's start and end into Ping objects (pure logic, wire formats in
../shared/telemetry-protocols.md). Delivery sends them on the background loop, in order per case, with at most
three attempts each, and reports what could not be delivered. Pings never touch a check's timing or verdict.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

import httpx

from . import __version__
from .config import Case
from .engine import Outcome
from .redact import Redactor
from .runtime import BackgroundLoop

log = logging.getLogger("model_monitor.telemetry")

MAX_MESSAGE_CHARS = 1000  # cronitor-cli's cut; the server documents 2000, non-ASCII grows when encoded
ATTEMPTS = 3
PING_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
PINGS_IN_FLIGHT = 10
RETRY_AFTER_CAP_S = 10.0
REPLY_READ_CAP = 4096  # bytes of a reply read, never decoded: the status says it all; a small reply keeps the connection
USER_AGENT = f"model-monitor/{__version__}"


class TelemetryConfigError(ValueError):
    """A heartbeat URL of the wrong shape; the message describes the shape, never the URL (it holds a key)."""


@dataclass(frozen=True)
class Ping:
    """One request to a heartbeat service. `url` holds the key; only `shown` may be printed."""

    target: str
    method: str
    url: str
    shown: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def run_host() -> str:
    """The pod's name in Kubernetes (HOSTNAME), else the machine's."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def cut_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line, at most `limit` characters, keeping the tail: an error's cause is at its end."""
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def end_message(outcome: Outcome) -> str:
    if outcome.passed:
        took = f" in {outcome.duration_s:.3f} s" if outcome.duration_s is not None else ""
        return cut_message(f"ok{took}: {outcome.reason}")
    return cut_message(outcome.reason)


@dataclass(frozen=True)
class Cronitor:
    """https://cronitor.link/p/<key>[/<group>], the /ping/ alias, any host, or a template with {monitor}."""

    template: str
    key: str
    group: str | None
    env: str | None = None
    host: str = field(default_factory=run_host)
    name: str = "cronitor"

    @classmethod
    def from_url(cls, url: str, env: str | None = None) -> Cronitor:
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TelemetryConfigError("expected an http(s) URL like https://cronitor.link/p/<key>[/<group>]")
        key = segments[1] if len(segments) >= 2 and segments[0] in ("p", "ping") else None
        if "{monitor}" in url:
            # Without the /p/<key>/ shape we cannot tell where the key is: hide every other path segment.
            hidden = key or max((s for s in segments if "{monitor}" not in s), key=len, default="")
            if not hidden:
                raise TelemetryConfigError("a {monitor} template needs the key in its path")
            return cls(template=url, key=hidden, group=None, env=env)
        if key is None or len(segments) > 3 or parts.query:
            raise TelemetryConfigError(
                "expected https://cronitor.link/p/<key>, https://cronitor.link/p/<key>/<group>, or a URL with {monitor}"
            )
        group = segments[2] if len(segments) == 3 else None
        base = f"{parts.scheme}://{parts.netloc}/{segments[0]}/{key}/"
        return cls(template=base + "{monitor}", key=key, group=group, env=env)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.key,)

    def monitor(self, case: Case) -> str:
        return f"{self.group}-{case.monitor}" if self.group else case.monitor

    def start(self, case: Case, series: str) -> Ping:
        return self._ping(case, {"state": "run", "series": series})

    def end(self, case: Case, series: str, outcome: Outcome) -> Ping:
        params: list[tuple[str, str]] = [
            ("state", "complete" if outcome.passed else "fail"),
            ("series", series),
            ("status_code", "0" if outcome.passed else "1"),
            ("message", end_message(outcome)),
        ]
        if outcome.duration_s is not None:
            params.append(("metric", f"duration:{outcome.duration_s:.3f}"))
        params += [("metric", f"{name}:{value:.3f}") for name, value in outcome.metrics.items()]
        return self._ping(case, params)

    def _ping(self, case: Case, params: dict[str, str] | list[tuple[str, str]]) -> Ping:
        common = [("host", self.host), ("stamp", f"{time.time():.3f}")] + ([("env", self.env)] if self.env else [])
        items = list(params.items()) if isinstance(params, dict) else params
        url = self.template.replace("{monitor}", quote(self.monitor(case), safe="")) + "?" + urlencode(items + common)
        return Ping(self.name, "GET", url, url.replace(self.key, "***"))


@dataclass(frozen=True)
class Healthchecks:
    """https://hc-ping.com/<ping-key> or <base>/ping/<ping-key>: a slug per monitor, start and end paired by rid."""

    base: str
    key: str
    create: bool = False
    name: str = "healthchecks"

    @classmethod
    def from_url(cls, url: str, create: bool = False) -> Healthchecks:
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        shape_ok = len(segments) == 1 or (len(segments) == 2 and segments[0] == "ping")
        if parts.scheme not in ("http", "https") or not parts.netloc or not shape_ok or parts.query:
            raise TelemetryConfigError("expected https://hc-ping.com/<ping-key> or <base>/ping/<ping-key>")
        return cls(base=f"{parts.scheme}://{parts.netloc}/{'/'.join(segments)}", key=segments[-1], create=create)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.key,)

    def start(self, case: Case, series: str) -> Ping:
        return self._ping(case, "/start", series, None)

    def end(self, case: Case, series: str, outcome: Outcome) -> Ping:
        return self._ping(case, "" if outcome.passed else "/fail", series, end_message(outcome).encode())

    def _ping(self, case: Case, suffix: str, series: str, body: bytes | None) -> Ping:
        query = urlencode([("rid", series)] + ([("create", "1")] if self.create else []))
        url = f"{self.base}/{case.monitor}{suffix}?{query}"
        return Ping(self.name, "POST", url, url.replace(self.key, "***"), body)


Target = Cronitor | Healthchecks


class Delivery:
    """Sends pings on the background loop (or only records them, in a dry run) and keeps the tally."""

    def __init__(self, loop: BackgroundLoop, redact: Redactor, dry_run: bool = False) -> None:
        self._loop = loop
        self._redact = redact
        self.dry_run = dry_run
        self.sent: list[Ping] = []
        self.failures: list[str] = []  # why each undelivered ping failed, redacted
        self._pending: list[concurrent.futures.Future[None]] = []
        self._last: dict[str, concurrent.futures.Future[None]] = {}
        # Built here, on pytest's thread: its TLS context would cost the loop ~40 ms while it times requests.
        self._client: httpx.AsyncClient | None = (
            None
            if dry_run
            else httpx.AsyncClient(
                timeout=PING_TIMEOUT, headers={"user-agent": USER_AGENT, "accept-encoding": "identity"}
            )
        )
        self._slots: asyncio.Semaphore | None = None

    def send(self, ping: Ping, chain: str) -> None:
        """Queue a ping; pings with the same chain (one case's run) go out in order."""
        if self.dry_run:
            self.sent.append(ping)
            return
        future = self._loop.submit(self._deliver(ping, self._last.get(chain)))
        self._last[chain] = future
        self._pending.append(future)

    def flush(self, deadline: float) -> None:
        """Wait for every queued ping, at most `deadline` seconds in all; what is left counts as failed."""
        done, not_done = concurrent.futures.wait(self._pending, timeout=deadline)
        for future in not_done:
            future.cancel()
        self.failures += [f"not delivered within the {deadline:g} s deadline"] * len(not_done)
        self._pending = []
        if self._client is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self._loop.run(self._client.aclose(), timeout=2)
            self._client = None

    @property
    def total(self) -> int:
        return len(self.sent) + len(self.failures)

    async def _deliver(self, ping: Ping, after: concurrent.futures.Future[None] | None) -> None:
        if after is not None:
            await asyncio.wait([asyncio.wrap_future(after)])  # its fate is its own; we only keep the order
        if self._slots is None:
            self._slots = asyncio.Semaphore(PINGS_IN_FLIGHT)
        async with self._slots:
            try:
                reason = await self._attempts(ping)
            except Exception as exc:  # never let a ping's fault escape unreported
                reason = f"{type(exc).__name__} sending to {urlsplit(ping.url).hostname}"
        if reason is None:
            self.sent.append(ping)
        else:
            self.failures.append(self._redact(reason))
            log.warning("telemetry: ping failed: %s %s: %s", ping.method, ping.shown, self._redact(reason))

    async def _attempts(self, ping: Ping) -> str | None:
        """None when delivered, else why not. Retries network errors, 5xx and 429 (honouring Retry-After)."""
        assert self._client is not None
        reason = "not sent"
        host = urlsplit(ping.url).hostname
        for attempt in range(1, ATTEMPTS + 1):
            wait = 0.5 * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            try:
                async with self._client.stream(ping.method, ping.url, content=ping.body, headers=ping.headers) as response:
                    await skim(response)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__} from {host}"
            else:
                if response.is_success:
                    return None
                reason = f"{response.status_code} from {host}"
                if response.status_code != 429 and response.status_code < 500:
                    return reason
                retry_after = response.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    wait = max(wait, min(RETRY_AFTER_CAP_S, float(retry_after)))
            if attempt < ATTEMPTS:
                await asyncio.sleep(wait)
        return reason


async def skim(response: httpx.Response) -> None:
    """Read at most REPLY_READ_CAP raw bytes of a reply: a 100 MB body or a gzip bomb costs nothing."""
    read = 0
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            read += len(chunk)
            if read >= REPLY_READ_CAP:
                return


def provisioning(api_url: str, api_key: str, target: Cronitor, cases: Iterable[Case], schedule: str | None) -> Ping:
    """One Monitor API request that creates or updates every case's job monitor, so a run that never comes pages."""
    monitors = []
    for case in cases:
        monitor: dict[str, object] = {
            "type": "job",
            "key": target.monitor(case),
            "name": case.id,
            "assertions": [f"metric.duration < {math.ceil(case.timeout)} seconds"],
        }
        if schedule or case.schedule:  # the schedule this run is on wins over the file's
            monitor["schedule"] = schedule or case.schedule
        if target.group:
            monitor["group"] = target.group
        monitors.append(monitor)
    url = api_url.rstrip("/") + "/monitors"
    auth = base64.b64encode(f"{api_key}:".encode()).decode()
    headers = (("authorization", f"Basic {auth}"), ("content-type", "application/json"))
    return Ping("cronitor-api", "PUT", url, url, json.dumps({"monitors": monitors}).encode(), headers)


class Heartbeats:
    """Turns case starts and ends into pings for every target, pairing each run's start and end."""

    def __init__(self, targets: list[Target], delivery: Delivery) -> None:
        self.targets = targets
        self.delivery = delivery
        self._series: dict[str, str] = {}

    def started(self, case: Case) -> None:
        series = self._series[case.id] = str(uuid.uuid4())
        for target in self.targets:
            self.delivery.send(target.start(case, series), chain=f"{target.name}:{case.id}")

    def ended(self, case: Case, outcome: Outcome) -> None:
        if case.id not in self._series:
            self.started(case)  # a case that failed before it could start (setup error, crashed worker)
        series = self._series.pop(case.id)
        for target in self.targets:
            self.delivery.send(target.end(case, series, outcome), chain=f"{target.name}:{case.id}")


def targets_from(cronitor_url: str | None, cronitor_env: str | None, healthchecks_url: str | None, create: bool) -> list[Target]:
    """The configured targets; a malformed URL raises naming the option and the expected shape."""
    targets: list[Target] = []
    try:
        if cronitor_url:
            targets.append(Cronitor.from_url(cronitor_url, env=cronitor_env))
    except TelemetryConfigError as exc:
        raise TelemetryConfigError(f"--cronitor-url (CRONITOR_URL): {exc}") from None
    try:
        if healthchecks_url:
            targets.append(Healthchecks.from_url(healthchecks_url, create=create))
    except TelemetryConfigError as exc:
        raise TelemetryConfigError(f"--healthchecks-url (HEALTHCHECKS_URL): {exc}") from None
    return targets


def describe(targets: Iterable[Target], dry_run: bool) -> str:
    """For the report header: where pings go, key hidden."""
    shown = [
        f"{t.name} {t.template.replace(t.key, '***')}" if isinstance(t, Cronitor) else f"{t.name} {t.base.replace(t.key, '***')}"
        for t in targets
    ]
    if not shown:
        return "telemetry: off (no --cronitor-url / CRONITOR_URL or --healthchecks-url / HEALTHCHECKS_URL)"
    return "telemetry: " + ", ".join(shown) + (" (dry run: pings are printed, not sent)" if dry_run else "")


def summary_lines(delivery: Delivery, targets: Iterable[Target]) -> list[str]:
    names = ", ".join(t.name for t in targets)
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
