"""Heartbeat pings per case to Cronitor and Healthchecks: exact, bounded, and never carrying a secret in the open.

A target turns a case's start and end into Ping objects (pure logic, wire formats in
../shared/telemetry-protocols.md). Delivery sends them on the background loop, in order per case, with at most
three attempts each, evenly spaced to at most --telemetry-rate requests per second (heartbeat services
rate-limit), and reports what could not be delivered. Pings never touch a check's timing or verdict.
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
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import httpx

from .. import USER_AGENT
from ..case import Case, monitor_key
from ..errors import MonitorError
from ..outcome import Outcome
from ..probe.loop import BackgroundLoop
from ..probe.retry import backoff, retry_after
from ..redact import Redactor, Secret

__all__ = [
    "Cronitor", "Delivery", "Healthchecks", "Heartbeats", "Pacer", "Ping", "Target", "TelemetryConfigError",
    "cut_message", "describe", "pacing_note", "provisioning", "summary_lines", "targets_from",
    "REPLY_READ_CAP", "split_url",
]

log = logging.getLogger("model_monitor.telemetry")

MAX_MESSAGE_CHARS = 1000  # cronitor-cli's cut; the server documents 2000, non-ASCII grows when encoded
ATTEMPTS = 3
PING_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
PINGS_IN_FLIGHT = 10
REPLY_READ_CAP = 4096  # bytes of a reply read, never decoded: the status says it all; a small reply keeps the connection
MONITOR = "{monitor}"  # where a URL template takes the case's monitor key
PATH_SAFE = "!$&'()*+,;=:@"  # what a path segment may hold unencoded (RFC 3986 pchar), besides letters and digits
CRONITOR_SHAPE = "expected https://cronitor.link/p/<key>, https://cronitor.link/p/<key>/<group>, or a URL with {monitor}"
HEALTHCHECKS_SHAPE = "expected https://hc-ping.com/<ping-key> or <base>/ping/<ping-key>"


class TelemetryConfigError(MonitorError):
    """A heartbeat URL of the wrong shape; the message describes the shape, never the URL (it holds a key)."""


@dataclass(frozen=True)
class Ping:
    """One request to a heartbeat service. `url` and `auth` hold secrets; `shown` is its only printable form."""

    target: str
    method: str
    url: Secret
    shown: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    auth: Secret | None = None  # the Authorization header's value

    @property
    def host(self) -> str:
        return urlsplit(self.shown).hostname or "?"


Params = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Address:
    """Where a target's pings go, parsed once: the key segment, the userinfo and the query values are Secret.

    `path` holds decoded segments (each encoded once when rendered); MONITOR in one marks the case's place."""

    origin: str  # scheme://host[:port], without userinfo
    path: tuple[str | Secret, ...]
    query: tuple[tuple[str, Secret], ...] = ()  # the URL's own parameters: ours replace the same names
    auth: Secret | None = None  # Basic credentials from the URL's userinfo

    def url(self, monitor: str, params: Params = (), tail: tuple[str, ...] = ()) -> Secret:
        """The URL to send for one monitor key, held as a Secret."""
        return Secret(self._render(_open, quote(monitor, safe=""), params, tail))

    def shown(self, monitor: str, params: Params = (), tail: tuple[str, ...] = ()) -> str:
        """The URL as it may be printed: key, userinfo and the URL's own query values hidden."""
        return self._render(str, quote(monitor, safe="{}"), params, tail)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The hidden parts in the open (the key also as it is encoded), for the Redactor only."""
        hidden = [s.reveal() for s in self.path if isinstance(s, Secret)] + [v.reveal() for _, v in self.query]
        encoded = [quote(s, safe=PATH_SAFE) for s in hidden]
        return tuple(dict.fromkeys([*hidden, *encoded, *([self.auth.reveal()] if self.auth else [])]))

    def _render(self, text: Callable[[str | Secret], str], monitor: str, params: Params, tail: tuple[str, ...]) -> str:
        ours = {name for name, _ in params}
        path = "/".join(
            monitor.join(quote(piece, safe=PATH_SAFE) for piece in text(segment).split(MONITOR))
            for segment in (*self.path, *tail)
        )
        query = [(name, text(value)) for name, value in self.query if name not in ours] + list(params)
        return f"{self.origin}/{path}" + (f"?{urlencode(query, safe='*')}" if query else "")


def _open(part: str | Secret) -> str:
    return part.reveal() if isinstance(part, Secret) else part


class _Segments(tuple[str, ...]):
    """A URL's decoded path segments in the open: one is a key, so their repr (a traceback's locals) hides them."""

    def __repr__(self) -> str:
        return f"<{len(self)} path segments>"


@dataclass(frozen=True)
class _Split:
    """A heartbeat URL split once: the path still in the open (masked repr) until a target says where its key is."""

    origin: str
    segments: _Segments
    query: tuple[tuple[str, Secret], ...]
    auth: Secret | None

    def address(self, key: int, keep: int | None = None, tail: tuple[str, ...] = ()) -> Address:
        """The Address with segment `key` hidden, the first `keep` segments kept, then `tail`."""
        path = tuple(Secret(s) if i == key else s for i, s in enumerate(self.segments[:keep]))
        return Address(self.origin, path + tail, self.query, self.auth)


def split_url(url: Secret, shape: str) -> _Split:
    """The one place a heartbeat URL is read in the open: urllib.parse splits it, its secret parts become Secrets."""
    __tracebackhide__ = True  # its locals hold the whole URL: pytest never prints this frame
    try:
        parts = urlsplit(url.reveal())
        parts.port  # noqa: B018 - a malformed port raises here, at start-up, not on every ping
    except ValueError:
        raise TelemetryConfigError(f"not a valid URL; {shape}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelemetryConfigError(shape)
    if MONITOR in parts.netloc or MONITOR in unquote(parts.query):
        raise TelemetryConfigError("{monitor} belongs in the URL's path")
    auth = None
    if parts.username is not None:
        # Userinfo is sent as Basic auth (as an HTTP client would), never in the URL, and never printed.
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = Secret("Basic " + base64.b64encode(pair.encode()).decode())
    return _Split(
        origin=f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}",
        segments=_Segments(unquote(s) for s in parts.path.split("/") if s),
        query=tuple((name, Secret(value)) for name, value in parse_qsl(parts.query, keep_blank_values=True)),
        auth=auth,
    )


def run_host() -> str:
    """The pod's name in Kubernetes (HOSTNAME), else the machine's."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def cut_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line, at most `limit` characters, keeping the tail: an error's cause is at its end."""
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def end_message(outcome: Outcome) -> str:
    """A pass says `ok`, or `degraded` when it needed a retry or crossed a warning threshold (its reason says
    which); the state stays complete, as a degraded case passed."""
    if outcome.passed:
        took = f" in {outcome.duration_s:.3f} s" if outcome.duration_s is not None else ""
        return cut_message(f"{'degraded' if outcome.degraded else 'ok'}{took}: {outcome.reason}")
    return cut_message(outcome.reason)


@dataclass(frozen=True)
class Cronitor:
    """https://cronitor.link/p/<key>[/<group>], the /ping/ alias, any host, or a template with {monitor}."""

    address: Address
    group: str | None = None
    env: str | None = None
    host: str = field(default_factory=run_host)
    name: str = "cronitor"

    @classmethod
    def from_url(cls, url: Secret, env: str | None = None) -> Cronitor:
        split = split_url(url, CRONITOR_SHAPE)
        segments = split.segments
        keyed = len(segments) >= 2 and segments[0] in ("p", "ping") and MONITOR not in segments[1]
        if any(MONITOR in s for s in segments):
            # Without the /p/<key>/ shape we cannot tell where the key is: hide the longest other segment.
            plain = [i for i, s in enumerate(segments) if MONITOR not in s]
            if not plain:
                raise TelemetryConfigError("a {monitor} template needs the key in its path")
            return cls(split.address(1 if keyed else max(plain, key=lambda i: len(segments[i]))), env=env)
        if not keyed or len(segments) > 3:
            raise TelemetryConfigError(CRONITOR_SHAPE)
        group = monitor_key(segments[2]) if len(segments) == 3 else None
        if group == "":
            raise TelemetryConfigError("the group after the key needs a letter or digit (monitor keys are [a-z0-9_-])")
        return cls(split.address(1, keep=2, tail=(MONITOR,)), group=group, env=env)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.address.secrets

    def monitor(self, case: Case) -> str:
        return f"{self.group}-{case.monitor}" if self.group else case.monitor

    def start(self, case: Case, series: str, outcome: Outcome) -> Ping:
        return self._ping(case, [("state", "run"), ("series", series)], outcome.started_at)

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
        return self._ping(case, params, outcome.ended_at)

    def _ping(self, case: Case, params: list[tuple[str, str]], at: float | None) -> Ping:
        """`at` is when it happened (the stamp Cronitor's timeline and run duration use), however late we send it."""
        stamp = time.time() if at is None else at
        params = params + [("host", self.host), ("stamp", f"{stamp:.3f}")] + ([("env", self.env)] if self.env else [])
        monitor = self.monitor(case)
        return Ping(
            self.name, "GET", self.address.url(monitor, params), self.address.shown(monitor, params), auth=self.address.auth
        )


@dataclass(frozen=True)
class Healthchecks:
    """https://hc-ping.com/<ping-key> or <base>/ping/<ping-key>: a slug per monitor, start and end paired by rid."""

    address: Address
    create: bool = False
    name: str = "healthchecks"

    @classmethod
    def from_url(cls, url: Secret, create: bool = False) -> Healthchecks:
        split = split_url(url, HEALTHCHECKS_SHAPE)
        segments = split.segments
        if not (len(segments) == 1 or (len(segments) == 2 and segments[0] == "ping")):
            raise TelemetryConfigError(HEALTHCHECKS_SHAPE)
        return cls(split.address(len(segments) - 1, tail=(MONITOR,)), create=create)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.address.secrets

    def start(self, case: Case, series: str, outcome: Outcome) -> Ping:
        """Healthchecks takes no client time: it measures from this ping's arrival to the end's."""
        return self._ping(case, ("start",), series, None)

    def end(self, case: Case, series: str, outcome: Outcome) -> Ping:
        return self._ping(case, () if outcome.passed else ("fail",), series, end_message(outcome).encode())

    def _ping(self, case: Case, tail: tuple[str, ...], series: str, body: bytes | None) -> Ping:
        params = [("rid", series)] + ([("create", "1")] if self.create else [])
        url, shown = self.address.url(case.monitor, params, tail), self.address.shown(case.monitor, params, tail)
        return Ping(self.name, "POST", url, shown, body, auth=self.address.auth)


Target = Cronitor | Healthchecks


class Pacer:
    """Evenly spaced requests, at most `rate` per second: each one sleeps until its own slot. Used only on the
    background loop's thread, so reserving a slot needs no lock."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0  # time.monotonic() of the next free slot

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Delivery:
    """Sends pings on the background loop (or only records them, in a dry run) and keeps the tally.

    `rate` is the most requests per second (every attempt counts); `longest_wait` (--telemetry-deadline) is the
    longest a ping waits before a retry, whatever Retry-After a heartbeat service asks."""

    def __init__(
        self, loop: BackgroundLoop, redact: Redactor, rate: float, longest_wait: float, dry_run: bool = False
    ) -> None:
        self._loop = loop
        self._redact = redact
        self._pacer = Pacer(rate)
        self._longest_wait = longest_wait
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
                reason = f"{type(exc).__name__} sending to {ping.host}"
        if reason is None:
            self.sent.append(ping)
        else:
            self.failures.append(self._redact(reason))
            log.warning("telemetry: ping failed: %s %s: %s", ping.method, ping.shown, self._redact(reason))

    async def _attempts(self, ping: Ping) -> str | None:
        """None when delivered, else why not. Retries network errors, 5xx and 429 (honouring Retry-After, at most
        the telemetry deadline: a longer wait would outlast the run's last flush)."""
        assert self._client is not None
        reason = "not sent"
        host = ping.host
        for attempt in range(1, ATTEMPTS + 1):
            asked = None
            await self._pacer.wait()
            try:
                async with self._client.stream(
                    ping.method, ping.url.reveal(), content=ping.body, headers=request_headers(ping)
                ) as response:
                    await skim(response)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__} from {host}"
            else:
                if response.is_success:
                    return None
                reason = f"{response.status_code} from {host}"
                if response.status_code != 429 and response.status_code < 500:
                    return reason
                asked = retry_after(response.headers.get("retry-after"))
            if attempt < ATTEMPTS:
                await asyncio.sleep(backoff(attempt, None if asked is None else min(self._longest_wait, asked)))
        return reason


def request_headers(ping: Ping) -> dict[str, str]:
    """A ping's headers with its Authorization in the open: called only as the request is sent."""
    return dict(ping.headers) | ({"authorization": ping.auth.reveal()} if ping.auth else {})


async def skim(response: httpx.Response) -> None:
    """Read at most REPLY_READ_CAP raw bytes of a reply: a 100 MB body or a gzip bomb costs nothing."""
    read = 0
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            read += len(chunk)
            if read >= REPLY_READ_CAP:
                return


def provisioning(api_url: str, api_key: Secret, target: Cronitor, cases: Iterable[Case], schedule: str | None) -> Ping:
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
    auth = Secret("Basic " + base64.b64encode(f"{api_key.reveal()}:".encode()).decode())
    body = json.dumps({"monitors": monitors}).encode()
    return Ping("cronitor-api", "PUT", Secret(url), url, body, (("content-type", "application/json"),), auth)


class Heartbeats:
    """Turns a case's verdict into its run and its end for every target, paired by one series.

    Both go out when the verdict is known, each stamped with when the request started and ended: a monitor is
    never left in `run` by a case that got its verdict, and the timeline is the request's, not pytest's."""

    def __init__(self, targets: list[Target], delivery: Delivery) -> None:
        self.targets = targets
        self.delivery = delivery

    def ended(self, case: Case, outcome: Outcome) -> None:
        series = str(uuid.uuid4())
        for target in self.targets:
            chain = f"{target.name}:{case.id}"
            self.delivery.send(target.start(case, series, outcome), chain=chain)
            self.delivery.send(target.end(case, series, outcome), chain=chain)


def targets_from(
    cronitor_url: Secret | None, cronitor_env: str | None, healthchecks_url: Secret | None, create: bool
) -> list[Target]:
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
