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
import os
import resource
import signal
import ssl
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from ..case import Endpoint
from ..errors import ErrorClass, ProbeError
from ..outcome import Attempt
from ..types.stream_format import StreamReply
from .exchange import read_body, timed
from .retry import backoff
from .stream import read_stream
from .transport import transport_for
from .wire import HEAD, MAX_BLOB, MAX_META, Job, encode_failed, encode_result, frame

if TYPE_CHECKING:
    from httpx_aiohttp import AiohttpTransport

__all__ = ["DESCRIPTOR_RESERVE", "descriptor_cap"]

# File descriptors kept for what is not a probe: the pipes to the engine, the interpreter's own files.
DESCRIPTOR_RESERVE = 24
STREAM_FORMATS = "model_monitor.types."  # where a stream format named by a Job may come from


class Prober:
    """Runs the Jobs read from the engine under the global cap and each endpoint's, and reports on each."""

    def __init__(self, out: asyncio.WriteTransport, max_concurrency: int) -> None:
        self._out = out
        self._overall = asyncio.Semaphore(max_concurrency)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._transports: dict[str, AiohttpTransport] = {}
        self._tls: dict[bool, ssl.SSLContext] = {}
        self._ends: dict[str, Callable[[bytes], bool]] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def start(self, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(job))
        self.tasks[job.id] = task
        task.add_done_callback(lambda _: self.tasks.pop(job.id, None))

    def cancel(self, case: int) -> None:
        if (task := self.tasks.get(case)) is not None:
            task.cancel()

    async def _guarded(self, job: Job) -> None:
        """Every Job gets its answer: a fault of ours fails its case with one line instead of leaving it unanswered."""
        try:
            await self._run(job)
        except Exception as exc:
            error = ProbeError(
                ErrorClass.CRASHED, f"the probing process could not run this case ({type(exc).__name__})"
            )
            self._out.write(encode_failed(job.id, [], time.time(), time.time(), error))

    async def _run(self, job: Job) -> None:
        """Attempts until one completes or a failure is not worth retrying (judging a reply never is).

        A server that asks for a longer wait than the case has left is taken at its word: the case fails at
        once and says so, rather than asking again sooner than it was told."""
        request = httpx.Request(job.method, job.url, headers=job.headers, content=job.body)
        request.extensions["timeout"] = httpx.Timeout(job.timeout).as_dict()
        transport, consume = self._transport(job), self._consumer(job.stream)
        attempts: list[Attempt] = []
        started, first = time.monotonic(), None
        while True:
            async with self._slot(job):
                sent = time.time()
                first = first or sent
                self._out.write(frame({"kind": "sent", "id": job.id, "wall": sent, "at": time.monotonic()}))
                try:
                    result = await timed(transport, request, job.timeout, consume)
                    self._out.write(encode_result(job.id, attempts, first, sent + result.duration, result))
                    return
                except ProbeError as error:
                    failure = error
            attempts.append(Attempt(failure.error_class.value, failure.status_code, failure.duration or 0.0))
            ended = sent + (failure.duration or 0.0)
            wait, asked = backoff(len(attempts), failure.retry_after), failure.retry_after
            if not failure.error_class.transient or len(attempts) > job.retries:
                self._out.write(encode_failed(job.id, attempts, first, ended, failure))
                return
            if asked is not None and time.monotonic() - started + wait + job.timeout > job.budget:
                failure.message += (
                    f"; server asks to retry after {asked:.0f} s, beyond this case's {job.budget:g} s budget"
                )
                self._out.write(encode_failed(job.id, attempts, first, ended, failure))
                return
            self._out.write(frame({"kind": "wait", "id": job.id}))
            await asyncio.sleep(wait)

    def _slot(self, job: Job) -> _Slots:
        return _Slots(self._slots.setdefault(job.endpoint, asyncio.Semaphore(job.cap)), self._overall)

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

    def _transport(self, job: Job) -> AiohttpTransport:
        """One connection pool per endpoint, sharing one TLS context per verify setting, through any proxy that
        HTTP(S)_PROXY / NO_PROXY name for it."""
        transport = self._transports.get(job.endpoint)
        if transport is None:
            if job.verify_tls not in self._tls:
                self._tls[job.verify_tls] = httpx.create_ssl_context(verify=job.verify_tls)
            endpoint = Endpoint(job.endpoint, job.base_url, verify_tls=job.verify_tls, max_concurrency=job.cap)
            transport = self._transports[job.endpoint] = transport_for(endpoint, self._tls[job.verify_tls])
        return transport

    async def close(self) -> None:
        await asyncio.gather(*(t.aclose() for t in self._transports.values()), return_exceptions=True)


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


class _Gone(asyncio.Protocol):
    """The engine's end of our stdout closed: nobody is left to read a result."""

    def connection_lost(self, exc: Exception | None) -> None:
        os._exit(0)


async def serve(max_concurrency: int, jobs: int, out: int) -> None:
    """Read frames from fd `jobs` until its end; write results to fd `out`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_META)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(jobs, "rb", 0))
    writer, _ = await loop.connect_write_pipe(_Gone, os.fdopen(out, "wb", 0))
    cap = descriptor_cap()
    prober = Prober(writer, max_concurrency if cap is None else min(max_concurrency, cap))
    try:
        while True:
            size, blob_size = HEAD.unpack(await reader.readexactly(HEAD.size))
            if size > MAX_META or blob_size > MAX_BLOB:
                return
            meta = json.loads(await reader.readexactly(size))
            blob = await reader.readexactly(blob_size)
            if meta["kind"] == "probe":
                prober.start(Job.of(meta, blob))
            elif meta["kind"] == "cancel":
                prober.cancel(meta["id"])
    except asyncio.IncompleteReadError:  # the engine closed our stdin, or died: nothing more to do
        return
    finally:
        for task in list(prober.tasks.values()):
            task.cancel()
        await prober.close()


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
    try:
        asyncio.run(serve(max_concurrency, 0, out))
    except BaseException:  # whatever ended us, the engine sees the pipe close and says so
        os._exit(70)
    os._exit(0)


if __name__ == "__main__":
    main()
