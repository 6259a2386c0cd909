"""What every model type module provides, and the helpers their checks share."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from ..probe.exchange import Timed, parse_json, server_message
from ..probe.stream import ChunkReply, StreamReply

__all__ = ["STREAM_FIELDS", "Checked", "ModelType", "Multipart", "finite", "first_choice", "listed", "stream_fields"]

# The fields every streaming type has: its reply can be read as an SSE stream, and its text checked by `expect`.
STREAM_FIELDS: Mapping[str, Any] = {"stream": False, "expect": {}}


@dataclass(frozen=True)
class Checked:
    """A healthy reply: what to say about it, and the visible text that `expect` looks at (None: no text)."""

    summary: str
    text: str | None = None


@dataclass(frozen=True)
class Multipart:
    """A multipart/form-data request body (an audio file to transcribe): form fields and files."""

    data: Mapping[str, str]
    files: Mapping[str, tuple[str, bytes, str]]  # field -> (file name, content, content type)


@dataclass(frozen=True)
class ModelType:
    """One model type: its own fields with their defaults, the request it sends, and its check of the reply.

    A streamed reply is folded by the type's stream format into the same shape as a JSON body
    (stream.StreamReply.body), so one check serves both."""

    name: str
    method: str
    path: str
    fields: Mapping[str, Any]
    body: Callable[[Case], dict[str, Any] | Multipart | None]  # a JSON body, a multipart one, or none (GET)
    check: Callable[[Case, Any], Checked]
    parse: Callable[[Timed], Any] = parse_json  # how a plain reply is read: JSON, or the bytes for audio
    stream_format: type[StreamReply] = ChunkReply  # how a streamed reply is folded into that body
    tags: frozenset[str] = frozenset()  # the request fields that can mark a probe (`metadata`, `user`) its API accepts
    operation: str | None = None  # OpenTelemetry's gen_ai.operation.name for it; None: the type's own name

    @property
    def streams(self) -> bool:
        return "stream" in self.fields


def stream_fields(case: Case) -> dict[str, Any]:
    """What a streaming request adds: usage in the last chunk, for the token count."""
    return {"stream": True, "stream_options": {"include_usage": True}} if case.stream else {}


def listed(data: Any, key: str, what: str) -> list[Any]:
    """data[key] as a non-empty list; an error object in a 200 or a missing key says so."""
    if not isinstance(data, dict) or key not in data:
        said = server_message(data)
        if said:
            raise ProbeError(ErrorClass.BAD_RESPONSE, f"error object in HTTP 200: {said}")
        raise ProbeError(ErrorClass.SCHEMA, f"reply has no '{key}' list")
    items = data[key]
    if not isinstance(items, list):
        raise ProbeError(ErrorClass.SCHEMA, f"'{key}' is {type(items).__name__}, expected a list")
    if not items:
        raise ProbeError(ErrorClass.EMPTY, f"reply has no {what}")
    return items


def first_choice(data: Any) -> dict[str, Any]:
    choice = listed(data, "choices", "choices")[0]
    if not isinstance(choice, dict):
        raise ProbeError(ErrorClass.SCHEMA, "choices[0] is not an object")
    return choice


def finite(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
