"""Probe every selected case concurrently in a process of its own, under per-endpoint and global caps.

pytest still runs one case at a time; each case only waits for its own probe, which usually started long
before (prefetch). So a run of N cases takes about as long as its slowest requests, not their sum, while every
case keeps its own timing, verdict and heartbeat. The requests are sent and timed by the probing process
(prober.py), whose interpreter nothing else uses: pytest's per-case work here cannot delay a timestamp there.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import threading
import time
from collections import deque
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..case import RUN_MAX_CONCURRENCY, Case
from ..errors import ErrorClass, ProbeError
from ..outcome import Attempt, Outcome
from ..redact import Redactor
from ..reply import Timed, one_line
from ..types.base import Multipart
from .judge import Verdict, evaluate
from .process import ProberProcess
from .retry import BACKOFF_CAP_S
from .transport import request_headers
from .wire import Job, Probed, WireError, decode_reply, frame

__all__ = ["Engine", "case_budget", "shared"]

GO = frame({"kind": "go"})  # after a batch of jobs: the prober reads them all before it sends any
FIRST_WAVES = 2  # of the global cap: the jobs sent before the rest are built


@dataclass(frozen=True)
class Stop:
    """Why the run stopped probing (SIGTERM, the run deadline...), when, and which requests were in flight."""

    error_class: ErrorClass
    why: str  # "run interrupted by SIGTERM after 12.3 s"
    at: float  # monotonic
    wall: float  # Unix time
    in_flight: Mapping[str, float]  # case id -> monotonic time its current attempt was sent


class Engine:
    """Hands cases to the probing process; `outcome()` is the synchronous door for the pytest case.

    The prober only sends, times and retries, and returns each case's exchange as soon as it is complete; a
    reader thread here files it for the case's outcome(). Judging a reply (parsing, shape, contracts, SLOs) happens in
    `outcome()` on pytest's thread."""

    def __init__(
        self,
        redact: Redactor,
        max_concurrency: int = RUN_MAX_CONCURRENCY,
        *,
        share: int = 1,
        spare: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self._redact = redact
        self._share = share  # xdist workers split every cap between them
        self._max_concurrency = shared(max_concurrency, share)
        self._waiting: set[str] = set()  # cases given to the prober and not answered yet
        self._probed: dict[str, Probed] = {}  # answered, not judged yet (judging lets go of the reply)
        self._arrived: deque[str] = deque()  # the answered cases in the order their answers came (first_answered)
        self._ready = threading.Condition()  # an answer came, or the run stopped
        self._answered = self._failures = 0
        self._ids: dict[int, str] = {}  # the prober's number for a case -> its id
        self._numbers: dict[str, int] = {}  # and back
        self._in_flight: dict[str, float] = {}  # case id -> monotonic time its current attempt was sent
        self._first_sent: dict[str, float] = {}  # case id -> Unix time its first attempt was sent
        self._stop: Stop | None = None
        # `spare`: a probing process started ahead for this cap (spawn(shared(max_concurrency, share))).
        self._prober = ProberProcess(self._max_concurrency, self._take, self._orphaned, spare)

    def start(self, cases: Iterable[Case]) -> None:
        """Begin probing these cases now, in order, as the caps allow.

        The first waves' worth of jobs goes first, so that the prober sends them while the rest are built and read
        (5,000 jobs take about 0.5 s between the two processes). A stop (a signal's handler runs between any two
        steps of this thread) ends the building, and nothing built is sent after it: the stop has ended the prober,
        and a send would start another."""
        with self._ready:  # the reader must not end the prober between these jobs and their sending
            jobs: list[bytes] = []
            first = FIRST_WAVES * self._max_concurrency
            for case in cases:
                if self._stop is not None:
                    return
                if case.id not in self._numbers and not case.failure:
                    jobs.append(self._job(case))
                if len(jobs) == first and self._stop is None:
                    self._prober.send(b"".join(jobs) + GO)
                    jobs, first = [], 0
            if jobs and self._stop is None:
                self._prober.send(b"".join(jobs) + GO)

    def launch(self) -> None:
        """Start the probing process ahead of the first case (its interpreter takes a few hundred ms to start)."""
        self._prober.start()

    def outcome(self, case: Case) -> Outcome:
        """Wait for this case's probe (starting it if it was not prefetched), then judge it.

        After stop(), a probe that had finished is still judged; one that had not fails with the stop's class."""
        if case.failure is not None:
            error_class, why = case.failure
            return Outcome(passed=False, reason=self._redact(f"{error_class}: {why}"), error_class=error_class)
        unasked = case.id not in self._waiting and case.id not in self._probed  # not prefetched, or run again
        if self._stop is not None and unasked:
            return self._stopped(case, self._stop)
        if unasked:
            with self._ready:
                self._prober.send(self._job(case) + GO)
        try:
            with self._ready:
                while case.id not in self._probed and self._stop is None:
                    self._ready.wait()
                probed = self._probed.pop(case.id, None)
        except BaseException:
            self._cancel(case)  # pytest-timeout or Ctrl-C: stop the request too
            raise
        if probed is None:
            assert self._stop is not None
            return self._stopped(case, self._stop)
        return self._judge(case, probed)

    def pending(self, case: Case) -> bool:
        """Given to the prober and not judged yet: its answer will come (or has), or the run stops."""
        with self._ready:
            return case.id in self._waiting or case.id in self._probed

    def first_answered(self, wanted: Container[str]) -> str | None:
        """The first of `wanted` whose answer has come, in the order the answers came; None when none has yet."""
        with self._ready:
            while self._arrived:
                case_id = self._arrived.popleft()
                if case_id in wanted:
                    return case_id
        return None

    def progress(self) -> tuple[int, int, int]:
        """Probes finished, of which failed, and requests in flight now: for the command's progress line."""
        return self._answered, self._failures, len(self._in_flight)

    def stop(self, error_class: ErrorClass, why: str) -> None:
        """Stop probing: every request in flight or not yet sent is cancelled, and its case fails with this class.

        Safe from a signal handler and from another thread; only the first call counts."""
        if self._stop is not None:
            return
        self._stop = Stop(error_class, why, time.monotonic(), time.time(), dict(self._in_flight))
        self._prober.kill()
        with self._ready:
            self._ready.notify_all()

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
        self._prober.close()

    def _job(self, case: Case) -> bytes:
        """The case's request as the prober sends it, built and encoded here, before any clock starts (a TLS
        context alone costs about 40 ms, which there would be added to other requests' durations)."""
        probe = case.type
        body = probe.body(case)
        if isinstance(body, dict):
            body = {**_probe_fields(case, probe.tags), **body}  # the type's and the user's own fields win
        endpoint = case.endpoint
        url = endpoint.url_for(probe.path)
        headers = request_headers(endpoint, case.monitor, probe.headers, probe.key_header)
        if isinstance(body, Multipart):  # httpx writes a multipart body: its boundary, its files
            import httpx  # only for the runs with a multipart case (audio): 9 MB, 70 ms

            request = httpx.Request(probe.method, url, data=body.data, files=body.files, headers=headers)
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
            content = request.read()  # one body, sent again as it is on a retry (a multipart stream reads only once)
        else:
            content, headers = _json_request(probe.method, body, headers)
        number = self._numbers[case.id] = len(self._ids)
        self._ids[number] = case.id
        self._waiting.add(case.id)
        fmt = probe.stream_format
        return Job(
            id=number,
            method=probe.method,
            url=url,
            headers=tuple(headers),
            body=content,
            timeout=case.timeout,
            retries=case.retries,
            budget=case_budget(case),
            endpoint=endpoint.name,
            base_url=endpoint.base_url,
            cap=shared(endpoint.max_concurrency, self._share),
            verify_tls=endpoint.verify_tls,
            stream=f"{fmt.__module__}:{fmt.__qualname__}" if case.stream else None,
        ).frame()

    def _cancel(self, case: Case) -> None:
        """The case's wait was interrupted: its request is stopped if it is still out; an answer that came
        meanwhile is let go. Under the lock, as the reader files answers: an answer that came makes no cancel to
        send, which after the run's last answer would have started a probing process for nothing."""
        with self._ready:
            self._probed.pop(case.id, None)
            if case.id not in self._waiting:
                return
            self._waiting.discard(case.id)
            with contextlib.suppress(OSError, ValueError):
                self._prober.send(frame({"kind": "cancel", "id": self._numbers[case.id]}))

    def _orphaned(self, why: str) -> None:
        """The prober ended on its own (or was ended for what it sent): every case still waiting fails saying so."""
        if self._stop is not None:
            return
        failure = ProbeError(ErrorClass.CRASHED, f"{why} before this case's reply was read")
        now = time.time()
        for case_id in list(self._waiting):
            self._file(case_id, Probed((), self._first_sent.get(case_id, now), now, error=failure))

    def _take(self, meta: dict[str, Any], blob: bytes) -> None:
        """One frame from the prober. Its id must name a case it was given; a reply of the wrong shape fails
        that case alone."""
        number = meta.get("id")
        case_id = self._ids.get(number) if type(number) is int else None
        if case_id is None:
            raise WireError(f"a frame for no case it was given ({one_line(repr(number), 20)})")
        kind = meta.get("kind")
        if kind == "sent":
            wall, at = meta.get("wall"), meta.get("at")
            self._first_sent.setdefault(case_id, wall if isinstance(wall, float) else time.time())
            self._in_flight[case_id] = at if isinstance(at, float) else time.monotonic()
            return
        self._in_flight.pop(case_id, None)
        if kind == "wait":
            return
        try:
            probed = decode_reply(meta, blob)
        except WireError as exc:
            failure = ProbeError(ErrorClass.CRASHED, f"the probing process sent {exc} for this case")
            probed = Probed((), self._first_sent.get(case_id, time.time()), time.time(), error=failure)
        self._file(case_id, probed)

    def _file(self, case_id: str, probed: Probed) -> None:
        """An answer for a case that is waiting for one (not for one cancelled, nor after the run stopped)."""
        with self._ready:
            if self._stop is not None or case_id not in self._waiting:
                return
            self._waiting.discard(case_id)
            self._probed[case_id] = probed
            self._arrived.append(case_id)
            self._answered += 1
            self._failures += probed.error is not None
            self._ready.notify_all()
            if not self._waiting:  # every case given is answered: the prober's memory is of no more use
                self._prober.finish()

    def _judge(self, case: Case, probed: Probed) -> Outcome:
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

    def _passed(self, verdict: Verdict, result: Timed, attempts: list[Attempt], probed: Probed) -> Outcome:
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

    def _failed(self, error: ProbeError, attempts: list[Attempt], probed: Probed) -> Outcome:
        reason = f"{error.error_class.value}: {error.message}"
        if len(attempts) > 1:
            reason += f" ({len(attempts)} attempts)"
        return Outcome(
            passed=False,
            reason=self._redact(reason),
            error_class=error.error_class.value,
            duration_s=attempts[-1].duration_s if attempts else None,
            status_code=error.status_code,
            attempts=tuple(attempts),
            metrics=error.metrics,
            started_at=probed.started_at,
            ended_at=probed.ended_at,
        )


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


def _json_request(
    method: str, body: dict[str, Any] | None, headers: list[tuple[str, str]]
) -> tuple[bytes, list[tuple[str, str]]]:
    """A JSON body (or none) and the headers that describe it, written as httpx writes them (compact UTF-8, no NaN),
    without building an httpx.Request per case: its URL parsing and header objects cost 0.1 ms a case, which at
    N=5000 came before the first request. Headers the request has already are kept (a type's own Content-Type)."""
    have = {name.lower() for name, _ in headers}
    content = b""
    if body is not None:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        if "content-type" not in have:
            headers.append(("Content-Type", "application/json"))
    if (body is not None or method in ("POST", "PUT", "PATCH")) and "content-length" not in have:
        headers.append(("Content-Length", str(len(content))))
    return content, headers


def shared(cap: int, share: int) -> int:
    """Each of `share` processes' part of a cap (xdist workers split every cap between them)."""
    return math.ceil(cap / share)


def case_budget(case: Case) -> float:
    """All the time a case may take: every attempt's deadline and the longest backoff between them."""
    return case.timeout * (case.retries + 1) + BACKOFF_CAP_S * case.retries
