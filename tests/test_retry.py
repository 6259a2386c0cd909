"""Backoff and Retry-After: one rule for probes and pings, with each caller's own cap."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time

import httpx
import pytest

from model_monitor.probe.loop import BackgroundLoop
from model_monitor.probe.retry import BACKOFF_BASE_S, BACKOFF_CAP_S, MAX_RETRY_AFTER_S, backoff, retry_after
from model_monitor.redact import Redactor, Secret
from model_monitor.reporters import heartbeats as telemetry
from model_monitor.reporters.heartbeats.delivery import Delivery


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_is_jittered_around_a_doubling_base_and_capped(attempt: int) -> None:
    base = BACKOFF_BASE_S * 2 ** (attempt - 1)
    for _ in range(50):
        assert min(0.5 * base, BACKOFF_CAP_S) <= backoff(attempt) <= min(1.5 * base, BACKOFF_CAP_S)


@pytest.mark.parametrize("asked", [0.0, 0.1, 2.0, BACKOFF_CAP_S * 3])
def test_backoff_is_never_shorter_than_retry_after_even_past_the_cap(asked: float) -> None:
    for attempt in (1, 3, 10):
        assert backoff(attempt, asked) >= asked
    assert backoff(1, BACKOFF_CAP_S * 3) == BACKOFF_CAP_S * 3


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), ("1e308", MAX_RETRY_AFTER_S), ("inf", MAX_RETRY_AFTER_S)],
)
def test_retry_after_in_delta_seconds_is_clamped(value: str, seconds: float) -> None:
    assert retry_after(value) == seconds


@pytest.mark.parametrize("value", [None, "", "  ", "soon", "nan", "Fri, 99 Foo 2026 25:61:61 GMT"])
def test_an_unreadable_retry_after_is_no_answer(value: str | None) -> None:
    assert retry_after(value) is None


def test_retry_after_as_an_http_date_counts_from_now() -> None:
    asked = retry_after(http_date(30))
    assert asked is not None and 28 <= asked <= 30  # the date has whole seconds
    assert retry_after(http_date(-3600)) == 0.0, "a date in the past means at once"


@pytest.mark.parametrize(
    ("as_date", "asked", "longest", "low", "high"),
    [(True, 5, 10, 3.5, 5.0), (True, 3600, 10, 10.0, 10.0), (False, 4, 10, 4.0, 4.0), (False, 60, 2, 2.0, 2.0)],
    ids=["date-in-5-s", "date-in-1-h-capped", "delta-4-s", "delta-60-s-capped-by-a-2-s-deadline"],
)
def test_a_ping_waits_as_long_as_retry_after_asks_in_either_form_at_most_the_telemetry_deadline(
    monkeypatch: pytest.MonkeyPatch, as_date: bool, asked: int, longest: float, low: float, high: float
) -> None:
    """A 503 with Retry-After, then a 200: the wait between the attempts follows the header (capped for pings)."""
    # The date is written as the reply is sent, as a server does: made at the test's start, a loaded machine's
    # delay before the first ping would shorten the wait the header asks for.
    answers = iter([(503, lambda: {"retry-after": http_date(asked) if as_date else str(asked)}), (200, dict)])
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    def answer(request: httpx.Request) -> httpx.Response:
        status, headers = next(answers)
        return httpx.Response(status, headers=headers(), stream=httpx.ByteStream(b""))

    loop = BackgroundLoop()
    try:
        delivery = Delivery(loop, Redactor(), rate=math.inf, longest_wait=longest)  # unpaced: only the retry waits
        delivery._client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        ping = telemetry.Ping("cronitor", "GET", Secret("https://h/p/key/m"), "https://h/p/***/m")
        monkeypatch.setattr(asyncio, "sleep", no_sleep)
        assert asyncio.run(delivery._attempts(ping)) is None
    finally:
        loop.close()
    assert len(waits) == 1 and low <= waits[0] <= high, waits
