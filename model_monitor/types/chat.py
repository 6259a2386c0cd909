"""chat: POST /chat/completions, plain or streamed, with JSON mode and tool-call contracts, and reasoning models.

Visible content or a tool call is an answer, also when its budget cut it short (finish_reason length); reasoning
alone shows a live model that ran out of budget (degraded), unless `require_content` says a reply must have
content.

With `vision`, the canary picture (a green square on white) goes beside the prompt as an `image_url` content part
holding a PNG data URL, as vLLM's production-stack router probes multimodal models; a server that refuses images
fails the case with its own words."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from ..reply import load_json
from .base import (
    MAX_TOKENS_SCHEMA,
    PROMPT_SCHEMA,
    REPLY_IN_DEFAULTS,
    REPLY_SCHEMA,
    VISION_SCHEMA,
    Checked,
    ModelType,
    ReplyOptions,
    canary_image_url,
    default_prompt,
    first_choice,
    options_of,
    reasoning_only,
    stream_fields,
    truncated,
)
from .contracts import reply_json

__all__ = ["TYPE"]

PROMPT = "Reply with the single word: pong"
JSON_PROMPT = 'Reply with the JSON object {"answer": "pong"} and nothing else.'
TOOL_PROMPT = "What is the weather in Paris? Use the get_weather tool."
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@dataclass(frozen=True)
class ChatOptions(ReplyOptions):
    prompt: str | None = None  # None: the prompt that fits json_mode, tool_call, vision or a rate SLO
    max_tokens: int = 256  # enough to count to 50 for a rate SLO, and for a reasoning model to think a little
    token_param: str = "max_tokens"  # OpenAI's o-series and GPT-5 refuse max_tokens: max_completion_tokens
    reasoning_effort: str | None = None
    json_mode: bool = False
    tool_call: bool = False
    vision: bool = False


SCHEMA = {
    **REPLY_SCHEMA,
    **PROMPT_SCHEMA,
    **MAX_TOKENS_SCHEMA,
    **VISION_SCHEMA,
    "json_mode": {"description": "Send response_format json_object; the reply must parse as JSON.", "type": "boolean"},
    "tool_call": {
        "description": "Offer a tiny get_weather tool; the reply must carry a tool call whose arguments parse as a "
        "JSON object.",
        "type": "boolean",
    },
    "token_param": {
        "description": "The request field that carries max_tokens. OpenAI's o-series and GPT-5 refuse max_tokens and "
        "want max_completion_tokens.",
        "enum": ["max_tokens", "max_completion_tokens"],
    },
    "reasoning_effort": {
        "description": "reasoning_effort passed through to a reasoning model (none, minimal, low, medium, high).",
        "enum": ["none", "minimal", "low", "medium", "high"],
    },
}
IN_DEFAULTS = REPLY_IN_DEFAULTS | {"prompt", "max_tokens", "token_param", "reasoning_effort"}


def _body(case: Case) -> dict[str, Any]:
    options = options_of(case, ChatOptions)
    plain = default_prompt(case, PROMPT, options.vision)
    default = TOOL_PROMPT if options.tool_call else JSON_PROMPT if options.json_mode else plain
    content: str | list[dict[str, Any]] = options.prompt or default
    if options.vision:  # OpenAI's content parts, the picture as a data URL (as vLLM's production-stack probes)
        content = [{"type": "text", "text": content}, {"type": "image_url", "image_url": {"url": canary_image_url()}}]
    contracts: dict[str, Any] = {}
    if options.json_mode:
        contracts["response_format"] = {"type": "json_object"}
    if options.tool_call:
        contracts["tools"] = [TOOL]
    if options.reasoning_effort:
        contracts["reasoning_effort"] = options.reasoning_effort
    return {
        "model": case.model,
        "messages": [{"role": "user", "content": content}],
        options.token_param: options.max_tokens,
        **stream_fields(case),
        **contracts,
        **case.params,
    }


def _check(case: Case, data: Any) -> Checked:
    options = options_of(case, ChatOptions)
    choice = first_choice(data)
    message, finish_reason = choice.get("message"), choice.get("finish_reason")
    if not isinstance(message, dict):
        raise ProbeError(ErrorClass.SCHEMA, "choices[0].message is not an object")
    if finish_reason == "error":
        raise ProbeError(ErrorClass.BAD_RESPONSE, "the reply finished with finish_reason=error")
    content, calls = message.get("content"), message.get("tool_calls")
    if content is not None and not isinstance(content, str):
        raise ProbeError(ErrorClass.SCHEMA, f"message content is {type(content).__name__}, expected a string")
    if calls is not None and not (isinstance(calls, list) and all(isinstance(call, dict) for call in calls)):
        raise ProbeError(ErrorClass.SCHEMA, f"message tool_calls is {type(calls).__name__}, expected a list of objects")
    said = f"finish_reason={finish_reason}"
    if content and content.strip():
        summary = f"replied {len(content)} chars ({said})"
    elif calls:
        summary = f"replied with {len(calls)} tool call(s) ({said})"
    elif message.get("reasoning_content") or message.get("reasoning"):
        return reasoning_only(options, said)
    else:
        raise ProbeError(ErrorClass.EMPTY, f"reply content is empty ({said})")
    if options.tool_call:
        _check_tool_call(calls or [])
    if options.json_mode:
        reply_json(content or "", "although response_format asked for JSON")
    cut = truncated(options, f"{said}, {options.token_param} {options.max_tokens}") if finish_reason == "length" else ()
    return Checked(summary, text=content or "", degraded=cut)


def _check_tool_call(calls: list[Mapping[str, Any]]) -> None:
    if not calls:
        raise ProbeError(ErrorClass.EXPECTATION, "reply carries no tool call although get_weather was offered")
    function = calls[0].get("function")
    arguments = function.get("arguments") if isinstance(function, dict) else None
    try:
        parsed = load_json(arguments) if isinstance(arguments, str) else arguments
    except ProbeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ProbeError(
            ErrorClass.EXPECTATION, f"tool call arguments are not a JSON object ({len(str(arguments))} chars)"
        )


TYPE = ModelType(
    "chat",
    "POST",
    "/chat/completions",
    ChatOptions,
    _body,
    _check,
    tags=frozenset({"metadata", "user"}),
    operation="chat",
    schema=SCHEMA,
    in_defaults=IN_DEFAULTS,
)
