"""completion: POST /completions (the legacy text API), plain or streamed. Text cut short by its budget
(finish_reason length) is an answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from .base import (
    MAX_TOKENS_SCHEMA,
    PROMPT_SCHEMA,
    RATE_MAX_TOKENS,
    REPLY_IN_DEFAULTS,
    REPLY_SCHEMA,
    Checked,
    ModelType,
    ReplyOptions,
    default_prompt,
    first_choice,
    options_of,
    stream_fields,
    truncated,
)

__all__ = ["TYPE"]


@dataclass(frozen=True)
class CompletionOptions(ReplyOptions):
    prompt: str | None = None  # None: PROMPT, or RATE_PROMPT for a rate SLO
    max_tokens: int | None = None  # None: MAX_TOKENS, or RATE_MAX_TOKENS for a rate SLO


PROMPT = "The capital of France is"
MAX_TOKENS = 32
SCHEMA = {**REPLY_SCHEMA, **PROMPT_SCHEMA, **MAX_TOKENS_SCHEMA}


def _budget(case: Case) -> int:
    """The entry's max_tokens, else a budget long enough to time a rate SLO on, else MAX_TOKENS."""
    options = options_of(case, CompletionOptions)
    rated = case.min_tokens_per_s is not None
    return options.max_tokens or (RATE_MAX_TOKENS if rated else MAX_TOKENS)


def _body(case: Case) -> dict[str, Any]:
    options = options_of(case, CompletionOptions)
    return {
        "model": case.model,
        "prompt": options.prompt or default_prompt(case, PROMPT),
        "max_tokens": _budget(case),
        **stream_fields(case),
        **case.params,
    }


def _check(case: Case, data: Any) -> Checked:
    options = options_of(case, CompletionOptions)
    choice = first_choice(data)
    text, finish_reason = choice.get("text"), choice.get("finish_reason")
    said = f"finish_reason={finish_reason}"
    if not isinstance(text, str):
        raise ProbeError(ErrorClass.SCHEMA, "choices[0].text is not a string")
    if not text.strip():
        raise ProbeError(ErrorClass.EMPTY, f"completion text is empty ({said})")
    cut = truncated(options, f"{said}, max_tokens {_budget(case)}") if finish_reason == "length" else ()
    return Checked(f"completed {len(text)} chars ({said})", text=text, degraded=cut)


TYPE = ModelType(
    "completion",
    "POST",
    "/completions",
    CompletionOptions,
    _body,
    _check,
    tags=frozenset({"user"}),
    operation="text_completion",
    schema=SCHEMA,
    in_defaults=REPLY_IN_DEFAULTS | {"prompt", "max_tokens"},
)
