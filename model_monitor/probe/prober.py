"""The probing process: `python -m model_monitor.probe.prober`, started by the engine, one per pytest process.

It reads Jobs on stdin and answers on stdout (wire.py), and does nothing but send, time and retry, under the
caps: every timestamp is taken on a loop that has the interpreter to itself, whatever pytest is doing meanwhile.
It dies with its parent (stdin's end), ignores the terminal's and the group's stop signals (the parent decides what
a stop means and ends it), and prints nothing: a traceback could carry a URL's key.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import os
import queue
import signal
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# aiohttp loads now, with the TLS contexts it makes at import: during this process's start-up, which runs while
# pytest collects, not when the first jobs have come and wait for it.
import aiohttp

from ..errors import ErrorClass, ProbeError
from ..outcome import Attempt
from ..reply import Timed
from ..types.stream_format import StreamReply
from .exchange import Sent, read_body, timed
from .process import descriptor_cap, grow_descriptor_table
from .retry import backoff
from .stream import read_stream
from .transport import proxy_for, session_for, tls_context
from .wire import HEAD, MAX_BLOB, MAX_META, Job, encode_failed, encode_result, frame

STREAM_FORMATS = "model_monitor.types."  # where a stream format named by a Job may come from


class Prober:
    """Runs the Jobs read from the engine under the global cap and each endpoint's, and reports on each."""

    def __init__(self, out: _Out, max_concurrency: int, descriptors: int | None = None) -> None:
        self._out = out
        self._descriptors = descriptors  # the connections all pools may hold at once (descriptor_cap); None: any
        self._unsent: list[bytes] = []
        self._caps = _Caps(max_concurrency, self._attempt)
        self._pools: dict[str, tuple[aiohttp.ClientSession, str | None]] = {}  # per endpoint: pool and proxy
        self._running: dict[str, int] = {}  # per endpoint, attempts under way
        # per endpoint, the most attempts under way at once since its pool was made: the connections it may hold;
        # in the order the endpoints last started one, least recent first
        self._peaks: dict[str, int] = {}
        self._closing: dict[asyncio.Task[None], int] = {}  # pools being closed, and the connections each may hold
        self._tls: dict[bool, ssl.SSLContext] = {}  # per verify setting, made with the first https endpoint's pool
        self._ends: dict[str, Callable[[bytes], bool]] = {}
        self._probes: dict[int, _Probe] = {}  # every case not yet answered
        self._arrived: list[_Probe] = []  # read, not released to the caps before the batch's `go`
        self.tasks: dict[int, asyncio.Task[None]] = {}  # the attempts under way or waiting to retry

    def take(self, job: Job) -> None:
        """A job of the batch being read: its pool and reader are made now, while no request of the batch is
        being timed."""
        self._probes[job.id] = probe = _Probe(job)
        try:
            probe.request = Sent(job.method, job.url, job.headers, job.body, self._pool(job)[1])
            self._consumer(job.stream)
        except Exception as exc:
            self._refuse(probe, exc)
            return
        self._arrived.append(probe)

    def go(self) -> None:
        """The batch is complete: its probes queue for their slots, in the order they came."""
        for probe in self._arrived:
            self._caps.add(probe)
        self._arrived.clear()

    def cancel(self, case: int) -> None:
        probe = self._probes.pop(case, None)
        if probe is not None:
            self._caps.discard(probe)
        if (task := self.tasks.get(case)) is not None:
            task.cancel()

    def _attempt(self, probe: _Probe) -> None:
        """The caps let this probe send now: one attempt, on a task of its own."""
        name = probe.job.endpoint
        self._running[name] = running = self._running.get(name, 0) + 1
        self._peaks[name] = max(self._peaks.pop(name, 0), running)
        self._fit(name)
        task = asyncio.get_running_loop().create_task(self._guarded(probe))
        self.tasks[probe.job.id] = task
        task.add_done_callback(lambda _: self.tasks.pop(probe.job.id, None))

    async def _guarded(self, probe: _Probe) -> None:
        """Every Job gets its answer: a fault of ours fails its case with one line instead of leaving it unanswered."""
        try:
            await self._try(probe)
        except Exception as exc:
            self._refuse(probe, exc)

    def _refuse(self, probe: _Probe, exc: Exception) -> None:
        """The case fails without a request: with the ProbeError that says why (a proxy variable that is no URL),
        else as our fault."""
        why = f"the probing process could not run this case ({type(exc).__name__})"
        failure = exc if isinstance(exc, ProbeError) else ProbeError(ErrorClass.CRASHED, why)
        now = time.time()
        self._answer(probe, encode_failed(probe.job.id, [], now, now, failure))

    async def _try(self, probe: _Probe) -> None:
        """One attempt, holding its slots; then the answer, or a retry after the backoff (slots released).

        A server that asks for a longer wait than the case has left is taken at its word: the case fails at
        once and says so, rather than asking again sooner than it was told."""
        job, attempts = probe.job, probe.attempts
        try:
            while self._closing and self._excess() > 0:  # before its clock starts
                await asyncio.wait(list(self._closing))  # the sockets of the pools being closed, let go first
            session, consume = self._pool(job)[0], self._consumer(job.stream)
            sent = time.time()
            probe.first = probe.first or sent
            self._emit(frame({"kind": "sent", "id": job.id, "wall": sent, "at": time.monotonic()}))
            # The Unix times bracket the request: `sent` before its clock starts, `ended` after it stops (on a busy
            # machine this process can lose the CPU in between, so neither is computed from the duration).
            result: Timed | None = None
            try:
                result = await timed(session, probe.request, job.timeout, consume)
            except ProbeError as error:
                failure = error
            ended = time.time()
            # The clock has stopped. What is left (the frame, freeing the slots) waits for the loop's next turn, so
            # that the replies that came in with this one stop their clocks first, whatever this one costs.
            await asyncio.sleep(0)
            if result is not None:
                self._answer(probe, encode_result(job.id, attempts, probe.first, ended, result))
                return
        finally:
            self._running[job.endpoint] -= 1
            self._caps.release(probe)
        attempts.append(Attempt(failure.error_class.value, failure.status_code, failure.duration or 0.0))
        wait, asked = backoff(len(attempts), failure.retry_after), failure.retry_after
        if asked is not None and time.monotonic() - probe.started + wait + job.timeout > job.budget:
            failure.message += f"; server asks to retry after {asked:.0f} s, beyond this case's {job.budget:g} s budget"
            asked = math.inf
        if not failure.error_class.transient or len(attempts) > job.retries or asked == math.inf:
            self._answer(probe, encode_failed(job.id, attempts, probe.first, ended, failure))
            return
        self._emit(frame({"kind": "wait", "id": job.id}))
        await asyncio.sleep(wait)
        if job.id in self._probes:
            self._caps.add(probe)

    def _answer(self, probe: _Probe, data: bytes) -> None:
        self._probes.pop(probe.job.id, None)
        self._emit(data)

    def _emit(self, data: bytes) -> None:
        """Send once the running task yields: a write wakes the engine's reader, and on a busy machine that can
        cost this process the CPU between a request's send time and its clock's start."""
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._flush)
        self._unsent.append(data)

    def _flush(self) -> None:
        self._out.write(b"".join(self._unsent))
        self._unsent.clear()

    def _consumer(self, stream: str | None) -> Callable[..., Any]:
        """How the exchange reads the reply: one body, or a stream that its format says when it ends."""
        if stream is None:
            return read_body
        if stream not in self._ends:
            module, _, name = stream.partition(":")
            fmt = getattr(importlib.import_module(module), name) if module.startswith(STREAM_FORMATS) else None
            if not (isinstance(fmt, type) and issubclass(fmt, StreamReply)):
                raise ValueError(f"no stream format {stream}")
            self._ends[stream] = fmt.ends
        ends = self._ends[stream]
        return lambda response, clock: read_stream(response, clock, ends=ends)

    def _pool(self, job: Job) -> tuple[aiohttp.ClientSession, str | None]:
        """One connection pool per endpoint and the proxy the environment names for it, made as its first job is
        read: before any request of that batch is timed (a TLS context alone costs about 40 ms of this loop)."""
        pool = self._pools.get(job.endpoint)
        if pool is None:
            https = job.base_url.lower().startswith("https:")
            if https and job.verify_tls not in self._tls:
                self._tls[job.verify_tls] = tls_context(job.verify_tls)
            tls = self._tls[job.verify_tls] if https else None
            pool = self._pools[job.endpoint] = (session_for(job.cap, tls), proxy_for(job.base_url))
        return pool

    def _fit(self, starting: str) -> None:
        """Keep the connections the pools may hold within the open-file limit: while they would pass it, close the
        pools of endpoints with nothing under way, least recently used first (one is made again when its endpoint
        sends next). An endpoint's pool keeps up to its max_concurrency connections, so many endpoints taking
        turns under the global cap hold many more than it: 30 of 10 models each failed 52 cases under `ulimit -n
        256` with EMFILE."""
        excess = self._excess()
        if excess <= 0:  # the usual case, on every attempt: no walk over the endpoints
            return
        for name in [n for n in self._peaks if n != starting and not self._running.get(n)]:
            if excess <= 0:
                return
            held = self._peaks.pop(name)
            excess -= held
            pool = self._pools.pop(name, None)
            if pool is not None:  # its sockets count until they are closed
                task = asyncio.get_running_loop().create_task(pool[0].close())
                self._closing[task] = held
                task.add_done_callback(self._closing.pop)

    def _excess(self) -> int:
        """How many more connections the pools may hold (those being closed included) than the open-file limit
        leaves room for; 0 or less when they fit, or when there is no limit."""
        if self._descriptors is None:
            return 0
        return sum(self._peaks.values()) + sum(self._closing.values()) - self._descriptors

    async def close(self) -> None:
        closing = [session.close() for session, _ in self._pools.values()]
        await asyncio.gather(*closing, *self._closing, return_exceptions=True)


@dataclass(eq=False, slots=True)  # each is itself: queues find and drop it by identity
class _Probe:
    """One case: its job and its attempts so far."""

    job: Job
    request: Sent = field(init=False)  # made when the job is read, sent as it is by every attempt
    attempts: list[Attempt] = field(default_factory=list)
    first: float | None = None  # Unix time its first attempt was sent
    started: float = field(default_factory=time.monotonic)  # when it arrived: its budget counts from here


class _Caps:
    """Which probe sends next: the endpoint's slot first, then a global one, each given in arrival order, so that
    a busy endpoint never holds global slots while it waits. A probe is only a job in a queue until it holds
    both: thousands of cases cost a task each only while they send."""

    def __init__(self, overall: int, go: Callable[[_Probe], None]) -> None:
        self._overall, self._go = overall, go
        self._running = 0
        self._ready: deque[_Probe] = deque()  # holding their endpoint's slot, waiting for a global one
        self._waiting: dict[str, deque[_Probe]] = {}  # per endpoint, waiting for its slot
        self._held: dict[str, int] = {}  # per endpoint, slots held (sending, or ready)

    def add(self, probe: _Probe) -> None:
        self._waiting.setdefault(probe.job.endpoint, deque()).append(probe)
        self._pump(probe.job.endpoint, probe.job.cap)

    def release(self, probe: _Probe) -> None:
        self._running -= 1
        self._held[probe.job.endpoint] -= 1
        self._pump(probe.job.endpoint, probe.job.cap)

    def discard(self, probe: _Probe) -> None:
        """A cancelled probe that has not been given its slots gives up its place."""
        endpoint = probe.job.endpoint
        if probe in self._ready:
            self._ready.remove(probe)
            self._held[endpoint] -= 1
            self._pump(endpoint, probe.job.cap)
        elif probe in self._waiting.get(endpoint, ()):
            self._waiting[endpoint].remove(probe)

    def _pump(self, endpoint: str, cap: int) -> None:
        waiting = self._waiting.get(endpoint)
        while waiting and self._held.get(endpoint, 0) < cap:
            self._held[endpoint] = self._held.get(endpoint, 0) + 1
            self._ready.append(waiting.popleft())
        while self._ready and self._running < self._overall:
            self._running += 1
            self._go(self._ready.popleft())


class _Out:
    """Writes to the engine on a thread of its own: a pipe write can take a millisecond (it wakes the engine's
    reader), which on the loop would be added to the requests being timed. The GIL is let go while it writes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="out", daemon=True).start()

    def write(self, data: bytes) -> None:
        self._queue.put(data)

    def _run(self) -> None:
        try:
            while True:
                data = memoryview(self._queue.get())
                while data:
                    data = data[os.write(self._fd, data) :]
        except OSError:  # the engine's end is closed: nobody is left to read a result
            os._exit(0)


async def serve(max_concurrency: int, jobs: int, out: int) -> None:
    """Read frames from fd `jobs` until its end; write results to fd `out`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_META)
    seen: dict[Any, Any] = {}  # the texts and headers of the jobs read so far, each kept once (Job.of)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(jobs, "rb", 0))
    cap = descriptor_cap()
    prober = Prober(_Out(out), max_concurrency if cap is None else min(max_concurrency, cap), cap)
    try:
        while True:
            size, blob_size = HEAD.unpack(await reader.readexactly(HEAD.size))
            if size > MAX_META or blob_size > MAX_BLOB:
                return
            meta = json.loads(await reader.readexactly(size))
            blob = await reader.readexactly(blob_size)
            if meta["kind"] == "probe":
                prober.take(Job.of(meta, blob, seen))
                if prober.tasks:  # requests are being timed: each reply they get waits for one job at most
                    await asyncio.sleep(0)
            elif meta["kind"] == "go":
                prober.go()
            elif meta["kind"] == "cancel":
                prober.cancel(meta["id"])
    except asyncio.IncompleteReadError:  # the engine closed our stdin, or died: nothing more to do
        return
    finally:
        for task in list(prober.tasks.values()):
            task.cancel()
        await prober.close()


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    max_concurrency = int(sys.argv[1])
    # Results go out on a copy of stdout; stdout and stderr themselves point nowhere, so that no stray print
    # (ours or a library's) can corrupt a frame or show a secret.
    out = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    grow_descriptor_table(max_concurrency)  # before the first thread starts
    try:
        asyncio.run(serve(max_concurrency, 0, out))
    except BaseException:  # whatever ended us, the engine sees the pipe close and says so
        os._exit(70)
    os._exit(0)


if __name__ == "__main__":
    main()
