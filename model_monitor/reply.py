"""What a server answered and how its body is read: the timed reply, its media type, its JSON and its error text.

Below both probe/ (which sends and times the request) and types/ (which judge what came back), so that each may
read a reply without importing the other.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ErrorClass, ProbeError
from .redact import CUT

__all__ = [
    "MAX_SERVER_MESSAGE",
    "Said",
    "Timed",
    "carries_error",
    "load_json",
    "media_type",
    "one_line",
    "parse_json",
    "said_in_body",
    "server_message",
    "server_said",
]

MAX_SERVER_MESSAGE = 200


@dataclass(frozen=True)
class Timed:
    """A completed exchange: what the consumer returned, the status, headers, the measured duration and the time
    to the response headers (ttfb)."""

    value: Any
    status_code: int
    headers: Mapping[str, str]  # case-insensitive names
    duration: float
    ttfb: float | None = None


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


def media_type(headers: Mapping[str, str]) -> str:
    """The Content-Type without parameters, lower case (media types are case-insensitive)."""
    content_type = headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower()


def server_message(data: Any) -> str | None:
    """The server's words in an error body or event, on one line and cut short; None when it says nothing."""
    return server_said(data).words


def server_said(data: Any) -> Said:
    """What an error body or event says, whichever server wrote it: its words and its error codes.

    One walk for every shape (README "What servers say"): OpenAI's `{"error": {...}}`, the flat `{"object":
    "error", "message": ...}` of vLLM and SGLang, a string `error` (llama.cpp's old server, Ollama, TGI with its
    `error_type`), FastAPI's `detail` (a string, a list of validation errors, or a wrapper), Anthropic's `{"type":
    "error", "error": {...}}`, a Responses event or Response object (`error`, `incomplete_details.reason`),
    OpenRouter's `metadata` and Azure's `innererror`. Bounded in depth and items: nothing a server sends can make
    it slow or deep."""
    found = _Found()
    found.walk(data, 0)
    words = "; ".join(found.words) if found.words else None
    if words is not None:
        named = [c for c in found.codes if any(ch.isalpha() for ch in c) and c.lower() not in words.lower()]
        if named:
            words += f" ({', '.join(named[:MAX_CODES])})"
        words = one_line(words, MAX_SERVER_MESSAGE)
    return Said(words, tuple(found.codes))


def carries_error(data: Any) -> bool:
    """Whether a JSON body or event is an error: an `error` member (also next to a reply), or an object that
    names itself one (vLLM's `"object": "error"`, Anthropic's and the Responses API's `"type": "error"`)."""
    return isinstance(data, dict) and (bool(data.get("error")) or "error" in (data.get("object"), data.get("type")))


def said_in_body(body: bytes) -> Said:
    """The server's words in an error reply's body, whatever it is: JSON, an event stream (a server that answered
    its error as SSE, or as a bare JSON line), or plain text."""
    try:
        return server_said(load_json(body, "error body"))
    except ProbeError:
        pass
    text = body[:MAX_SCAN_BYTES].decode("utf-8", "replace")
    for line in text.splitlines()[:MAX_LINES]:
        field, colon, value = line.partition(":")
        value = value if colon and field in ("data", "error") else line
        try:
            event = load_json(value, "error event")
        except ProbeError:
            continue
        if carries_error(event) or field == "error":
            return server_said(event)
    if text.lstrip().startswith(("<", "{", "[")) or not text.strip():
        return Said(None)
    return Said(one_line(text, MAX_SERVER_MESSAGE))  # a plain-text error page ("Internal Server Error")


@dataclass(frozen=True)
class Said:
    """The server's words (one line, cut short, control and bidi characters escaped) and its error codes (the
    `type`, `code`, `error_type` and `error_code` values met on the way, outermost first)."""

    words: str | None
    codes: tuple[str, ...] = ()

    @property
    def quota(self) -> bool:
        """A spent budget or unpaid bill: waiting does not refill it (OpenAI's insufficient_quota, Anthropic's
        billing_error and spend limits, OpenRouter's 402, LiteLLM's budget_exceeded, Azure's quota)."""
        words = (self.words or "").lower()
        return any(c.lower() in QUOTA_CODES for c in self.codes) or any(p in words for p in QUOTA_WORDS)


MAX_DEPTH = 8  # wrappers followed (detail -> error -> ...): deeper than any server's, shallow enough to be cheap
MAX_ITEMS = 3  # validation errors quoted from a list
MAX_CODES = 3  # codes named after the words
MAX_LINES = 50  # lines of an event-stream error body looked at
MAX_SCAN_BYTES = 16 * 1024
# Where a server puts its words, at each level, in order: its message, then the wrappers.
WORD_KEYS = ("message", "msg", "error", "detail", "error_message", "response", "incomplete_details", "reason")
CODE_KEYS = ("type", "code", "error_type", "error_code")
# Codes that carry more codes: Anthropic's error.details.error_code, Azure's innererror.code
CODE_HOLDERS = ("details", "innererror")
GENERIC_CODES = frozenset({"error", "none", "null", ""})
QUOTA_CODES = frozenset(
    {
        "insufficient_quota",  # OpenAI (error.code and error.type), also Azure OpenAI
        "insufficientquota",
        "credit_balance_exhausted",  # OpenAI
        "organization_spend_limit_exceeded",  # OpenAI hard spend limits
        "project_spend_limit_exceeded",
        "billing_error",  # Anthropic 402
        "enforced_spend_limit_reached",  # Anthropic 429 error.details.error_code
        "contract_spend_limit_reached",
        "budget_exceeded",  # LiteLLM's proxy budgets
        "payment_required",
        "402",  # OpenRouter's error.code, mid-stream too
    }
)
# Quota said only in words, with a generic code: Anthropic's 400 invalid_request_error, Azure's 403
QUOTA_WORDS = ("credit balance is too low", "reached your specified api usage limits", "out of call volume quota")


class _Found:
    """What a walk over an error body collected."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.codes: list[str] = []

    def walk(self, node: Any, depth: int) -> None:
        if depth > MAX_DEPTH or self.words:
            return
        if isinstance(node, str):
            if node.strip():
                self.words.append(node[: 4 * MAX_SERVER_MESSAGE])
        elif isinstance(node, list):
            self._items(node)
        elif isinstance(node, dict):
            self._codes(node, depth)
            for key in WORD_KEYS:
                value = node.get(key)
                if key in ("response", "incomplete_details") and not isinstance(value, dict):
                    continue
                self.walk(value, depth + 1)
                if self.words:
                    break
            self._metadata(node.get("metadata"))

    def _codes(self, node: dict[str, Any], depth: int) -> None:
        for key in CODE_KEYS:
            value = node.get(key)
            code = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
            code = one_line(code, 60)
            if code.lower() not in GENERIC_CODES and code not in self.codes:
                self.codes.append(code)
        for key in CODE_HOLDERS:
            held = node.get(key)
            if isinstance(held, dict) and depth < MAX_DEPTH:
                self._codes(held, depth + 1)

    def _items(self, items: list[Any]) -> None:
        """FastAPI's (pydantic's) validation errors: `loc: msg` for the first few."""
        for item in items[:MAX_ITEMS]:
            if isinstance(item, str) and item.strip():
                self.words.append(item[: 4 * MAX_SERVER_MESSAGE])
            elif isinstance(item, dict) and isinstance(said := item.get("msg", item.get("message")), str):
                loc = item.get("loc")
                place = ".".join(str(p)[:40] for p in loc[:MAX_DEPTH]) + ": " if isinstance(loc, list) else ""
                self.words.append(place + said[:MAX_SERVER_MESSAGE])
        if len(items) > MAX_ITEMS and self.words:
            self.words.append(f"and {len(items) - MAX_ITEMS} more")

    def _metadata(self, metadata: Any) -> None:
        """OpenRouter's metadata: the provider that failed and its own words (`raw`), or the moderation's reasons."""
        if not isinstance(metadata, dict) or not self.words:
            return
        provider, raw, reasons = metadata.get("provider_name"), metadata.get("raw"), metadata.get("reasons")
        if isinstance(raw, str) and raw.strip():
            try:
                inner = server_said(load_json(raw[:MAX_SCAN_BYTES], "metadata.raw")).words
            except ProbeError:
                inner = None
            self.words.append(inner or raw[: 4 * MAX_SERVER_MESSAGE])
        elif isinstance(raw, dict):
            self.words.extend(filter(None, [server_said(raw).words]))
        if isinstance(reasons, list):
            self.words.append(", ".join(str(r) for r in reasons[:MAX_ITEMS] if isinstance(r, str)))
        if isinstance(provider, str) and provider.strip():
            self.words.append(f"provider {provider}")


# Characters a terminal or log viewer acts on instead of showing: controls, format characters (bidi overrides,
# zero-width joiners), line and paragraph separators, surrogates and private use.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def one_line(text: str, limit: int, *, tail: bool = False) -> str:
    """A server's (or a library's) text on one line of at most `limit` characters, every character that would act
    on a terminal instead of showing escaped as \\uXXXX: its head, or its tail (where an error's cause is), cut
    with CUT, beside which the Redactor masks a secret's piece."""
    text = " ".join((text[-4 * limit :] if tail else text[: 4 * limit]).split())
    if any(unicodedata.category(c) in _HIDDEN for c in text):
        text = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _HIDDEN else c for c in text)
    if len(text) <= limit:
        return text
    return CUT + text[-(limit - 1) :] if tail else text[: limit - 1] + CUT


def _html_title(body: bytes) -> str | None:
    match = re.search(rb"<title[^>]*>(.*?)</title>", body[:8192], re.IGNORECASE | re.DOTALL)
    return one_line(match.group(1).decode("utf-8", "replace"), 60) if match else None
