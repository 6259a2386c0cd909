"""When to try again: jittered exponential backoff, and a server's Retry-After, for probes and pings alike.

Each caller keeps its own limits: a probe fails at once when the wait asked for is beyond its case's budget (the
engine's rule), a ping waits at most a few seconds whatever a heartbeat service asks.
"""

from __future__ import annotations

import email.utils
import random
import time

__all__ = ["BACKOFF_BASE_S", "BACKOFF_CAP_S", "MAX_RETRY_AFTER_S", "backoff", "retry_after"]

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
MAX_RETRY_AFTER_S = 1e9  # a Retry-After past this (or infinite) is read as this: it only has to be shown sanely


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """The wait after failed attempt number `attempt` (from 1): jittered exponential, at most BACKOFF_CAP_S, but
    never shorter than the server's Retry-After (which may exceed our cap)."""
    delay: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
    return max(delay, retry_after or 0.0)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's value in seconds from now: the delta-seconds form or an HTTP date (RFC 9110 10.2.3),
    at least 0 and at most MAX_RETRY_AFTER_S; None when there is none or it cannot be read."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if seconds == seconds else None  # NaN is no answer
