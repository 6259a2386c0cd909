"""Where heartbeats go: a target (Cronitor, Healthchecks) read once from its URL turns a case's start and end into
Ping objects (pure logic, wire formats in ../shared/telemetry-protocols.md), never holding a secret in the open."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

from ...case import Case, monitor_key
from ...errors import TelemetryConfigError
from ...outcome import Outcome
from ...redact import Secret
from ...reply import one_line
from ...settings import run_host
from .._http import MONITOR, SplitUrl, split_url

__all__ = ["Cronitor", "Healthchecks", "Ping", "Target", "cut_message", "targets_from"]

MAX_MESSAGE_CHARS = 1000  # cronitor-cli's cut; the server documents 2000, non-ASCII grows when encoded
PATH_SAFE = "!$&'()*+,;=:@"  # what a path segment may hold unencoded (RFC 3986 pchar), besides letters and digits
CRONITOR_SHAPE = (
    "expected https://cronitor.link/p/<key>, https://cronitor.link/p/<key>/<group>, or a URL with {monitor}"
)
HEALTHCHECKS_SHAPE = "expected https://hc-ping.com/<ping-key> or <base>/ping/<ping-key>"


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


def address(split: SplitUrl, key: int, keep: int | None = None, tail: tuple[str, ...] = ()) -> Address:
    """The Address of a split URL with segment `key` hidden, the first `keep` segments kept, then `tail`."""
    path = tuple(Secret(s) if i == key else s for i, s in enumerate(split.segments[:keep]))
    return Address(split.origin, path + tail, split.query, split.auth)


def cut_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line, at most `limit` characters, keeping the tail: an error's cause is at its end."""
    return one_line(text, limit, tail=True)


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
            return cls(address(split, 1 if keyed else max(plain, key=lambda i: len(segments[i]))), env=env)
        if not keyed or len(segments) > 3:
            raise TelemetryConfigError(CRONITOR_SHAPE)
        group = monitor_key(segments[2]) if len(segments) == 3 else None
        if group == "":
            raise TelemetryConfigError("the group after the key needs a letter or digit (monitor keys are [a-z0-9_-])")
        return cls(address(split, 1, keep=2, tail=(MONITOR,)), group=group, env=env)

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
            self.name,
            "GET",
            self.address.url(monitor, params),
            self.address.shown(monitor, params),
            auth=self.address.auth,
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
        return cls(address(split, len(segments) - 1, tail=(MONITOR,)), create=create)

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
