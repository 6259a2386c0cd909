"""responses: POST /responses (OpenAI's Responses API, also served by vLLM, SGLang, Ollama and LiteLLM), plain
or streamed as typed events.

Plain and streamed replies are judged by one check on the Response object: a streamed one is the `response`
that its terminal event (response.completed, .incomplete or .failed) carries; the deltas before it give the
timings. There is no `data: [DONE]`: a stream without a terminal event is broken."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from ..reply import one_line, server_message
from .base import (
    REPLY_IN_DEFAULTS,
    REPLY_SCHEMA,
    TEXT_INPUT_SCHEMA,
    VISION_SCHEMA,
    Checked,
    ModelType,
    ReplyOptions,
    canary_image_url,
    default_prompt,
    listed,
    options_of,
    reasoning_only,
    truncated,
)
from .stream_format import StreamReply

__all__ = ["TYPE"]

INPUT = "Reply with the single word: pong"
SCHEMA = {
    **REPLY_SCHEMA,
    **TEXT_INPUT_SCHEMA,
    **VISION_SCHEMA,
    "max_output_tokens": {
        "description": "Reply budget in tokens (max_output_tokens). Leave room for reasoning models to finish "
        "thinking.",
        "type": "integer",
        "minimum": 1,
    },
}
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
VISIBLE_DELTAS = ("response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta")
REASONING_DELTAS = ("response.reasoning_text.delta", "response.reasoning_summary_text.delta")


@dataclass(frozen=True)
class ResponsesOptions(ReplyOptions):
    input: str | None = None  # None: INPUT, VISION_PROMPT with vision, or RATE_PROMPT for a rate SLO
    max_output_tokens: int = 256
    vision: bool = False


def _body(case: Case) -> dict[str, Any]:
    options = options_of(case, ResponsesOptions)
    stream = {"stream": True} if case.stream else {}
    text = options.input or default_prompt(case, INPUT, options.vision)
    sent: str | list[dict[str, Any]] = text
    if options.vision:  # one user message of input parts, the picture as a data URL
        parts = [{"type": "input_text", "text": text}, {"type": "input_image", "image_url": canary_image_url()}]
        sent = [{"role": "user", "content": parts}]
    return {
        "model": case.model,
        "input": sent,
        "max_output_tokens": options.max_output_tokens,
        **stream,
        **case.params,
    }


def _check(case: Case, data: Any) -> Checked:
    """A completed Response with output text passes, and so does one cut by its max_output_tokens budget (status
    incomplete) that has some; reasoning alone is degraded (see types/base.reasoning_only)."""
    options = options_of(case, ResponsesOptions)
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str):
        raise ProbeError(ErrorClass.SCHEMA, "reply has no response status (expected a Response object)")
    tokens = _output_tokens(data)
    counted = f" after {tokens} output tokens" if tokens is not None else ""
    if status == "failed":
        said = server_message({"error": data.get("error")}) or "no error message"
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"response status failed{counted}: {said}")
    if status not in ("completed", "incomplete"):
        raise ProbeError(ErrorClass.SCHEMA, f"response status is {one_line(status, 40)!r}, expected completed")
    details = data.get("incomplete_details")
    budget = isinstance(details, dict) and details.get("reason") == "max_output_tokens"
    reason = server_message({"incomplete_details": details}) if details else None  # the server's words, escaped
    # An incomplete response may have no output at all: its reason says why, below.
    items = listed(data, "output", "output items") if status == "completed" or data.get("output") else []
    text = _output_text(items)
    said = f"status={status}" + (f": {reason}" if reason else "") + (f", {tokens} output tokens" if tokens else "")
    answered = status == "completed" or budget  # cut by another cause (content_filter) is no answer
    reasoned = any(isinstance(item, dict) and item.get("type") == "reasoning" for item in items)
    if answered and not text.strip() and reasoned:
        return reasoning_only(options, said)
    if status == "incomplete" and not (budget and text.strip()):
        hint = f" (max_output_tokens is {options.max_output_tokens})" if budget else ""
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"response incomplete: {reason or 'no reason given'}{counted}{hint}")
    if not text.strip():
        raise ProbeError(ErrorClass.EMPTY, f"response carries no output_text{counted}")
    cut = truncated(options, f"{said}, max_output_tokens {options.max_output_tokens}") if budget else ()
    return Checked(f"replied {len(text)} chars ({said})", text=text, degraded=cut)


def _output_text(items: list[Any]) -> str:
    """The text of every output_text part of the message items (reasoning and tool-call items carry none)."""
    text = ""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ProbeError(ErrorClass.SCHEMA, f"output[{i}] is not an object")
        if item.get("type", "message") != "message":
            continue
        parts = item.get("content")
        if not isinstance(parts, list):
            raise ProbeError(ErrorClass.SCHEMA, f"output[{i}].content is {type(parts).__name__}, expected a list")
        for j, part in enumerate(parts):
            if isinstance(part, dict) and part.get("type") == "output_text":
                if not isinstance(part.get("text"), str):
                    raise ProbeError(ErrorClass.SCHEMA, f"output[{i}].content[{j}].text is not a string")
                text += part["text"]
    return text


def _output_tokens(data: dict[str, Any]) -> int | None:
    usage = data.get("usage")
    tokens = usage.get("output_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None


@dataclass
class ResponsesReply(StreamReply):
    """Typed Responses events (`event: response.output_text.delta` ...), ended by a terminal event whose
    `response` is the reply."""

    response: dict[str, Any] | None = None

    @staticmethod
    def ends(chunk: bytes) -> bool:
        """The chunk's last event is a terminal one (by its event line or its data's type): the API sends no [DONE],
        and a server or proxy may keep the connection open after it."""
        if not chunk.endswith(b"\n\n"):
            return False
        last = chunk.rstrip().rsplit(b"\n\n", 1)[-1]
        return any(
            last.startswith(b"event: " + kind.encode())
            or f'"type": "{kind}"'.encode() in last
            or f'"type":"{kind}"'.encode() in last
            for kind in TERMINAL
        )

    def take(self, name: str, data: str, now: float) -> None:
        if data.strip() == "[DONE]":  # some gateways add it; the terminal event is what completes the stream
            return
        event = self.parse(name, data, now)
        if event is None:
            return
        kind = event.get("type") or name  # the data names its type; the SSE event line is optional
        delta = event.get("delta")
        if kind in VISIBLE_DELTAS + REASONING_DELTAS and isinstance(delta, str) and delta:
            self.token(now, visible=kind in VISIBLE_DELTAS)
        if kind in TERMINAL:
            response = event.get("response")
            if not isinstance(response, dict):
                raise ProbeError(ErrorClass.STREAM_BROKEN, f"{kind} event carries no response object after {now:.3f} s")
            status = response.get("status")
            # A failed event never passes as completed; vLLM ends a stream cut by its budget with
            # response.completed carrying status incomplete, which the check then judges as OpenAI's
            # response.incomplete.
            vllm_cut = kind == "response.completed" and status == "incomplete"
            if isinstance(status, str) and kind != f"response.{status}" and not vllm_cut:
                raise ProbeError(
                    ErrorClass.BAD_RESPONSE,
                    f"{kind} event carries a response whose status is {one_line(status, 40)!r} after {now:.3f} s",
                )
            self.response, self.done = response, True
            self.count_usage(_output_tokens(response))

    def finish(self, after: str) -> None:
        if self.response is None:
            raise ProbeError(ErrorClass.STREAM_BROKEN, f"stream ended without response.completed {after}")
        if self.response.get("status") == "completed" and not self.token_times:
            raise ProbeError(ErrorClass.EMPTY, f"stream carried no output_text delta {after}")

    def body(self) -> dict[str, Any]:
        return self.response or {}


TYPE = ModelType(
    "responses",
    "POST",
    "/responses",
    ResponsesOptions,
    _body,
    _check,
    stream_format=ResponsesReply,
    tags=frozenset({"metadata", "user"}),
    operation="chat",
    schema=SCHEMA,
    in_defaults=REPLY_IN_DEFAULTS | {"input", "max_output_tokens"},
)
