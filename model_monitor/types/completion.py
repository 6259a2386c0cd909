"""completion: POST /completions (the legacy text API), plain or streamed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from .base import (
    MAX_TOKENS_SCHEMA,
    PROMPT_SCHEMA,
    STREAM_IN_DEFAULTS,
    STREAM_SCHEMA,
    Checked,
    ModelType,
    StreamOptions,
    first_choice,
    options_of,
    stream_fields,
)

__all__ = ["TYPE"]


@dataclass(frozen=True)
class CompletionOptions(StreamOptions):
    prompt: str = "The capital of France is"
    max_tokens: int = 32


SCHEMA = {**STREAM_SCHEMA, **PROMPT_SCHEMA, **MAX_TOKENS_SCHEMA}


def _body(case: Case) -> dict[str, Any]:
    options = options_of(case, CompletionOptions)
    return {
        "model": case.model,
        "prompt": options.prompt,
        "max_tokens": options.max_tokens,
        **stream_fields(case),
        **case.params,
    }


def _check(case: Case, data: Any) -> Checked:
    choice = first_choice(data)
    text, finish_reason = choice.get("text"), choice.get("finish_reason")
    if not isinstance(text, str):
        raise ProbeError(ErrorClass.SCHEMA, "choices[0].text is not a string")
    if not text.strip():
        raise ProbeError(ErrorClass.EMPTY, f"completion text is empty (finish_reason={finish_reason})")
    return Checked(f"completed {len(text)} chars (finish_reason={finish_reason})", text=text)


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
    in_defaults=STREAM_IN_DEFAULTS | {"prompt", "max_tokens"},
)
