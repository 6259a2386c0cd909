"""Heartbeat delivery: pings sent on the background loop, in order per case, with at most three attempts each,
evenly spaced to at most --telemetry-rate requests per second (heartbeat services rate-limit), and a tally of what
could not be delivered. Pings never touch a check's timing or verdict."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import time

import httpx

from ... import USER_AGENT
from ...probe.loop import BackgroundLoop
from ...probe.retry import backoff, retry_after
from ...redact import Redactor
from .._http import ATTEMPTS, skim
from .targets import Ping

__all__ = ["Delivery"]

log = logging.getLogger("model_monitor.telemetry")

PING_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
PINGS_IN_FLIGHT = 10


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
        # Queued on pytest's thread, started on the loop's: the loop is woken once for every ping queued meanwhile.
        self._queued: collections.deque[tuple[Ping, str, concurrent.futures.Future[None]]] = collections.deque()
        self._waking = False
        self._last: dict[str, asyncio.Task[None]] = {}  # the loop's: each chain's latest ping
        self._tasks: set[asyncio.Task[None]] = set()  # the loop's: pings under way
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
        """Queue a ping; pings with the same chain (one case's run) go out in order.

        A stopped run reports thousands of cases within a second: waking the loop for each ping would cost pytest's
        thread a write and a wait for the GIL every time, so the pings queued before the loop wakes start together."""
        if self.dry_run:
            self.sent.append(ping)
            return
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._pending.append(future)
        self._queued.append((ping, chain, future))
        if not self._waking:
            self._waking = True
            self._loop.loop.call_soon_threadsafe(self._start_queued)

    def _start_queued(self) -> None:
        """On the loop: each queued ping's task, after the one before it in its chain."""
        self._waking = False  # first: a ping queued from now on wakes the loop again
        while self._queued:
            ping, chain, future = self._queued.popleft()
            task = asyncio.ensure_future(self._deliver(ping, self._last.get(chain)))
            self._last[chain] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(functools.partial(_settle, future))

    def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()

    def flush(self, deadline: float) -> None:
        """Wait for every queued ping, at most `deadline` seconds in all; what is left counts as failed."""
        _, not_done = concurrent.futures.wait(self._pending, timeout=deadline)
        for future in not_done:
            future.cancel()
        self.failures += [f"not delivered within the {deadline:g} s deadline"] * len(not_done)
        self._pending = []
        if not_done:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is under way
                self._loop.loop.call_soon_threadsafe(self._cancel_all)
        if self._client is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self._loop.run(self._client.aclose(), timeout=2)
            self._client = None

    @property
    def total(self) -> int:
        return len(self.sent) + len(self.failures)

    async def _deliver(self, ping: Ping, after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await asyncio.wait([after])  # its fate is its own; we only keep the order
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


def _settle(future: concurrent.futures.Future[None], task: asyncio.Task[None]) -> None:
    """A ping's future is done when its task is (unless flush gave up on it first)."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(None)


def request_headers(ping: Ping) -> dict[str, str]:
    """A ping's headers with its Authorization in the open: called only as the request is sent."""
    return dict(ping.headers) | ({"authorization": ping.auth.reveal()} if ping.auth else {})
