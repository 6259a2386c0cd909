"""embedding: POST /embeddings: one finite vector per input, all of one size (`dimensions` if given)."""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from .base import TEXTS_INPUT_SCHEMA, Checked, ModelType, Options, finite, listed, options_of

__all__ = ["TYPE"]


@dataclass(frozen=True)
class EmbeddingOptions(Options):
    input: str | Sequence[str] = "Model Monitor canary sentence."
    dimensions: int | None = None
    encoding_format: str | None = None


SCHEMA = {
    **TEXTS_INPUT_SCHEMA,
    "dimensions": {"description": "The expected vector size.", "type": "integer", "minimum": 1},
    "encoding_format": {
        "description": "Ask for float lists or base64 (little-endian float32) vectors.",
        "enum": ["float", "base64"],
    },
}


def _inputs(case: Case) -> list[str]:
    text = options_of(case, EmbeddingOptions).input
    return [text] if isinstance(text, str) else list(text)


def _body(case: Case) -> dict[str, Any]:
    encoding = options_of(case, EmbeddingOptions).encoding_format
    extra = {"encoding_format": encoding} if encoding else {}
    return {"model": case.model, "input": _inputs(case), **extra, **case.params}


def _check(case: Case, data: Any) -> Checked:
    items = listed(data, "data", "embeddings")
    inputs = len(_inputs(case))
    if len(items) != inputs:
        raise ProbeError(ErrorClass.SCHEMA, f"got {len(items)} embeddings for {inputs} inputs")
    sizes = set()
    for i, item in enumerate(items):
        vector = _vector(item.get("embedding") if isinstance(item, dict) else None, i)
        bad = next((v for v in vector if not finite(v)), None)
        if bad is not None:
            raise ProbeError(ErrorClass.SCHEMA, f"data[{i}].embedding holds a non-finite value ({bad!r})")
        sizes.add(len(vector))
    if len(sizes) > 1:
        raise ProbeError(ErrorClass.SCHEMA, f"embeddings differ in size: {sorted(sizes)}")
    size = sizes.pop()
    expected = options_of(case, EmbeddingOptions).dimensions
    if expected is not None and size != expected:
        raise ProbeError(ErrorClass.SCHEMA, f"embedding has {size} dimensions, expected {expected}")
    return Checked(f"{len(items)} vector(s) of {size} dimensions")


def _vector(raw: Any, i: int) -> list[Any]:
    """A float list, or base64 of little-endian float32 (encoding_format: base64)."""
    if isinstance(raw, str):
        try:
            packed = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ProbeError(ErrorClass.SCHEMA, f"data[{i}].embedding is a string but not base64") from None
        if not packed or len(packed) % 4:
            raise ProbeError(ErrorClass.SCHEMA, f"data[{i}].embedding decodes to {len(packed)} bytes, not float32s")
        return list(struct.unpack(f"<{len(packed) // 4}f", packed))
    if not isinstance(raw, list) or not raw:
        raise ProbeError(ErrorClass.SCHEMA, f"data[{i}].embedding is not a non-empty list of numbers")
    return raw


TYPE = ModelType(
    "embedding",
    "POST",
    "/embeddings",
    EmbeddingOptions,
    _body,
    _check,
    tags=frozenset({"user"}),
    operation="embeddings",
    schema=SCHEMA,
    in_defaults=frozenset({"input"}),
)
