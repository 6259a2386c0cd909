"""The monitor's errors, one tree, and the one failure taxonomy used in reasons, the summary, JUnit properties and
heartbeat messages. Foreign errors (httpx, aiohttp, yaml, jsonschema) are translated into these at the boundary.

    MonitorError                          anything the monitor raises about its input or an endpoint's reply
      ConfigError                         config/: the endpoints file is wrong, one line per fault naming its
                                          place (`file:line: endpoints[0].models[1].field: message`)
      TelemetryConfigError                reporters/: a heartbeat or Pushgateway URL or header list of the wrong
                                          shape, named by its option (`--cronitor-url (CRONITOR_URL): ...`), the
                                          URL itself never printed
      PushError                           reporters/pushgateway.py: why the end-of-run push did not land, one line
                                          without a secret (kept for the summary, never raised out of a hook)
      ProbeError(error_class, message)    a check failed; message is one line an on-call engineer can act on
        error_class is one of ErrorClass:
          timeout connect dns tls           the request did not complete
          auth rate_limited                 401/403, 429
          quota                             a spent budget or unpaid bill (402, insufficient_quota...): not retried
          client_error server_error         other 4xx, 5xx
          bad_response                      not JSON, HTML with 200, error object in a 200, redirect, over-size body
          schema empty                      the reply has the wrong shape, or nothing in it
          stream_broken                     an SSE stream that ended or broke before it was complete
          slo expectation                   the reply was fine but too slow, or not what the model entry expects
          interrupted                       the run was stopped (SIGTERM, SIGINT) before the case was judged
          crashed                           the xdist worker running the case died (killed, out of memory)
          resources                         the monitor itself ran out of file descriptors or memory (EMFILE,
                                            ENFILE, ENOMEM): its own fault, never the endpoint's `connect`
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MAX_LISTED",
    "ConfigError",
    "ErrorClass",
    "MonitorError",
    "ProbeError",
    "PushError",
    "TelemetryConfigError",
    "status_class",
]

MAX_LISTED = 20  # problems listed in one error (a file of mistakes is fixed a screenful at a time); the rest counted


class ErrorClass(enum.StrEnum):
    TIMEOUT = "timeout"
    CONNECT = "connect"
    DNS = "dns"
    TLS = "tls"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    QUOTA = "quota"
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"
    SCHEMA = "schema"
    EMPTY = "empty"
    STREAM_BROKEN = "stream_broken"
    SLO = "slo"
    EXPECTATION = "expectation"
    INTERRUPTED = "interrupted"
    CRASHED = "crashed"
    RESOURCES = "resources"

    @property
    def transient(self) -> bool:
        """Worth another attempt: the same request may well succeed in a moment."""
        return self in _TRANSIENT


_TRANSIENT = {ErrorClass.TIMEOUT, ErrorClass.CONNECT, ErrorClass.RATE_LIMITED, ErrorClass.SERVER_ERROR}


class MonitorError(Exception):
    """The root of every error the monitor raises itself (see the tree above)."""


class ConfigError(MonitorError):
    """The endpoints file cannot be used; each line of the message names the file, the line, the field and the
    problem. `problems` holds one error per line, so that errors from several checks can be listed together."""

    def __init__(self, message: str, line: int = 0, parts: tuple[Any, ...] = (), detail: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.parts = parts
        self.detail = detail or message  # the problem without its place: "contains U+000A, a control character..."
        self.problems: list[ConfigError] = [self]

    @classmethod
    def listing(cls, errors: Iterable[ConfigError]) -> ConfigError:
        """One error listing every problem once, in file order: at most MAX_LISTED lines, then how many more."""
        unique = {str(p): p for e in errors for p in e.problems}
        ordered = sorted(unique.values(), key=lambda p: p.line)
        lines = [str(p) for p in ordered[:MAX_LISTED]]
        if len(ordered) > MAX_LISTED:
            lines.append(f"... and {len(ordered) - MAX_LISTED} more")
        listed = cls("\n".join(lines), ordered[0].line, ordered[0].parts)
        listed.problems = ordered
        return listed


class TelemetryConfigError(MonitorError):
    """A heartbeat or Pushgateway setting of the wrong shape; the message describes the shape, never the value (it
    holds a key)."""


class PushError(MonitorError):
    """Why the Pushgateway push did not land: one line, no secret."""


class ProbeError(MonitorError):
    """A failed check: its class, a one-line reason, and what the server said if anything."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        duration: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.duration = duration  # seconds from sending the request to the failure
        self.metrics: dict[str, float] = {}  # what was measured before it failed (an SLO breach has all of it)


def status_class(status: int, quota: bool = False) -> ErrorClass:
    """The class of a non-2xx HTTP status; `quota` when its body says a budget is spent (a 429, 400 or 403 that
    waiting will not cure)."""
    if status == 402 or (quota and 400 <= status < 500):
        return ErrorClass.QUOTA
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status >= 500:
        return ErrorClass.SERVER_ERROR
    if status >= 400:
        return ErrorClass.CLIENT_ERROR
    return ErrorClass.BAD_RESPONSE
