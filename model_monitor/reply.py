"""What a server answered and how its body is read: the timed reply, its media type, its JSON and its error text.

Below both probe/ (which sends and times the request) and types/ (which judge what came back), so that each may
read a reply without importing the other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import ErrorClass, ProbeError
from .redact import CUT

__all__ = ["MAX_SERVER_MESSAGE", "Timed", "load_json", "media_type", "one_line", "parse_json", "server_message"]

MAX_SERVER_MESSAGE = 200


@dataclass(frozen=True)
class Timed:
    """A completed exchange: what the consumer returned, the status, headers and the measured duration."""

    value: Any
    status_code: int
    headers: httpx.Headers
    duration: float


def load_json(body: bytes | str, what: str = "reply") -> Any:
    """JSON from a server, whatever it sent: a fault (too deep, a 5,000-digit number, not JSON) is a bad_response."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"{what} is JSON nested too deep to read") from None
    except json.JSONDecodeError as exc:
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"{what} is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    except ValueError as exc:  # an integer past Python's digit limit, invalid UTF-8 ...
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"{what} is not usable JSON ({one_line(str(exc), 80)})") from None


def parse_json(reply: Timed) -> Any:
    """A read body as JSON; an HTML login page or other non-JSON reply is a bad_response naming what came instead."""
    body: bytes = reply.value
    content_type = media_type(reply.headers)
    if "json" not in content_type:
        title = _html_title(body)
        what = f"HTML page {title!r}" if title else f"{len(body)} bytes"
        raise ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"HTTP {reply.status_code} with content-type {content_type or '(none)'}, expected JSON: {what}",
        )
    return load_json(body)


def media_type(headers: httpx.Headers) -> str:
    """The Content-Type without parameters, lower case (media types are case-insensitive)."""
    content_type: str = headers.get("content-type", "")  # httpx types a header's value as Any
    return content_type.partition(";")[0].strip().lower()


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
    """`text` on one line, at most `limit` characters, cut with CUT: the Redactor masks a secret's piece beside it."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + CUT


def _html_title(body: bytes) -> str | None:
    match = re.search(rb"<title[^>]*>(.*?)</title>", body[:8192], re.IGNORECASE | re.DOTALL)
    return one_line(match.group(1).decode("utf-8", "replace"), 60) if match else None
