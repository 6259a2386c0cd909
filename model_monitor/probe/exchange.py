"""The one timing and error core: send a request, time it to the last byte, and turn every fault into a ProbeError.

Every probe type goes through `timed()`. The clock starts just before the request is handed to the transport
(after any wait for a concurrency slot, which is ours and not the endpoint's) and stops when the reply's last
byte or event has been read. One asyncio deadline covers the whole exchange, so a server that trickles bytes
cannot hold a case past its timeout.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from ..errors import ErrorClass, ProbeError, status_class
from ..reply import Said, Timed, one_line, said_in_body
from .retry import retry_after

if TYPE_CHECKING:  # aiohttp is loaded with the first session (transport.py): a process that never probes never loads it
    import aiohttp

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_ERROR_BODY_BYTES",
    "MAX_PIECES",
    "STREAM",
    "Clock",
    "Sent",
    "body_chunks",
    "classify",
    "read_body",
    "timed",
]

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
ERROR_BODY_WAIT_S = 2.0  # how long an error status waits for its body's message: the status alone decides the class
# Content codings we undo (what we send in Accept-Encoding), as zlib window bits; and how many may be stacked.
CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ACCEPT_ENCODING = "gzip, deflate"
MAX_CODINGS = 3
INFLATE_STEP = 64 * 1024  # no decoding layer hands on more than this at once
MAX_PIECES = 100_000  # network chunks per reply: a server that drips one byte per packet costs no more than this
# What the monitor's own process ran out of, by errno: its fault, never the endpoint's.
EXHAUSTED = {errno.EMFILE: "file descriptors", errno.ENFILE: "file descriptors", errno.ENOMEM: "memory"}

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


@dataclass(frozen=True, slots=True)
class Sent:
    """A request as it goes on the wire: built before any clock starts, sent again as it is on a retry."""

    method: str
    url: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    proxy: str | None = None  # the proxy's URL; aiohttp sends the credentials it holds as Proxy-Authorization


async def timed(
    session: aiohttp.ClientSession,
    request: Sent,
    timeout: float,
    consume: Callable[[aiohttp.ClientResponse, Clock], Awaitable[T]],
) -> Timed:
    """Send `request`, let `consume` read the reply, and time it all under one deadline.

    Straight to aiohttp, whose session keeps no cookies and follows no redirects here: nothing else runs on the
    loop that times every other request."""
    clock = Clock(start=time.monotonic(), host=urlsplit(request.url).hostname or "")
    try:
        try:
            async with asyncio.timeout(timeout):
                response = await session.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    data=request.body or None,
                    allow_redirects=False,
                    proxy=request.proxy,
                )
                ttfb = clock.elapsed()
                try:
                    if not 200 <= response.status < 300:
                        raise await _status_error(response, request, clock)
                    clock.phase = BODY
                    value = await consume(response, clock)
                finally:
                    response.release()  # a reply not read to its end closes its connection
        except TimeoutError:
            raise ProbeError(ErrorClass.TIMEOUT, f"no complete reply within {timeout:g} s ({clock.phase})") from None
        except ProbeError:
            raise
        except Exception as exc:  # whatever a server makes the HTTP stack raise, the case gets a class and one line
            raise classify(exc, clock) from None
    except ProbeError as error:
        if error.duration is None:
            error.duration = clock.elapsed()
        raise
    duration = clock.elapsed()
    # The headers as their bytes came (latin-1 keeps every byte), for the engine to read as the server wrote them.
    headers = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers)
    return Timed(value, response.status, headers, duration=duration, ttfb=ttfb)


async def read_body(response: aiohttp.ClientResponse, clock: Clock, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole decoded body, refused past `limit` bytes so that a huge or inflating reply cannot exhaust memory."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"reply of {int(declared)} bytes exceeds the {_mib(limit)} cap (headers after {clock.elapsed():.3f} s)",
        )
    body = bytearray()
    async for chunk in body_chunks(response, clock, limit):
        body += chunk
    return bytes(body)


async def body_chunks(
    response: aiohttp.ClientResponse, clock: Clock, limit: int, over: ErrorClass = ErrorClass.BAD_RESPONSE
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, with its Content-Encoding undone in bounded steps.

    The cap counts decoded bytes, so a few KB of stacked gzip cannot grow into gigabytes: decoding stops as soon
    as the cap is passed, and no layer ever inflates more than INFLATE_STEP bytes at once."""
    layers = _decoders(response.headers)
    size = pieces = 0
    async for raw in response.content.iter_any():
        pieces += 1
        if pieces > MAX_PIECES:
            raise ProbeError(over, f"reply arrived in more than {MAX_PIECES} pieces after {clock.elapsed():.3f} s")
        for chunk in _inflate(layers, raw):
            size += len(chunk)
            if size > limit:
                what = "decoded reply" if layers else "reply"
                raise ProbeError(over, f"{what} exceeds the {_mib(limit)} cap after {clock.elapsed():.3f} s")
            yield chunk


def _decoders(headers: CIMultiDictProxy[str]) -> list[Any]:
    """One zlib decoder per coding, outermost first (codings are listed in the order they were applied)."""
    codings = [c.strip().lower() for value in headers.getall("content-encoding", ()) for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > MAX_CODINGS:
        raise ProbeError(
            ErrorClass.BAD_RESPONSE, f"Content-Encoding stacks {len(codings)} codings (at most {MAX_CODINGS})"
        )
    unknown = [c for c in codings if c not in CODINGS]
    if unknown:
        raise ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"unsupported Content-Encoding {one_line(unknown[0], 40)!r} (we accept {ACCEPT_ENCODING})",
        )
    return [zlib.decompressobj(CODINGS[c]) for c in reversed(codings)]


def _inflate(layers: list[Any], data: bytes) -> Iterator[bytes]:
    """Push `data` through the decoders, each handing on at most INFLATE_STEP bytes at a time."""
    if not layers:
        if data:
            yield data
        return
    first, rest = layers[0], layers[1:]
    while data:
        if first.eof:
            raise ProbeError(ErrorClass.BAD_RESPONSE, "reply body has data after the end of its compressed stream")
        try:
            piece = first.decompress(data, INFLATE_STEP)
        except zlib.error as exc:
            raise ProbeError(
                ErrorClass.BAD_RESPONSE, f"reply body could not be decoded ({one_line(str(exc), 80)})"
            ) from None
        data = first.unconsumed_tail
        yield from _inflate(rest, piece)


async def _status_error(response: aiohttp.ClientResponse, request: Sent, clock: Clock) -> ProbeError:
    """A non-2xx reply: its class comes from the status, and from the body only where it says a budget is spent
    (a 429 that is no rate limit)."""
    status = response.status
    where = f"{request.method} {urlsplit(request.url).path}"
    if 300 <= status < 400:
        return ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"HTTP {status} redirect from {where} to {_location(response)} "
            f"after {clock.elapsed():.3f} s (not followed)",
            status_code=status,
        )
    said = Said(None)
    clock.phase = BODY
    try:
        async with asyncio.timeout(ERROR_BODY_WAIT_S):
            said = said_in_body(await read_body(response, clock, MAX_ERROR_BODY_BYTES))
    except Exception:  # the server's words are a bonus: an unreadable error body changes nothing about the status
        said = Said(None)
    message = f"HTTP {status} from {where} after {clock.elapsed():.3f} s" + (f": {said.words}" if said.words else "")
    return ProbeError(
        status_class(status, said.quota),
        message,
        status_code=status,
        retry_after=retry_after(response.headers.get("retry-after")),
    )


def _location(response: aiohttp.ClientResponse) -> str:
    """Where a redirect points, without userinfo, query or fragment (they may carry credentials)."""
    raw = response.headers.get("location", "")
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"an unparsable Location ({len(raw)} chars)"
    if not parts.scheme and not host:
        return one_line(parts.path, 120) or "(no Location)"
    host = f"[{host}]" if ":" in host else host
    return one_line(f"{parts.scheme}://{host}{port}{parts.path}", 120)


def classify(exc: BaseException, clock: Clock) -> ProbeError:
    """Map a transport error (aiohttp's) to our class, with the phase and elapsed time.

    The HTTP library's own wording stays out where it misleads: aiohttp words a body that breaks its framing as
    `400, message: ...`, which reads like an HTTP 400 when the server answered 200."""
    # Imported here, not at the top: a process that never probes (collection, a config error, the xdist
    # controller) would pay ~140 ms for aiohttp; one that probes has it loaded already by its transport.
    import aiohttp
    from aiohttp.http_exceptions import HttpProcessingError

    after = f"after {clock.elapsed():.3f} s"
    causes = _chain(exc)
    if (exhausted := _exhausted(causes)) is not None:
        return ProbeError(ErrorClass.RESOURCES, f"{exhausted} {after}: the monitor's fault, not the endpoint's")
    if any(isinstance(c, (aiohttp.ClientConnectorDNSError, socket.gaierror)) for c in causes):
        return ProbeError(ErrorClass.DNS, f"cannot resolve host {clock.host!r} {after}")
    if any(isinstance(c, (ssl.SSLError, aiohttp.ClientSSLError, ssl.CertificateError)) for c in causes):
        return ProbeError(ErrorClass.TLS, f"TLS handshake failed: {_text(causes)} {after}")
    if any(isinstance(c, (aiohttp.ClientConnectorError, ConnectionRefusedError)) for c in causes):
        return ProbeError(ErrorClass.CONNECT, f"cannot connect: {_text(causes)} {after}")
    if any(isinstance(c, aiohttp.ServerTimeoutError) for c in causes):
        return ProbeError(ErrorClass.TIMEOUT, f"socket timed out {clock.phase} {after}")
    broken = ErrorClass.STREAM_BROKEN if clock.phase == STREAM else ErrorClass.BAD_RESPONSE
    if any(isinstance(c, aiohttp.ClientPayloadError) for c in causes):  # the connection closed mid-body
        return ProbeError(broken, f"connection lost {clock.phase} before the body was complete {after}")
    framing = next((c for c in causes if isinstance(c, HttpProcessingError)), None)
    if framing is not None:
        detail = one_line(framing.message.partition("\n")[0].rstrip(":"), 100) or "unparsable"
        # aiohttp parses the headers and the first body bytes in one go: a broken chunk size is still the body's.
        phase = BODY if clock.phase == HEADERS and "chunk" in detail.lower() else clock.phase
        return ProbeError(broken, f"malformed HTTP reply {phase}: {detail} {after}")
    if not any(isinstance(c, (aiohttp.ClientError, OSError)) for c in causes):
        return ProbeError(ErrorClass.BAD_RESPONSE, f"unreadable reply {clock.phase} ({type(exc).__name__}) {after}")
    if clock.phase == HEADERS:
        return ProbeError(ErrorClass.CONNECT, f"connection lost {clock.phase}: {_text(causes)} {after}")
    return ProbeError(broken, f"connection lost {clock.phase}: {_text(causes)} {after}")


def _exhausted(causes: list[BaseException]) -> str | None:
    """What the monitor's own process ran out of, said as such (EMFILE reads like a refused connection)."""
    for cause in causes:
        if isinstance(cause, MemoryError):
            return "the monitor ran out of memory"
        if isinstance(cause, OSError) and cause.errno in EXHAUSTED:
            name = errno.errorcode[cause.errno]
            return f"the monitor ran out of {EXHAUSTED[cause.errno]} ({name}: {cause.strerror or name})"
    return None


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


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"
