"""transcription: POST /audio/transcriptions (multipart): the canary, a short spoken sentence shipped in the
package, must come back as non-empty text; `expect` checks the words heard."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from .base import EXPECT_SCHEMA, Checked, ExpectOptions, ModelType, Multipart, options_of, packaged

__all__ = ["CANARY", "TYPE", "canary"]

# "the quick brown fox jumps over the lazy dog", spoken by espeak-ng: 2.8 s, 16 kHz mono 16-bit PCM.
CANARY = "canary.wav"
SCHEMA = {
    "language": {
        "description": "The language spoken in the canary (en), sent as a hint. Default: the server detects it.",
        "type": "string",
        "minLength": 1,
    },
    **EXPECT_SCHEMA,
}


@dataclass(frozen=True)
class TranscriptionOptions(ExpectOptions):
    language: str | None = None  # None: the server detects it


def canary() -> bytes:
    return packaged(CANARY)


def _body(case: Case) -> Multipart:
    language = options_of(case, TranscriptionOptions).language
    fields = {"model": case.model, "response_format": "json", **({"language": language} if language else {})}
    # Form fields are text: extra params keep their JSON spelling (true, 0.2), not Python's (True).
    params = {name: value if isinstance(value, str) else json.dumps(value) for name, value in case.params.items()}
    return Multipart(data={**fields, **params}, files={"file": (CANARY, canary(), "audio/wav")})


def _check(case: Case, data: Any) -> Checked:
    if not isinstance(data, dict) or "text" not in data:
        raise ProbeError(ErrorClass.SCHEMA, "reply has no 'text' field")
    text = data["text"]
    if not isinstance(text, str):
        raise ProbeError(ErrorClass.SCHEMA, f"'text' is {type(text).__name__}, expected a string")
    words = len(text.split())
    if not words:
        raise ProbeError(ErrorClass.EMPTY, "transcription of the spoken canary sentence is empty")
    return Checked(f"heard {words} words", text=text)


TYPE = ModelType("transcription", "POST", "/audio/transcriptions", TranscriptionOptions, _body, _check, schema=SCHEMA)
