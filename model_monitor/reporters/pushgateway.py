"""One push per run of every case's series to a Prometheus Pushgateway: replace semantics, bounded, secret-safe.

The run's series are one group, keyed by job and the run's identity (`--metrics-instance`): each push (PUT)
replaces the whole group, so a model removed from the endpoints file disappears with the next run. prometheus_client
writes the exposition; our handler sends it with a timeout, a few retries, a capped reply and no redirects.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote_plus

from .. import USER_AGENT
from ..case import Case
from ..errors import PushError, TelemetryConfigError
from ..outcome import Outcome
from ..probe.retry import backoff
from ..redact import Redactor, Secret
from ..settings import Settings
from ._http import ATTEMPTS, PAST_BUDGET_S, Overrun, basic_auth, skim_blocking, split_url, within

if TYPE_CHECKING:  # prometheus_client is loaded by a push, not by every process that may never push
    from prometheus_client import CollectorRegistry

__all__ = ["Gateway", "Pusher", "gateway_from", "registry"]

JOB = "model-monitor"
PUSH_TIMEOUT_S = 10.0
SHAPE = "expected http(s)://host[:port][/path] of a Pushgateway, without a query"
HEADERS_SHAPE = "expected Name=value,... or a JSON object of strings"
LABELS = ("endpoint", "model", "type", "case")
TOKEN_KINDS = {"prompt": "prompt_tokens", "completion": "completion_tokens", "reasoning": "reasoning_tokens"}

# name -> (help, the value from a case's outcome; None: no series for that case)
PER_CASE: dict[str, tuple[str, Callable[[Outcome], float | None]]] = {
    "success": ("1 when the case passed, else 0.", lambda o: float(o.passed)),
    "degraded": (
        "1 when the case passed but was degraded (a retry, a warning threshold crossed).",
        lambda o: float(o.passed and bool(o.degraded)),
    ),
    "duration_seconds": ("The last attempt's request duration, as every output shows it.", lambda o: o.duration_s),
    "ttfb_seconds": ("Time to the response headers.", lambda o: o.metrics.get("ttfb_s")),
    "ttft_seconds": ("Time to the first token of a stream, reasoning included.", lambda o: o.metrics.get("ttft_s")),
    "ttfc_seconds": (
        "Time to the first visible output token of a stream.",
        lambda o: o.metrics.get("ttfc_s"),
    ),
    "tokens_per_second": ("Decode rate of a stream after its first token.", lambda o: o.metrics.get("tokens_per_s")),
    "attempts": ("Attempts the case took (retries + 1).", lambda o: float(len(o.attempts)) if o.attempts else None),
}


def registry(results: Iterable[tuple[Case, Outcome]], ended_at: float) -> CollectorRegistry:
    """Every case's series, labelled endpoint, model, type and case, and the run's end time."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry(auto_describe=True)
    gauges = {
        name: Gauge(f"model_monitor_probe_{name}", text, LABELS, registry=reg) for name, (text, _) in PER_CASE.items()
    }
    tokens = Gauge(
        "model_monitor_probe_tokens",
        "Tokens the case's reply reported using, by kind.",
        (*LABELS, "kind"),
        registry=reg,
    )
    # Only the failing class has a series: a 0 for each of the other classes would multiply the series by 16 and
    # say nothing that model_monitor_probe_success does not; the push replaces the group, so a recovered case's
    # error series is gone with the next run.
    errors = Gauge(
        "model_monitor_probe_error", "1 for the class of a failed case's error.", (*LABELS, "class"), registry=reg
    )
    for case, outcome in results:
        labels = (case.endpoint.name, case.model, case.type.name, case.id)
        for name, (_, value_of) in PER_CASE.items():
            if (value := value_of(outcome)) is not None:
                gauges[name].labels(*labels).set(value)
        for kind, metric in TOKEN_KINDS.items():
            if metric in outcome.metrics:
                tokens.labels(*labels, kind).set(outcome.metrics[metric])
        if not outcome.passed:
            errors.labels(*labels, outcome.error_class or "error").set(1)
    Gauge("model_monitor_last_run_timestamp_seconds", "Unix time the run ended.", registry=reg).set(ended_at)
    return reg


@dataclass(frozen=True)
class Gateway:
    """Where the push goes: the URL without its userinfo (printable), and the auth and headers kept Secret."""

    base: str
    instance: str
    auth: Secret | None = None
    headers: tuple[tuple[str, Secret], ...] = ()

    @classmethod
    def from_settings(
        cls,
        url: Secret,
        instance: str,
        username: Secret | None = None,
        password: Secret | None = None,
        headers: tuple[tuple[str, Secret], ...] = (),
    ) -> Gateway:
        split = split_url(url, SHAPE)
        if split.query:
            raise TelemetryConfigError(SHAPE)
        auth = split.auth
        if username or password:
            auth = basic_auth(username.reveal() if username else "", password.reveal() if password else "")
        base = "/".join([split.origin, *split.segments])
        return cls(base, instance, auth, headers)

    @property
    def url(self) -> str:
        """The group's URL, as it may be printed: the path push_to_gateway puts the group at (an instance with a `/`,
        such as `release/shard-0`, goes as `instance@base64/...`, the Pushgateway's escape for it)."""
        if "/" in self.instance or not self.instance:
            encoded = base64.urlsafe_b64encode(self.instance.encode()).decode() or "="
            return f"{self.base}/metrics/job/{JOB}/instance@base64/{encoded}"
        return f"{self.base}/metrics/job/{JOB}/instance/{quote_plus(self.instance)}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The auth and header values in the open, for the Redactor only."""
        return tuple(s.reveal() for s in (self.auth, *(v for _, v in self.headers)) if s)


def parse_headers(text: Secret) -> tuple[tuple[str, Secret], ...]:
    """MODEL_MONITOR_PUSHGATEWAY_HEADERS read as JSON, else as Name=value pairs; an error never shows a value."""
    raw = text.reveal().strip()
    pairs: list[tuple[Any, Any]]
    if raw.startswith("{"):
        try:
            pairs = list(json.loads(raw).items())
        except (ValueError, AttributeError):
            raise TelemetryConfigError(HEADERS_SHAPE) from None
    else:
        pairs = [
            (name, value if sep else None)
            for item in raw.split(",")
            if item.strip()
            for name, sep, value in [item.partition("=")]
        ]
    if not pairs or not all(isinstance(n, str) and n.strip() and isinstance(v, str) for n, v in pairs):
        raise TelemetryConfigError(HEADERS_SHAPE)
    return tuple((name.strip(), Secret(value.strip())) for name, value in pairs)


def gateway_from(s: Settings) -> Gateway | None:
    """The Pushgateway the settings name, if any; a malformed URL or header list raises naming its option."""
    if not s.pushgateway_url:
        return None
    try:
        headers = parse_headers(s.pushgateway_headers) if s.pushgateway_headers else ()
    except TelemetryConfigError as exc:
        raise TelemetryConfigError(f"MODEL_MONITOR_PUSHGATEWAY_HEADERS: {exc}") from None
    try:
        return Gateway.from_settings(
            s.pushgateway_url, s.metrics_instance, s.pushgateway_username, s.pushgateway_password, headers
        )
    except TelemetryConfigError as exc:
        raise TelemetryConfigError(f"--pushgateway-url (MODEL_MONITOR_PUSHGATEWAY_URL): {exc}") from None


def _handler(
    gateway: Gateway,
    deadline: float,
    url: str,
    method: str,
    timeout: float | None,
    headers: list[tuple[str, str]],
    data: bytes,
) -> Callable[[], None]:
    """prometheus_client's handler interface: our own request, bounded by `deadline` (monotonic) in all."""

    def send() -> None:
        import httpx  # only for the runs that push

        sent = dict(headers) | {"user-agent": USER_AGENT} | {n: v.reveal() for n, v in gateway.headers}
        if gateway.auth:
            sent["authorization"] = gateway.auth.reveal()
        reason = "not sent"
        for attempt in range(1, ATTEMPTS + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                with (
                    httpx.Client(timeout=min(PUSH_TIMEOUT_S, left + PAST_BUDGET_S), follow_redirects=False) as client,
                    client.stream(method, url, content=data, headers=sent) as response,
                ):
                    skim_blocking(response)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__} from {_host(url)}"
            else:
                if response.is_success:
                    return
                reason = f"{response.status_code} from {_host(url)}"
                if response.status_code < 500:  # a redirect, a refusal: the same request would get the same
                    break
            if attempt < ATTEMPTS:
                time.sleep(min(backoff(attempt), max(0.0, deadline - time.monotonic())))
        raise PushError(reason)

    return send


def _host(url: str) -> str:
    import httpx

    return httpx.URL(url).host or "?"


@dataclass
class Pusher:
    """Keeps every case's last verdict of the run, and pushes them all once at its end."""

    gateway: Gateway
    redact: Redactor
    dry_run: bool = False
    results: dict[str, tuple[Case, Outcome]] = field(default_factory=dict)
    failure: str | None = None
    flush_last: ClassVar[bool] = False

    def ended(self, case: Case, outcome: Outcome) -> None:
        self.results[case.id] = (case, outcome)

    def flush(self, budget: float) -> None:
        """One PUT of the run's group, at most `budget` seconds; a failure is kept for the summary."""
        if self.dry_run:
            return
        from prometheus_client.exposition import push_to_gateway

        reg = registry(self.results.values(), time.time())
        handler = partial(_handler, self.gateway, time.monotonic() + budget)
        try:
            within(
                budget,
                lambda: push_to_gateway(
                    self.gateway.base,
                    JOB,
                    reg,
                    {"instance": self.gateway.instance},
                    timeout=PUSH_TIMEOUT_S,
                    handler=handler,
                ),
            )
        except Overrun as exc:
            self.failure = f"{exc} from {_host(self.gateway.url)}"
        except PushError as exc:
            self.failure = self.redact(str(exc))
        except Exception as exc:  # never let the push's fault escape unreported
            self.failure = f"{type(exc).__name__} pushing to {_host(self.gateway.url)}"

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def summary_lines(self) -> list[str]:
        cases = f"{len(self.results)} cases"
        if self.dry_run:
            return [f"metrics (dry run): {cases} not pushed to {self.gateway.url}"]
        if self.failure is not None:
            return [f"metrics: push of {cases} to {self.gateway.url} failed: {self.failure}"]
        return [f"metrics: {cases} pushed to {self.gateway.url}"]
