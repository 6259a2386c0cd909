"""Run every selected case's probe concurrently on a background loop, under per-endpoint and global caps.

pytest still runs one case at a time; each case only waits for its own probe, which usually started long
before (prefetch). So a run of N cases takes about as long as its slowest requests, not their sum, while every
case keeps its own timing, verdict and heartbeat.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import os
import resource
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from ..case import RUN_MAX_CONCURRENCY, Case, Endpoint
from ..errors import ErrorClass, ProbeError
from ..outcome import Attempt, Outcome
from ..redact import Redactor
from ..reply import Timed, one_line
from ..types.base import Multipart
from .exchange import timed
from .judge import Verdict, consumer, evaluate
from .loop import BackgroundLoop
from .retry import BACKOFF_CAP_S, backoff
from .transport import request_headers, transport_for

if TYPE_CHECKING:  # loaded by transport_for, with the first pool
    from httpx_aiohttp import AiohttpTransport

__all__ = ["Engine", "case_budget", "descriptor_cap"]

# File descriptors kept for what is not a probe: pings and pushes in flight, the reports, pytest's own files.
DESCRIPTOR_RESERVE = 24


@dataclass(frozen=True)
class _Probed:
    """What the loop hands back: the completed exchange, or the error that ended the attempts, and when."""

    attempts: tuple[Attempt, ...]
    started_at: float
    ended_at: float
    result: Timed | None = None
    error: ProbeError | None = None


@dataclass(frozen=True)
class Stop:
    """Why the run stopped probing (SIGTERM, the run deadline...), when, and which requests were in flight."""

    error_class: ErrorClass
    why: str  # "run interrupted by SIGTERM after 12.3 s"
    at: float  # monotonic
    wall: float  # Unix time
    in_flight: Mapping[str, float]  # case id -> monotonic time its current attempt was sent


class Engine:
    """Probes cases on a BackgroundLoop; `outcome()` is the synchronous door for the pytest case.

    The loop only sends, times and retries. Judging a reply (parsing, shape, contracts, SLOs) happens in
    `outcome()` on pytest's thread, and the first `outcome()` lets the prefetched probes finish before any case
    reports: pytest's per-case work would otherwise compete with the loop for the GIL while other requests are
    still being timed, and add that wait to their durations.
    """

    def __init__(
        self,
        loop: BackgroundLoop,
        redact: Redactor,
        max_concurrency: int = RUN_MAX_CONCURRENCY,
        *,
        share: int = 1,
        drain: bool = True,
    ) -> None:
        self._loop = loop
        self._redact = redact
        self._share = share  # xdist workers split every cap between them
        self._max_concurrency = math.ceil(max_concurrency / share)
        if (cap := descriptor_cap()) is not None:  # each request holds a socket: more would fail as EMFILE
            self._max_concurrency = min(self._max_concurrency, cap)
        self._drain = drain
        self._futures: dict[str, concurrent.futures.Future[_Probed]] = {}
        self._transports: dict[str, AiohttpTransport] = {}
        self._tls: dict[bool, ssl.SSLContext] = {}
        self._endpoint_slots: dict[str, asyncio.Semaphore] = {}
        self._global_slots: asyncio.Semaphore | None = None
        self._in_flight: dict[str, float] = {}  # case id -> monotonic time its current attempt was sent
        self._first_sent: dict[str, float] = {}  # case id -> Unix time its first attempt was sent
        self._stop: Stop | None = None

    def start(self, cases: Iterable[Case]) -> None:
        """Begin probing these cases now, in order, as the caps allow.

        Every request is built first and only then are they all handed to the loop, so that building the later
        ones does not hold the GIL while the first ones are being timed. A stop (a signal's handler runs between
        any two steps of this thread) ends both passes: the cases left are never sent."""
        prepared = []
        for case in cases:
            if self._stop is not None:
                return
            if case.id not in self._futures and not case.failure:
                prepared.append((case, *self._prepare(case)))
        for case, transport, request in prepared:
            if self._stop is not None:
                return
            self._submit(case, transport, request)

    def outcome(self, case: Case) -> Outcome:
        """Wait for this case's probe (starting it if it was not prefetched), then judge it.

        After stop(), a probe that had finished is still judged; one that had not fails with the stop's class."""
        if case.failure is not None:
            error_class, why = case.failure
            return Outcome(passed=False, reason=self._redact(f"{error_class}: {why}"), error_class=error_class)
        if self._stop is not None and case.id not in self._futures:
            return self._stopped(case, self._stop)
        started = time.monotonic()
        future = self._future(case)
        try:
            probed = future.result()
            if self._drain:
                self._drain = False
                # Bounded by the case's own timeout, so it stays inside the case's pytest-timeout budget.
                left = case.timeout - (time.monotonic() - started)
                concurrent.futures.wait(list(self._futures.values()), timeout=max(0.0, left))
        except concurrent.futures.CancelledError:
            if self._stop is None:
                raise
            return self._stopped(case, self._stop)
        except BaseException:
            future.cancel()  # pytest-timeout or Ctrl-C: stop the request too
            raise
        return self._judge(case, probed)

    def progress(self) -> tuple[int, int, int]:
        """Probes finished, of which failed, and requests in flight now: for the command's progress line."""
        done = [future for future in list(self._futures.values()) if future.done() and not future.cancelled()]
        failed = sum(future.exception() is not None or future.result().error is not None for future in done)
        return len(done), failed, len(self._in_flight)

    def stop(self, error_class: ErrorClass, why: str) -> None:
        """Stop probing: every request in flight or not yet sent is cancelled, and its case fails with this class.

        Safe from a signal handler and from another thread; only the first call counts."""
        if self._stop is not None:
            return
        self._stop = Stop(error_class, why, time.monotonic(), time.time(), dict(self._in_flight))
        for future in list(self._futures.values()):
            future.cancel()

    def _stopped(self, case: Case, stop: Stop) -> Outcome:
        sent = stop.in_flight.get(case.id)
        if sent is not None:
            state = f"request in flight for {stop.at - sent:.1f} s"
        else:
            state = "waiting to retry" if case.id in self._first_sent else "request not sent yet"
        first = self._first_sent.get(case.id)
        return Outcome(
            passed=False,
            reason=self._redact(f"{stop.error_class.value}: {stop.why}; {state}"),
            error_class=stop.error_class.value,
            duration_s=None if sent is None else stop.at - sent,
            started_at=first,
            ended_at=stop.wall if first is not None else None,
        )

    def close(self) -> None:
        async def close_transports() -> None:
            await asyncio.gather(*(t.aclose() for t in self._transports.values()), return_exceptions=True)

        if self._transports:
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self._loop.run(close_transports(), timeout=5)

    def _future(self, case: Case) -> concurrent.futures.Future[_Probed]:
        """The case's probe, submitted once."""
        if case.id not in self._futures:
            self._submit(case, *self._prepare(case))
        return self._futures[case.id]

    def _submit(self, case: Case, transport: AiohttpTransport, request: httpx.Request) -> None:
        """Hand the case's probe to the loop. A stop that came between the loop's taking it and its being recorded
        here did not see it to cancel it: it is cancelled now, or its case would wait for a probe nobody stops."""
        future = self._futures[case.id] = self._loop.submit(self._run(case, transport, request))
        if self._stop is not None:
            future.cancel()

    def _prepare(self, case: Case) -> tuple[AiohttpTransport, httpx.Request]:
        """The case's transport and request, built on pytest's thread before any clock starts (a TLS context
        alone costs about 40 ms, which on the loop would be added to other requests' durations)."""
        probe = case.type
        body = probe.body(case)
        if isinstance(body, dict):
            body = {**_probe_fields(case, probe.tags), **body}  # the type's and the user's own fields win
        content = {"data": body.data, "files": body.files} if isinstance(body, Multipart) else {"json": body}
        request = httpx.Request(
            probe.method,
            case.endpoint.url_for(probe.path),
            **content,
            headers=request_headers(case.endpoint, case.monitor, probe.headers, probe.key_header),
            extensions={"timeout": httpx.Timeout(case.timeout).as_dict()},
        )
        request.read()  # one body in memory, sent again as it is on a retry (a multipart stream reads only once)
        return self._transport(case.endpoint), request

    async def _run(self, case: Case, transport: AiohttpTransport, request: httpx.Request) -> _Probed:
        """Attempts until one completes or a failure is not worth retrying (judging a reply never is).

        A server that asks for a longer wait than the case has left is taken at its word: the case fails at
        once and says so, rather than asking again sooner than it was told."""
        attempts: list[Attempt] = []
        started, budget = time.monotonic(), case_budget(case)
        while True:
            async with self._slots(case.endpoint):
                sent = time.time()
                first = self._first_sent.setdefault(case.id, sent)
                self._in_flight[case.id] = time.monotonic()
                try:
                    result = await timed(transport, request, case.timeout, consumer(case))
                    return _Probed(tuple(attempts), first, sent + result.duration, result=result)
                except ProbeError as error:
                    failure = error
                finally:
                    self._in_flight.pop(case.id, None)
            attempts.append(Attempt(failure.error_class.value, failure.status_code, failure.duration or 0.0))
            ended = sent + (failure.duration or 0.0)
            if not failure.error_class.transient or len(attempts) > case.retries:
                return _Probed(tuple(attempts), first, ended, error=failure)
            wait = backoff(len(attempts), failure.retry_after)
            asked = failure.retry_after
            if asked is not None and time.monotonic() - started + wait + case.timeout > budget:
                failure.message += f"; server asks to retry after {asked:.0f} s, beyond this case's {budget:g} s budget"
                return _Probed(tuple(attempts), first, ended, error=failure)
            await asyncio.sleep(wait)

    def _judge(self, case: Case, probed: _Probed) -> Outcome:
        if probed.result is None:
            assert probed.error is not None
            return self._failed(probed.error, list(probed.attempts), probed)
        result = probed.result
        try:
            verdict = _evaluate_totally(case, result)
        except ProbeError as error:
            if error.error_class is not ErrorClass.SLO:
                error.message += f" (HTTP {result.status_code} after {result.duration:.3f} s)"
            error.status_code, error.duration = result.status_code, result.duration
            attempt = Attempt(error.error_class.value, result.status_code, result.duration)
            return self._failed(error, [*probed.attempts, attempt], probed)
        attempts = [*probed.attempts, Attempt(None, result.status_code, result.duration)]
        return self._passed(verdict, result, attempts, probed)

    def _passed(self, verdict: Verdict, result: Timed, attempts: list[Attempt], probed: _Probed) -> Outcome:
        """A pass, degraded when it needed a retry or crossed a warning threshold; the reason says which."""
        retried = [a for a in attempts if a.error_class]
        n, last = len(retried), retried[-1] if retried else None
        retry = [f"{n} retr{'y' if n == 1 else 'ies'}: {last.status_code or last.error_class}"] if last else []
        summary = "; ".join([*(f"passed after {r}" for r in retry), *verdict.warnings, verdict.summary])
        return Outcome(
            passed=True,
            reason=self._redact(summary),
            duration_s=result.duration,
            status_code=result.status_code,
            attempts=tuple(attempts),
            metrics=verdict.metrics,
            started_at=probed.started_at,
            ended_at=probed.ended_at,
            degraded=(*retry, *verdict.warnings),
        )

    def _failed(self, error: ProbeError, attempts: list[Attempt], probed: _Probed) -> Outcome:
        reason = f"{error.error_class.value}: {error.message}"
        if len(attempts) > 1:
            reason += f" ({len(attempts)} attempts)"
        return Outcome(
            passed=False,
            reason=self._redact(reason),
            error_class=error.error_class.value,
            duration_s=attempts[-1].duration_s,
            status_code=error.status_code,
            attempts=tuple(attempts),
            metrics=error.metrics,
            started_at=probed.started_at,
            ended_at=probed.ended_at,
        )

    def _slots(self, endpoint: Endpoint) -> _Slots:
        if self._global_slots is None:
            self._global_slots = asyncio.Semaphore(self._max_concurrency)
        cap = math.ceil(endpoint.max_concurrency / self._share)
        slot = self._endpoint_slots.setdefault(endpoint.name, asyncio.Semaphore(cap))
        return _Slots(slot, self._global_slots)

    def _transport(self, endpoint: Endpoint) -> AiohttpTransport:
        """One connection pool per endpoint, sharing one TLS context per verify setting, through any proxy that
        HTTP(S)_PROXY / NO_PROXY name for it."""
        transport = self._transports.get(endpoint.name)
        if transport is None:
            if endpoint.verify_tls not in self._tls:
                self._tls[endpoint.verify_tls] = httpx.create_ssl_context(verify=endpoint.verify_tls)
            transport = transport_for(endpoint, self._tls[endpoint.verify_tls])
            self._transports[endpoint.name] = transport
        return transport


class _Slots:
    """The endpoint's slot first, then a global one, so a busy endpoint never holds global slots while it waits."""

    def __init__(self, endpoint: asyncio.Semaphore, overall: asyncio.Semaphore) -> None:
        self._endpoint, self._overall = endpoint, overall

    async def __aenter__(self) -> None:
        await self._endpoint.acquire()
        try:
            await self._overall.acquire()
        except BaseException:
            self._endpoint.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._overall.release()
        self._endpoint.release()


def _evaluate_totally(case: Case, result: Timed) -> Verdict:
    """Judging is total: whatever a reply holds, it passes or fails with a class and one line, never a traceback.

    Every check names the faults it knows; this is the boundary that keeps one it does not know from escaping."""
    try:
        return evaluate(case, result)
    except ProbeError:
        raise
    except Exception as exc:
        raise ProbeError(
            ErrorClass.BAD_RESPONSE, f"reply could not be judged ({type(exc).__name__}: {one_line(str(exc), 80)})"
        ) from None


def _probe_fields(case: Case, accepted: frozenset[str]) -> dict[str, Any]:
    """The body fields that mark a probe, those the endpoint asks for and the type's API accepts."""
    fields: dict[str, Any] = {}
    if case.endpoint.probe_metadata and "metadata" in accepted:
        fields["metadata"] = {"model_monitor_probe": case.monitor}
    if case.endpoint.probe_user and "user" in accepted:
        fields["user"] = case.endpoint.probe_user
    return fields


def case_budget(case: Case) -> float:
    """All the time a case may take: every attempt's deadline and the longest backoff between them."""
    return case.timeout * (case.retries + 1) + BACKOFF_CAP_S * case.retries


def descriptor_cap() -> int | None:
    """The most requests this process can hold open at once: its open-file limit (ulimit -n) less what is open
    already and the reserve; None when there is no limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: count only the reserve
        open_now = 0
    return max(1, soft - open_now - DESCRIPTOR_RESERVE)
