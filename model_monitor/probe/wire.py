"""What travels between the engine and its probing process (prober.py), one frame per message.

A frame is a head (the JSON part's length, the bytes part's length), a JSON object and raw bytes (a request's
body; a reply's body, or its stream chunks end to end). The engine sends a Job per case, `go` after each batch of
them, and may cancel one; the prober answers, per case, when each attempt is sent or ends in a wait to retry, and
how the case ended (a Probed).

Everything the engine reads here is outside data: a frame of the wrong shape raises WireError, never anything else.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import IO, Any

from multidict import CIMultiDict

from ..errors import ErrorClass, ProbeError
from ..outcome import Attempt
from ..reply import Timed
from .stream import RawStream

__all__ = [
    "HEAD",
    "MAX_BLOB",
    "MAX_META",
    "Job",
    "Probed",
    "WireError",
    "decode_reply",
    "encode_failed",
    "encode_result",
    "frame",
    "read_frame",
]

HEAD = struct.Struct("!II")  # lengths of the JSON part and of the bytes part
MAX_META = 8 * 1024 * 1024  # a stream's chunk times (at most MAX_PIECES) and a reply's headers fit well within
MAX_BLOB = 16 * 1024 * 1024  # a body or stream is refused past 8 MiB, decoded


class WireError(ValueError):
    """A frame that is not what the other side sends: cut short, too large, or of the wrong shape."""


@dataclass(frozen=True, slots=True)
class Job:
    """One case's request as the prober sends it: prepared bytes, its limits, and its endpoint's pool settings."""

    id: int
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]  # latin-1, as the bytes go on the wire (the key among them)
    body: bytes
    timeout: float
    retries: int
    budget: float  # case_budget: a Retry-After asking for more fails the case at once
    endpoint: str
    base_url: str  # the pool's proxy is chosen by it, as for a probe in this process
    cap: int  # the endpoint's max_concurrency, this process's share
    verify_tls: bool
    stream: str | None  # "module:Class" of the type's stream format, None for one body

    def frame(self) -> bytes:
        meta = {name: getattr(self, name) for name in self.__slots__ if name != "body"}
        return frame({"kind": "probe", **meta}, self.body)

    @classmethod
    def of(cls, meta: dict[str, Any], body: bytes, seen: dict[Any, Any]) -> Job:
        """The job a frame holds. Its texts and headers are mostly those of the jobs before it (an endpoint's URL,
        key and headers): each is kept once, in `seen`, the reading side's memory of them. At 5,000 jobs, the
        copies JSON makes of each were 5 MB of the prober's memory until its end."""

        def once(value: Any) -> Any:
            return seen.setdefault(value, value)

        fields = {k: once(v) if isinstance(v, str) else v for k, v in meta.items() if k != "kind"}
        fields["headers"] = once(tuple(once((once(str(k)), once(str(v)))) for k, v in fields["headers"]))
        return cls(body=body, **fields)


@dataclass(frozen=True)
class Probed:
    """How a case's probe ended: the completed exchange, or the error that ended the attempts, and when."""

    attempts: tuple[Attempt, ...]
    started_at: float
    ended_at: float
    result: Timed | None = None
    error: ProbeError | None = None


def frame(meta: dict[str, Any], blob: bytes = b"") -> bytes:
    data = json.dumps(meta, separators=(",", ":")).encode()
    return HEAD.pack(len(data), len(blob)) + data + blob


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at a clean end of the stream."""
    head = stream.read(HEAD.size)
    if not head:
        return None
    if len(head) < HEAD.size:
        raise WireError("a frame cut short in its head")
    size, blob_size = HEAD.unpack(head)
    if size > MAX_META or blob_size > MAX_BLOB:
        raise WireError(f"a frame of {size} + {blob_size} bytes (at most {MAX_META} + {MAX_BLOB})")
    data, blob = stream.read(size), stream.read(blob_size)
    if len(data) < size or len(blob) < blob_size:
        raise WireError("a frame cut short")
    try:
        meta = json.loads(data)
    except (ValueError, RecursionError):
        raise WireError("a frame whose JSON does not parse") from None
    if not isinstance(meta, dict):
        raise WireError("a frame that is not a JSON object")
    return meta, blob


def _attempts(attempts: tuple[Attempt, ...] | list[Attempt]) -> list[list[Any]]:
    return [[a.error_class, a.status_code, a.duration_s] for a in attempts]


def encode_result(case: int, attempts: list[Attempt], started: float, ended: float, result: Timed) -> bytes:
    value = result.value
    chunks = value.chunks if isinstance(value, RawStream) else None
    meta = {
        "kind": "done",
        "id": case,
        "attempts": _attempts(attempts),
        "started": started,
        "ended": ended,
        "status": result.status_code,
        "headers": [[k, v] for k, v in result.headers.items()],  # latin-1: each char one byte as it came
        "duration": result.duration,
        "ttfb": result.ttfb,
        "chunks": None if chunks is None else [[at, len(piece)] for at, piece in chunks],
    }
    return frame(meta, value if chunks is None else b"".join(piece for _, piece in chunks))


def encode_failed(case: int, attempts: list[Attempt], started: float, ended: float, error: ProbeError) -> bytes:
    meta = {
        "kind": "failed",
        "id": case,
        "attempts": _attempts(attempts),
        "started": started,
        "ended": ended,
        "error": [error.error_class.value, error.message, error.status_code, error.duration],
    }
    return frame(meta)


def decode_reply(meta: dict[str, Any], blob: bytes) -> Probed:
    """A `done` or `failed` frame as the engine judges it; WireError for anything else."""
    try:
        attempts = tuple(Attempt(_opt(c, str), _opt(s, int), _num(d)) for c, s, d in _list(meta["attempts"]))
        started, ended = _num(meta["started"]), _num(meta["ended"])
        if meta["kind"] == "failed":
            name, message, status, duration = _list(meta["error"])
            error = ProbeError(
                ErrorClass(name), _typed(message, str), status_code=_opt(status, int), duration=_opt(duration, float)
            )
            return Probed(attempts, started, ended, error=error)
        headers = CIMultiDict((_typed(k, str), _typed(v, str)) for k, v in _list(meta["headers"]))
        value: bytes | RawStream = blob
        if meta["chunks"] is not None:
            value, at = RawStream(), 0
            for arrived, size in _list(meta["chunks"]):
                value.chunks.append((_num(arrived), blob[at : at + _typed(size, int)]))
                at += size
            if at != len(blob):
                raise WireError("stream chunks that do not add up to the bytes sent")
        status, duration, ttfb = _typed(meta["status"], int), _num(meta["duration"]), _opt(meta["ttfb"], float)
        return Probed(attempts, started, ended, result=Timed(value, status, headers, duration=duration, ttfb=ttfb))
    except (KeyError, TypeError, ValueError, UnicodeError, OverflowError):  # 10**400 as a float overflows
        raise WireError("a reply frame of the wrong shape") from None


def _typed(value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise WireError(f"{type(value).__name__} where {kind.__name__} belongs")
    return value


def _opt(value: Any, kind: type) -> Any:
    return None if value is None else _num(value) if kind is float else _typed(value, kind)


def _num(value: Any) -> float:
    number = float(_typed(value, float))
    if not math.isfinite(number):  # JSON as Python reads it takes NaN and Infinity: no time or duration is either
        raise WireError("a number that is not finite")
    return number


def _list(value: Any) -> list[Any]:
    return list(_typed(value, list))
