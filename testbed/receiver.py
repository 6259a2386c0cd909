"""Receiver: a loopback telemetry endpoint (Cronitor/Healthchecks stand-in) that records pings."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import threading
import time
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qs

from aiohttp import web

from testbed._runner import BackgroundServer

HUGE_BYTES = 100 * 2**20
BOMB_BYTES = 2**30
MODES = ("ok", "status", "hang", "slow", "fail_first", "limit_first", "huge", "gzipbomb", "drip", "redirect")
RETRY_AFTER_S = 1  # what every 429 asks


@functools.cache
def gzip_bomb() -> bytes:
    """1 GiB of zeros gzipped twice: about 12 KB on the wire, for `Content-Encoding: gzip, gzip`."""
    inner = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    zeros = bytes(2**20)
    once = b"".join(inner.compress(zeros) for _ in range(BOMB_BYTES // len(zeros))) + inner.flush()
    return gzip.compress(once)


@dataclass
class Ping:
    """One request as the receiver saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str]
    time: float


class Receiver(BackgroundServer):
    """Records every request; `mode` is "ok", "status=CODE", "hang", "slow=S", "fail_first=N" (503s),
    "limit_first=N" (429s with Retry-After, as a rate-limited heartbeat service answers), "redirect" (a 307), or a
    hostile 200: "huge" (a 100 MiB body), "gzipbomb" (1 GiB of zeros behind `Content-Encoding: gzip, gzip`) or
    "drip=S" (one byte every S seconds)."""

    def __init__(self, mode: str = "ok", *, port: int = 0, tls: bool = False) -> None:
        super().__init__(port=port, tls=tls)
        name, _, value = mode.partition("=")
        if name not in MODES:
            raise ValueError(f"unknown receiver mode {mode!r}")
        self.mode = mode
        self._name, self._value = name, float(value or 0)
        self.pings: list[Ping] = []
        self._lock = threading.Lock()

    def pings_for(self, path: str) -> list[Ping]:
        """Recorded requests to one path."""
        with self._lock:
            return [p for p in self.pings if p.path == path]

    def clear(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.pings.clear()

    def build_app(self) -> web.Application:
        """One catch-all route."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Record on arrival, then answer according to the mode."""
        arrived = time.monotonic()
        body = await request.read()
        ping = Ping(
            request.method,
            request.path,
            parse_qs(request.query_string, keep_blank_values=True),
            body,
            {k.lower(): v for k, v in request.headers.items()},
            arrived,
        )
        with self._lock:
            self.pings.append(ping)
            count = len(self.pings)
        if self._name == "hang":
            await asyncio.Event().wait()
        if self._name == "slow":
            await asyncio.sleep(self._value)
        if self._name == "huge":
            return await self._huge(request)
        if self._name == "drip":
            return await self._drip(request)
        if self._name == "redirect":  # a proxy or a moved endpoint: the reply says to go elsewhere
            return web.Response(status=307, headers={"Location": f"{request.path}?moved=1"})
        if self._name == "gzipbomb":
            return web.Response(
                body=gzip_bomb(), headers={"Content-Encoding": "gzip, gzip", "Content-Type": "text/plain"}
            )
        status = 200
        if self._name == "status":
            status = int(self._value)
        elif self._name == "fail_first" and count <= self._value:
            status = 503
        elif self._name == "limit_first" and count <= self._value:
            status = 429
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
        if status == 200 and request.method == "PUT" and request.path == "/api/monitors":
            try:
                monitors = json.loads(body)
            except ValueError:
                return web.json_response({"errors": ["invalid JSON"]}, status=400)
            return web.json_response(monitors)
        return web.Response(status=status, text="OK" if status == 200 else f"error {status}", headers=headers)

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        """A 200 whose 64-byte body comes one byte every `drip=S` seconds: no read waits long enough to time out."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain", "Content-Length": "64"})
        await response.prepare(request)
        try:
            for _ in range(64):
                await response.write(b"x")
                await asyncio.sleep(self._value)
        except ConnectionError:
            pass
        return response

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """Stream HUGE_BYTES of text, stopping quietly when the client hangs up (a capped client does)."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain", "Content-Length": str(HUGE_BYTES)})
        await response.prepare(request)
        chunk = b"x" * 2**20
        try:
            for _ in range(HUGE_BYTES // len(chunk)):
                await response.write(chunk)
        except ConnectionError:
            pass
        return response
