"""Heartbeat delivery: pings sent on the background loop, in order per case and target, with at most three attempts
each, evenly spaced to at most --telemetry-rate requests per second (heartbeat services rate-limit), and a tally of
what could not be delivered. Pings never touch a check's timing or verdict."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

import httpx

from ... import USER_AGENT
from ...probe.loop import BackgroundLoop
from ...probe.retry import backoff, retry_after
from ...redact import Redactor
from ...reply import one_line
from .._http import ATTEMPTS, skim
from .targets import Ping

__all__ = ["Delivery", "Job"]

Job = Callable[[], Sequence[Ping]]  # renders the pings to send, in order

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
    longest a ping waits before a retry, whatever Retry-After a heartbeat service asks.

    A job is one case's pings for one target (its run, then its end), rendered only when a sender takes it up: a
    stopped run queues thousands of cases' jobs within its grace, of which only what the rate allows is sent, and
    PINGS_IN_FLIGHT senders take the jobs in order, each job's pings one after the other."""

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
        self._jobs: collections.deque[tuple[Job, int]] = collections.deque()  # appended on pytest's thread
        self._unsettled = 0  # pings queued or under way
        self._settled = threading.Condition()  # guards _unsettled; flush waits on it
        self._waking = False
        self._senders: set[asyncio.Task[None]] = set()  # the loop's
        self._gave_up = False
        # Built here, on pytest's thread: its TLS context would cost the loop ~40 ms while it times requests.
        self._client: httpx.AsyncClient | None = (
            None
            if dry_run
            else httpx.AsyncClient(
                timeout=PING_TIMEOUT, headers={"user-agent": USER_AGENT, "accept-encoding": "identity"}
            )
        )

    def send(self, job: Job, count: int) -> None:
        """Queue a job of `count` pings, sent in the order it renders them.

        Queuing costs pytest's thread a deque append; the loop is woken once for every job queued meanwhile."""
        if self.dry_run:
            self.sent += job()
            return
        with self._settled:
            self._unsettled += count
        self._jobs.append((job, count))
        if not self._waking:
            self._waking = True
            self._loop.loop.call_soon_threadsafe(self._staff)

    def _staff(self) -> None:
        """On the loop: enough senders for the queued jobs, at most PINGS_IN_FLIGHT."""
        self._waking = False  # first: a job queued from now on wakes the loop again
        for _ in range(min(PINGS_IN_FLIGHT - len(self._senders), len(self._jobs))):
            task = asyncio.ensure_future(self._sender())
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def _sender(self) -> None:
        while self._jobs and not self._gave_up:
            job, count = self._jobs.popleft()
            try:
                pings = job()
            except Exception as exc:  # never let a ping's fault escape unreported
                why = self._redact(f"{type(exc).__name__}: {one_line(str(exc), 200)} (rendering a ping)")
                log.warning("telemetry: %s", why)
                self._settle(count, failures=[why] * count)
                continue
            for ping in pings:
                try:
                    reason = await self._attempts(ping)
                except Exception as exc:
                    reason = f"{type(exc).__name__} sending to {ping.host}"
                if reason is None:
                    self._settle(1, sent=[ping])
                else:
                    log.warning("telemetry: ping failed: %s %s: %s", ping.method, ping.shown, self._redact(reason))
                    self._settle(1, failures=[self._redact(reason)])

    def _settle(self, count: int, sent: list[Ping] | None = None, failures: list[str] | None = None) -> None:
        with self._settled:
            if self._gave_up:  # flush has counted it as undelivered already
                return
            self.sent += sent or []
            self.failures += failures or []
            self._unsettled -= count
            self._settled.notify_all()

    def flush(self, deadline: float) -> None:
        """Wait for every queued ping, at most `deadline` seconds in all; what is left counts as failed."""
        with self._settled:
            self._settled.wait_for(lambda: self._unsettled == 0, timeout=deadline)
            left, self._gave_up = self._unsettled, True
            self.failures += [f"not delivered within the {deadline:g} s deadline"] * left
        self._jobs.clear()
        if left:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is under way
                self._loop.loop.call_soon_threadsafe(self._cancel_all)
        if self._client is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self._loop.run(self._client.aclose(), timeout=2)
            self._client = None

    def _cancel_all(self) -> None:
        for task in self._senders:
            task.cancel()

    @property
    def total(self) -> int:
        return len(self.sent) + len(self.failures)

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
