"""The one timing and error core: send a request, time it to the last byte, and turn every fault into a ProbeError.

Every probe type goes through `timed()`. The clock starts just before the request is handed to the transport
(after any wait for a concurrency slot, which is ours and not the endpoint's) and stops when the reply's last
byte or event has been read. One asyncio deadline covers the whole exchange, so a server that trickles bytes
cannot hold a case past its timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx

from .errors import ErrorClass, ProbeError, status_class

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_SERVER_MESSAGE = 200

T = TypeVar("T")

# What the exchange was doing when it broke: the reason names it.
HEADERS = "waiting for response headers"
BODY = "reading the body"
STREAM = "reading the stream"


@dataclass
class Clock:
    """Monotonic time since the request was sent, and which phase the exchange is in."""

    start: float
    host: str = ""
    phase: str = HEADERS

    def elapsed(self) -> float:
        return time.monotonic() - self.start


@dataclass(frozen=True)
class Timed:
    """A completed exchange: what the consumer returned, the status, headers and the measured duration."""

    value: Any
    status_code: int
    headers: httpx.Headers
    duration: float


async def timed(
    transport: httpx.AsyncBaseTransport,
    request: httpx.Request,
    timeout: float,
    consume: Callable[[httpx.Response, Clock], Awaitable[T]],
) -> Timed:
    """Send `request`, let `consume` read the reply, and time it all under one deadline.

    Straight to the transport: an AsyncClient's cookie jar, auth and redirect machinery would only add work
    to the loop that times every other request (we follow no redirects and keep no cookies).
    """
    clock = Clock(start=time.monotonic(), host=request.url.host)
    try:
        try:
            async with asyncio.timeout(timeout):
                response = await transport.handle_async_request(request)
                try:
                    if not 200 <= response.status_code < 300:
                        raise await _status_error(response, request, clock)
                    clock.phase = BODY
                    value = await consume(response, clock)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise ProbeError(ErrorClass.TIMEOUT, f"no complete reply within {timeout:g} s ({clock.phase})") from None
        except (httpx.HTTPError, aiohttp.ClientError, OSError) as exc:
            raise classify(exc, clock) from None
    except ProbeError as error:
        if error.duration is None:
            error.duration = clock.elapsed()
        raise
    return Timed(value=value, status_code=response.status_code, headers=response.headers, duration=clock.elapsed())


async def read_body(response: httpx.Response, clock: Clock, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, refused past `limit` bytes so that a huge reply cannot exhaust memory."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"reply of {int(declared)} bytes exceeds the {_mib(limit)} cap (headers after {clock.elapsed():.3f} s)",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ProbeError(ErrorClass.BAD_RESPONSE, f"reply exceeds the {_mib(limit)} cap after {clock.elapsed():.3f} s")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(reply: Timed) -> Any:
    """A read body as JSON; an HTML login page or other non-JSON reply is a bad_response naming what came instead."""
    body: bytes = reply.value
    content_type = reply.headers.get("content-type", "").partition(";")[0].strip().lower()
    if "json" not in content_type:
        title = _html_title(body)
        what = f"HTML page {title!r}" if title else f"{len(body)} bytes"
        raise ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"HTTP {reply.status_code} with content-type {content_type or '(none)'}, expected JSON: {what}",
        )
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"reply is not valid JSON ({exc.msg} at byte {exc.pos})") from None


def server_message(data: Any) -> str | None:
    """The error text an OpenAI-style error body carries, if any, on one line and cut short."""
    if not isinstance(data, dict):
        return None
    error = data.get("error", data.get("detail", data.get("message")))
    if isinstance(error, dict):
        error = error.get("message", error.get("msg"))
    if not isinstance(error, str) or not error.strip():
        return None
    return one_line(error, MAX_SERVER_MESSAGE)


def one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (only the delta form; an HTTP date is rare from model servers)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


async def _status_error(response: httpx.Response, request: httpx.Request, clock: Clock) -> ProbeError:
    status = response.status_code
    where = f"{request.method} {request.url.path}"
    if 300 <= status < 400:
        location = httpx.URL(response.headers.get("location", "")).copy_with(query=None, fragment=None)
        return ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"HTTP {status} redirect from {where} to {location} after {clock.elapsed():.3f} s (not followed)",
            status_code=status,
        )
    try:
        clock.phase = BODY
        body = await read_body(response, clock, MAX_ERROR_BODY_BYTES)
        said = server_message(json.loads(body))
    except (ProbeError, ValueError, httpx.HTTPError):
        said = None
    message = f"HTTP {status} from {where} after {clock.elapsed():.3f} s" + (f": {said}" if said else "")
    return ProbeError(status_class(status), message, status_code=status, retry_after=retry_after(response))


def classify(exc: BaseException, clock: Clock) -> ProbeError:
    """Map a transport error (httpx, or aiohttp beneath it) to our class, with the phase and elapsed time."""
    after = f"after {clock.elapsed():.3f} s"
    causes = _chain(exc)
    if any(isinstance(c, (aiohttp.ClientConnectorDNSError, socket.gaierror)) for c in causes):
        return ProbeError(ErrorClass.DNS, f"cannot resolve host {clock.host!r} {after}")
    if any(isinstance(c, (ssl.SSLError, aiohttp.ClientSSLError, ssl.CertificateError)) for c in causes):
        return ProbeError(ErrorClass.TLS, f"TLS handshake failed: {_text(causes)} {after}")
    if any(isinstance(c, httpx.DecodingError) for c in causes):
        return ProbeError(ErrorClass.BAD_RESPONSE, f"reply body could not be decoded ({_text(causes)}) {after}")
    if any(isinstance(c, (aiohttp.ClientConnectorError, ConnectionRefusedError, httpx.ConnectError)) for c in causes):
        return ProbeError(ErrorClass.CONNECT, f"cannot connect: {_text(causes)} {after}")
    if any(isinstance(c, aiohttp.ServerTimeoutError) for c in causes):
        return ProbeError(ErrorClass.TIMEOUT, f"socket timed out {clock.phase} {after}")
    if clock.phase == HEADERS:
        return ProbeError(ErrorClass.CONNECT, f"connection lost {clock.phase}: {_text(causes)} {after}")
    broken = ErrorClass.STREAM_BROKEN if clock.phase == STREAM else ErrorClass.BAD_RESPONSE
    return ProbeError(broken, f"connection lost {clock.phase}: {_text(causes)} {after}")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out and len(out) < 8:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _text(causes: list[BaseException]) -> str:
    """The most specific description in the chain: the innermost exception with a message."""
    for cause in reversed(causes):
        text = one_line(str(cause), 160)
        if text:
            return text
    return type(causes[-1]).__name__


def _html_title(body: bytes) -> str | None:
    match = re.search(rb"<title[^>]*>(.*?)</title>", body[:8192], re.IGNORECASE | re.DOTALL)
    return one_line(match.group(1).decode("utf-8", "replace"), 60) if match else None


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"
