"""Read an SSE stream: integrity, the assembled reply and its timings. Each model type names its stream format
(a StreamReply subclass, in types/stream_format.py) that the events are folded into.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ErrorClass, ProbeError
from ..reply import carries_error, load_json, media_type, said_in_body
from ..types.stream_format import StreamReply
from .exchange import MAX_ERROR_BODY_BYTES, STREAM, Clock, body_chunks, read_body

if TYPE_CHECKING:
    import aiohttp

MAX_EVENTS = 100_000
MAX_STREAM_BYTES = 8 * 1024 * 1024


@dataclass
class RawStream:
    """The body's chunks as they came, each stamped with its arrival (seconds since send).

    Only the bytes are taken on the loop; SSE decoding and JSON parsing happen in assemble(), after the clock has
    stopped and off the loop that is timing every other request."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)


async def read_stream(
    response: aiohttp.ClientResponse, clock: Clock, ends: Callable[[bytes], bool] = StreamReply.ends
) -> RawStream:
    """The stream's chunks, stamped, up to the one its format says ends it (`ends`) or the server's close."""
    clock.phase = STREAM
    content_type = media_type(response.headers)
    if content_type != "text/event-stream":
        raise await _not_a_stream(response, clock, content_type)
    raw = RawStream()
    async for chunk in body_chunks(response, clock, MAX_STREAM_BYTES, over=ErrorClass.STREAM_BROKEN):
        raw.chunks.append((clock.elapsed(), chunk))
        if ends(chunk):  # the stream is complete: do not wait for the server to close it
            break
    return raw


async def _not_a_stream(response: aiohttp.ClientResponse, clock: Clock, content_type: str) -> ProbeError:
    """A plain body where a stream was asked for: in the server's words when it is an error object (a server that
    refuses a streamed request answers JSON, often with a 200)."""
    said = None
    if "json" in content_type:
        try:
            said = said_in_body(await read_body(response, clock, MAX_ERROR_BODY_BYTES))
        except ProbeError:  # too big or unreadable: the content-type alone says what went wrong
            said = None
    got = f"asked for a stream, got content-type {content_type or '(none)'}"
    if said is None or said.words is None:
        return ProbeError(ErrorClass.BAD_RESPONSE, got)
    return ProbeError(ErrorClass.QUOTA if said.quota else ErrorClass.BAD_RESPONSE, f"{got}: {said.words}")


# SSE ends a line at CRLF, CR or LF (WHATWG HTML, "event stream interpretation").
LINE_END = re.compile(r"\r\n|\r|\n")


def _lines(raw: RawStream) -> Iterator[tuple[float, str]]:
    """The stream's lines, each with the arrival of the chunk that completed it; a line that came in many chunks
    is joined once, and a CRLF split between two chunks is one line end."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    head: list[str] = []
    after_cr = False
    now = 0.0
    for now, chunk in raw.chunks:
        text = decoder.decode(chunk)
        if after_cr and text:
            text, after_cr = text.removeprefix("\n"), False
        after_cr = after_cr or text.endswith("\r")
        *ended, rest = LINE_END.split(text)
        for piece in ended:
            head.append(piece)
            yield now, "".join(head)
            head = []
        head.append(rest)
    tail = "".join(head) + decoder.decode(b"", final=True)
    if tail:
        yield now, tail


def _events(raw: RawStream) -> Iterator[tuple[float, str, str]]:
    """(arrival, event name, data) per SSE event, and as `error` events the two ways servers put an error in an
    event stream that an SSE parser drops: an `error:` field line (llama.cpp's server before 2024) and a bare JSON
    line without `data:` (Ollama's OpenAI layer). An event not ended by a blank line is dropped, as SSE says."""
    name = ""
    data: list[str] = []
    for now, line in _lines(raw):
        field, colon, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if not line:
            if name or data:
                yield now, name, "\n".join(data)
            name, data = "", list[str]()
        elif field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "error" and colon:
            yield now, "error", value
        elif line.startswith("{") and _is_error(line):
            yield now, "error", line


def _is_error(line: str) -> bool:
    try:
        return carries_error(load_json(line, "line"))
    except ProbeError:
        return False


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
