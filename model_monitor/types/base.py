"""What every model type module provides, and the helpers their checks share."""

from __future__ import annotations

import base64
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

from ..case import Case, Endpoint, ExpectOptions, Options, StreamOptions
from ..errors import ErrorClass, ProbeError
from ..reply import Timed, parse_json, server_message
from .stream_format import ChunkReply, StreamReply

__all__ = [
    "CANARY_IMAGE",
    "EXPECT_SCHEMA",
    "MAX_TOKENS_SCHEMA",
    "PROMPT_SCHEMA",
    "RATE_MAX_TOKENS",
    "RATE_PROMPT",
    "REPLY_IN_DEFAULTS",
    "REPLY_SCHEMA",
    "STREAM_IN_DEFAULTS",
    "STREAM_SCHEMA",
    "TEXTS_INPUT_SCHEMA",
    "TEXT_INPUT_SCHEMA",
    "VISION_PROMPT",
    "VISION_SCHEMA",
    "Checked",
    "ExpectOptions",
    "ModelType",
    "Multipart",
    "Options",
    "ReplyOptions",
    "StreamOptions",
    "canary_image",
    "canary_image_url",
    "default_prompt",
    "finite",
    "first_choice",
    "listed",
    "options_of",
    "owned_params",
    "packaged",
    "reasoning_only",
    "stream_fields",
    "truncated",
]

OptionsT = TypeVar("OptionsT", bound=Options)

# JSON Schema of the fields a few types share (model_monitor/types/schema.py builds the file's schema from them).
EXPECT_SCHEMA: Mapping[str, Any] = {
    "expect": {
        "description": "What the visible reply must hold.",
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "contains": {"description": "A string the reply contains.", "type": "string", "minLength": 1},
            "regex": {
                "description": "A Python regular expression the reply matches (re.search).",
                "type": "string",
                "minLength": 1,
            },
            "json_schema": {"description": "The reply parses as JSON and matches this JSON Schema.", "type": "object"},
        },
    },
}
STREAM_SCHEMA: Mapping[str, Any] = {
    "stream": {
        "description": "Ask for an SSE stream, check its integrity and measure time to first token, inter-token gaps "
        "and tokens/s.",
        "type": "boolean",
    },
    "max_ttft": {"description": "SLO (stream): seconds to the first token.", "type": "number", "exclusiveMinimum": 0},
    "min_tokens_per_s": {
        "description": "SLO (stream): output tokens per second after the first token.",
        "type": "number",
        "exclusiveMinimum": 0,
    },
    "warn_ttft": {
        "description": "Warning (stream): seconds to the first token before a passing case is marked degraded; it "
        "still passes. At most max_ttft.",
        "type": "number",
        "exclusiveMinimum": 0,
    },
    **EXPECT_SCHEMA,
}
STREAM_IN_DEFAULTS = frozenset({"stream", "max_ttft", "min_tokens_per_s", "warn_ttft"})
# The fields of the types that generate text (chat, completion, responses, messages): how a reply cut short by its
# budget, or answered by another model than the one asked for, is judged.
REPLY_SCHEMA: Mapping[str, Any] = {
    **STREAM_SCHEMA,
    "require_content": {
        "description": "A reply with reasoning but no visible content fails as empty (by default it passes marked "
        "degraded: a live model that ran out of budget while thinking).",
        "type": "boolean",
    },
    "warn_truncated": {
        "description": "A reply cut by its token budget (finish_reason length, status incomplete, stop_reason "
        "max_tokens) that has visible text passes marked degraded (by default it passes plainly; one without "
        "visible text fails).",
        "type": "boolean",
    },
    "model_mismatch": {
        "description": "When the reply's `model` is not the model asked for (a gateway fell back to another "
        "deployment): degraded (default) passes marked degraded and names the model that answered, fail fails the "
        "case, off ignores it (a server that answers with an alias). The asked name matches when equal, ignoring "
        "case and any path prefix (models/x, /data/x), or when followed by a date or version suffix "
        "after -, : or @ (gpt-4o -> gpt-4o-2024-08-06, llama3 -> llama3:8b; not gpt-4o -> gpt-4o-mini).",
        "enum": ["degraded", "fail", "off"],
    },
}
REPLY_IN_DEFAULTS = STREAM_IN_DEFAULTS | {"require_content", "warn_truncated", "model_mismatch"}
# What a case with a rate SLO asks for when its entry sets no prompt or budget: a reply long enough to time.
RATE_PROMPT = "Count from 1 to 50, separated by spaces, and nothing else."
RATE_MAX_TOKENS = 64
PROMPT_SCHEMA: Mapping[str, Any] = {
    "prompt": {
        "description": "The text sent: a user message, a prompt or a picture description.",
        "type": "string",
        "minLength": 1,
    },
}
MAX_TOKENS_SCHEMA: Mapping[str, Any] = {
    "max_tokens": {
        "description": "Reply budget in tokens. Leave room for reasoning models to finish thinking.",
        "type": "integer",
        "minimum": 1,
    },
}
TEXTS_INPUT_SCHEMA: Mapping[str, Any] = {
    "input": {
        "description": "The text, or list of texts, sent.",
        "oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "items": {"type": "string"}}],
    },
}
# The vision canary: a green square on white, 128x128 (scripts/gen-canary-image draws it). Green because a model
# that cannot see it guesses red more often: the colour it names shows it saw the picture.
CANARY_IMAGE = "canary.png"
VISION_PROMPT = "What colour is the square in this picture? Reply with one word."
VISION_SCHEMA: Mapping[str, Any] = {
    "vision": {
        "description": "Send the canary picture (a green square on white, a PNG shipped with the monitor) as a data "
        "URL beside the prompt, for multimodal models; the default prompt then asks for the square's colour, so "
        "`expect: {regex: '(?i)green'}` shows the model saw it. Default: false (text only).",
        "type": "boolean",
    },
}
TEXT_INPUT_SCHEMA: Mapping[str, Any] = {
    "input": {"description": "The one text sent.", "type": "string", "minLength": 1},
}


@dataclass(frozen=True)
class ReplyOptions(StreamOptions):
    """The options of a type that generates text: see REPLY_SCHEMA."""

    require_content: bool = False
    warn_truncated: bool = False
    model_mismatch: str = "degraded"


@dataclass(frozen=True)
class Checked:
    """A healthy reply: what to say about it, the visible text that `expect` looks at (None: no text), and why it
    passes marked degraded (cut short by its budget, reasoning only)."""

    summary: str
    text: str | None = None
    degraded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Multipart:
    """A multipart/form-data request body (an audio file to transcribe): form fields and files."""

    data: Mapping[str, str]
    files: Mapping[str, tuple[str, bytes, str]]  # field -> (file name, content, content type)


@dataclass(frozen=True, eq=False)  # one object per type: a case's type is that object, compared by identity
class ModelType:
    """One model type: its own fields with their defaults (its options dataclass) and their JSON Schema, the request
    it sends, and its check of the reply.

    A streamed reply is folded by the type's stream format into the same shape as a JSON body
    (stream_format.StreamReply.body), so one check serves both."""

    name: str
    method: str
    path: str
    options: type[Options]
    body: Callable[[Case], dict[str, Any] | Multipart | None]  # a JSON body, a multipart one, or none (GET)
    check: Callable[[Case, Any], Checked]
    parse: Callable[[Timed], Any] = parse_json  # how a plain reply is read: JSON, or the bytes for audio
    stream_format: type[StreamReply] = ChunkReply  # how a streamed reply is folded into that body
    tags: frozenset[str] = frozenset()  # the request fields that can mark a probe (`metadata`, `user`) its API accepts
    operation: str | None = None  # OpenTelemetry's gen_ai.operation.name for it; None: the type's own name
    schema: Mapping[str, Any] = field(default_factory=dict)  # field -> its JSON Schema, each with a description
    in_defaults: frozenset[str] = frozenset()  # the fields of `schema` that the file's `defaults` may set
    open_params: frozenset[str] = frozenset()  # own request fields `params` may replace: its check reads either
    headers: Mapping[str, str] = field(default_factory=dict)  # request headers its API asks for (a version)
    key_header: str | None = None  # a header that carries the endpoint's API key too, beside Authorization: Bearer

    @functools.cached_property  # read for every case the file builds
    def fields(self) -> tuple[str, ...]:
        """The names of its own fields, as the endpoints file spells them."""
        return tuple(own.name for own in dataclasses.fields(self.options))


def options_of(case: Case, kind: type[OptionsT]) -> OptionsT:
    """The case's options as its type's dataclass: config builds each case with the options of its own type."""
    if not isinstance(case.options, kind):
        raise TypeError(
            f"case {case.id} of type {case.type.name} carries {type(case.options).__name__}, not {kind.__name__}"
        )
    return case.options


def owned_params(model_type: ModelType, model: str, options: Options, params: Mapping[str, Any]) -> list[str]:
    """The params that would replace a request field the case sets itself (its model, what it sends, stream, a
    field of its type): the case would then probe something else under its own id and monitor. Most cases set no
    params: their bodies are not built (two per streamed case, a tenth of a millisecond for each)."""
    if not params:
        return []
    own: set[str] = set()
    variants: list[Options] = [options]
    if isinstance(options, StreamOptions):  # a streamed request sends more fields of its own
        variants = [dataclasses.replace(options, stream=stream) for stream in (False, True)]
    for variant in variants:
        case = Case(Endpoint("", ""), model=model, model_id="", type=model_type, monitor="", options=variant)
        body = model_type.body(case)
        own |= {*body.data, *body.files} if isinstance(body, Multipart) else set(body or ())
    return sorted(own.intersection(params) - model_type.tags - model_type.open_params)


@functools.cache
def packaged(name: str) -> bytes:
    """A file shipped in this package: a canary the probe sends."""
    return resources.files(__package__).joinpath(name).read_bytes()


def canary_image() -> str:
    """The vision canary, base64-encoded (what a data URL and Anthropic's image source carry)."""
    return base64.b64encode(packaged(CANARY_IMAGE)).decode("ascii")


def canary_image_url() -> str:
    """The vision canary as a data URL (what OpenAI's image_url and input_image parts carry)."""
    return f"data:image/png;base64,{canary_image()}"


def stream_fields(case: Case) -> dict[str, Any]:
    """What a streaming request adds: usage in the last chunk, for the token count."""
    return {"stream": True, "stream_options": {"include_usage": True}} if case.stream else {}


def default_prompt(case: Case, default: str, vision: bool = False) -> str:
    """The type's own prompt; with `vision`, the question about the canary picture; for a case with a rate SLO,
    one whose reply is long enough to time."""
    if vision:
        return VISION_PROMPT
    return RATE_PROMPT if case.min_tokens_per_s is not None else default


def truncated(options: ReplyOptions, why: str) -> tuple[str, ...]:
    """A visible reply cut by its token budget passes; marked degraded when the model asks (warn_truncated)."""
    return (f"cut short by its token budget ({why})",) if options.warn_truncated else ()


def reasoning_only(options: ReplyOptions, why: str) -> Checked:
    """Reasoning and no visible content: a live model that ran out of budget while thinking, degraded; a failure
    when the model requires content."""
    if options.require_content:
        raise ProbeError(ErrorClass.EMPTY, f"reasoning but no visible content, and require_content is set ({why})")
    return Checked(f"replied with reasoning ({why})", text="", degraded=("reasoning only, no visible content",))


def listed(data: Any, key: str, what: str) -> list[Any]:
    """data[key] as a non-empty list; an error object in a 200 or a missing key says so."""
    if not isinstance(data, dict) or key not in data:
        said = server_message(data)
        if said:
            raise ProbeError(ErrorClass.BAD_RESPONSE, f"error object in HTTP 200: {said}")
        raise ProbeError(ErrorClass.SCHEMA, f"reply has no '{key}' list")
    items = data[key]
    if not isinstance(items, list):
        raise ProbeError(ErrorClass.SCHEMA, f"'{key}' is {type(items).__name__}, expected a list")
    if not items:
        raise ProbeError(ErrorClass.EMPTY, f"reply has no {what}")
    return items


def first_choice(data: Any) -> dict[str, Any]:
    choice = listed(data, "choices", "choices")[0]
    if not isinstance(choice, dict):
        raise ProbeError(ErrorClass.SCHEMA, "choices[0] is not an object")
    return choice


def finite(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
