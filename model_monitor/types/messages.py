"""messages: POST /messages (Anthropic's Messages API, also served by vLLM, llama.cpp's llama-server, LiteLLM and
Ollama), plain or streamed as typed events.

Plain and streamed replies are judged by one check on the Message object: a stream's events (message_start,
content_block_start/delta/stop, message_delta, message_stop; `ping` ignored) are folded into the Message a plain
request gets, and their deltas give the timings (a thinking delta shows a live model, like chat's reasoning).
There is no `data: [DONE]`: a stream without message_stop is broken.

Auth: the endpoint's API key goes both as `Authorization: Bearer` (what every request sends) and as `x-api-key`.
Anthropic's own API reads only x-api-key; vLLM's --api-key check reads only the bearer token; llama-server reads
the bearer token, then x-api-key; LiteLLM's proxy reads either and Ollama neither. One request shape that every
one of them accepts beats an endpoint field to choose (LiteLLM's own Anthropic client sends x-api-key alone, and a
bearer token only for OAuth tokens); a header of the same name in the endpoints file still replaces ours.
`anthropic-version` is always sent: Anthropic refuses a request without it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from ..reply import server_message
from .base import (
    MAX_TOKENS_SCHEMA,
    PROMPT_SCHEMA,
    REPLY_IN_DEFAULTS,
    REPLY_SCHEMA,
    VISION_SCHEMA,
    Checked,
    ModelType,
    ReplyOptions,
    canary_image,
    default_prompt,
    listed,
    options_of,
    reasoning_only,
    truncated,
)
from .stream_format import StreamReply
from .usage import count

__all__ = ["TYPE"]

PROMPT = "Reply with the single word: pong"
ANTHROPIC_VERSION = "2023-06-01"  # the one version of the Messages API; servers that mimic it accept it
SCHEMA = {**REPLY_SCHEMA, **PROMPT_SCHEMA, **MAX_TOKENS_SCHEMA, **VISION_SCHEMA}
# delta type -> the block it extends (type, field), and whether it is visible output (thinking shows a live model)
DELTAS = {
    "text_delta": ("text", "text", True),
    "input_json_delta": ("tool_use", "partial_json", True),
    "thinking_delta": ("thinking", "thinking", False),
}
STOP = b"message_stop"


@dataclass(frozen=True)
class MessagesOptions(ReplyOptions):
    prompt: str | None = None  # None: PROMPT, VISION_PROMPT with vision, or RATE_PROMPT for a rate SLO
    max_tokens: int = 256
    vision: bool = False


def _body(case: Case) -> dict[str, Any]:
    options = options_of(case, MessagesOptions)
    stream = {"stream": True} if case.stream else {}
    content: str | list[dict[str, Any]] = options.prompt or default_prompt(case, PROMPT, options.vision)
    if options.vision:  # Anthropic's image block, base64, before the text as its docs advise
        image = {"type": "base64", "media_type": "image/png", "data": canary_image()}
        content = [{"type": "image", "source": image}, {"type": "text", "text": content}]
    return {
        "model": case.model,
        "max_tokens": options.max_tokens,
        "messages": [{"role": "user", "content": content}],
        **stream,
        **case.params,
    }


def _check(case: Case, data: Any) -> Checked:
    if isinstance(data, dict) and data.get("type") == "error":  # an error body in a 200, however empty
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"error object in HTTP 200: {server_message(data) or 'no message'}")
    blocks = listed(data, "content", "content blocks")
    stop_reason, tokens = data.get("stop_reason"), _output_tokens(data)
    said = f"stop_reason={stop_reason}" + (f", {tokens} output tokens" if tokens is not None else "")
    text = _text(blocks)
    options = options_of(case, MessagesOptions)
    if not text.strip() and any(block.get("thinking") for block in blocks if block.get("type") == "thinking"):
        return reasoning_only(options, said)
    if not text.strip():
        kinds = ", ".join(sorted({str(block.get("type")) for block in blocks}))
        raise ProbeError(ErrorClass.EMPTY, f"reply has no text (blocks: {kinds}; {said})")
    cut = truncated(options, f"{said}, max_tokens {options.max_tokens}") if stop_reason == "max_tokens" else ()
    return Checked(f"replied {len(text)} chars ({said})", text=text, degraded=cut)


def _text(blocks: list[Any]) -> str:
    """The text of every text block (thinking and tool-use blocks carry none)."""
    text = ""
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            raise ProbeError(ErrorClass.SCHEMA, f"content[{i}] is not an object")
        if block.get("type") == "text":
            if not isinstance(block.get("text"), str):
                raise ProbeError(ErrorClass.SCHEMA, f"content[{i}].text is not a string")
            text += block["text"]
    return text


def _output_tokens(data: dict[str, Any]) -> int | None:
    usage = data.get("usage")
    return count(usage.get("output_tokens")) if isinstance(usage, dict) else None


@dataclass
class MessagesReply(StreamReply):
    """Anthropic's typed events (`event: content_block_delta` ...), folded into the Message they describe."""

    message: dict[str, Any] = field(default_factory=dict)
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def ends(chunk: bytes) -> bool:
        """The chunk's last event is message_stop (by its event line or its data's type): the API sends no [DONE],
        and a server or proxy may keep the connection open after it."""
        if not chunk.endswith(b"\n\n"):
            return False
        last = chunk.rstrip().rsplit(b"\n\n", 1)[-1]
        return last.startswith(b"event: " + STOP) or any(
            f'"type"{gap}"message_stop"'.encode() in last for gap in (":", ": ")
        )

    def take(self, name: str, data: str, now: float) -> None:
        if data.strip() == "[DONE]":  # some gateways add it; message_stop is what completes the stream
            return
        event = self.parse(name, data, now)  # an error event, or an error object, breaks the stream here
        if event is None:
            return
        kind = event.get("type") or name  # the data names its type; the SSE event line is optional
        if kind == "message_start" and isinstance(event.get("message"), dict):
            self.message = event["message"]
            self._add_usage(self.message.get("usage"), final=False)
        elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            self.blocks[self._index(event)] = dict(event["content_block"])
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            self._take_delta(self._index(event), event["delta"], now)
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.message = {**self.message, "stop_reason": delta["stop_reason"]}
            self._add_usage(event.get("usage"), final=True)
        elif kind == "message_stop":
            self.done = True

    def _take_delta(self, index: int, delta: dict[str, Any], now: float) -> None:
        kind, key, visible = DELTAS.get(str(delta.get("type")), ("", "", False))
        piece = delta.get(key) if key else None
        if not isinstance(piece, str) or not piece:
            return  # a signature, or an empty piece: no token
        block = self.blocks.setdefault(index, {"type": kind})
        block[key] = str(block.get(key) or "") + piece
        self.token(now, visible)

    def _add_usage(self, usage: Any, final: bool) -> None:
        """message_start counts the input (its output count is a placeholder), message_delta the output so far:
        the last count of each stands."""
        if isinstance(usage, dict):
            self.usage.update(usage)
            if final:
                self.count_usage(usage.get("output_tokens"))

    @staticmethod
    def _index(event: dict[str, Any]) -> int:
        index = event.get("index", 0)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ProbeError(
                ErrorClass.SCHEMA, f"a content block's index is {type(index).__name__}, expected an integer"
            )
        return index

    def finish(self, after: str) -> None:
        if not self.done:
            raise ProbeError(ErrorClass.STREAM_BROKEN, f"stream ended without message_stop {after}")

    def body(self) -> dict[str, Any]:
        return {**self.message, "content": [self.blocks[i] for i in sorted(self.blocks)], "usage": self.usage}


TYPE = ModelType(
    "messages",
    "POST",
    "/messages",
    MessagesOptions,
    _body,
    _check,
    stream_format=MessagesReply,
    operation="chat",
    schema=SCHEMA,
    in_defaults=REPLY_IN_DEFAULTS | {"prompt", "max_tokens"},
    headers={"anthropic-version": ANTHROPIC_VERSION},
    key_header="x-api-key",
)
