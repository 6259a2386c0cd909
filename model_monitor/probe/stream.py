"""Read an SSE stream: integrity, the assembled reply and its timings. Each model type names its stream format
(a StreamReply subclass, in types/stream_format.py) that the events are folded into.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
from httpx_sse import EventSource

from ..errors import ErrorClass, ProbeError
from ..reply import media_type
from ..types.stream_format import StreamReply
from .exchange import STREAM, Clock, body_chunks

MAX_EVENTS = 100_000
MAX_STREAM_BYTES = 8 * 1024 * 1024


@dataclass
class RawStream:
    """The body's chunks as they came, each stamped with its arrival (seconds since send).

    Only the bytes are taken on the loop; SSE decoding and JSON parsing happen in assemble(), after the clock has
    stopped and off the loop that is timing every other request."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)


async def read_stream(
    response: httpx.Response, clock: Clock, ends: Callable[[bytes], bool] = StreamReply.ends
) -> RawStream:
    """The stream's chunks, stamped, up to the one its format says ends it (`ends`) or the server's close."""
    clock.phase = STREAM
    content_type = media_type(response.headers)
    if content_type != "text/event-stream":
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"asked for a stream, got content-type {content_type or '(none)'}")
    raw = RawStream()
    async for chunk in body_chunks(response, clock, MAX_STREAM_BYTES, over=ErrorClass.STREAM_BROKEN):
        raw.chunks.append((clock.elapsed(), chunk))
        if ends(chunk):  # the stream is complete: do not wait for the server to close it
            break
    return raw


class _Replay(httpx.SyncByteStream):
    """Replays recorded chunks through httpx-sse, remembering when the chunk being decoded arrived."""

    def __init__(self, chunks: list[tuple[float, bytes]]) -> None:
        self._chunks = chunks
        self.now = 0.0

    def __iter__(self) -> Iterator[bytes]:
        for now, chunk in self._chunks:
            self.now = now
            yield chunk


def _events(raw: RawStream) -> Iterator[tuple[float, str, str]]:
    """(arrival, event name, data) per SSE event, decoded by httpx-sse from the recorded chunks."""
    replay = _Replay(raw.chunks)
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=replay)
    for event in EventSource(response).iter_sse():
        yield replay.now, event.event, event.data


def assemble(raw: RawStream, duration: float, reply: StreamReply) -> StreamReply:
    """Fold a complete read into `reply` (the type's stream format); each way a stream can break is its own
    stream_broken (or empty) reason."""
    for now, name, data in _events(raw):
        reply.events += 1
        reply.take(name, data, now)
        if reply.done:
            break
        if reply.events >= MAX_EVENTS:
            raise ProbeError(ErrorClass.STREAM_BROKEN, f"stream exceeded {MAX_EVENTS} events")
    reply.finish(f"after {reply.events} events and {duration:.3f} s")
    return reply
