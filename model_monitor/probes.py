"""One probe per model type: the request it sends and what a healthy reply must hold.

A probe builds one small, cheap, realistic request and validates the parsed reply. Timing, transport errors and
HTTP status handling live in exchange.py and are the same for every type.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import contracts
from .config import Case
from .errors import ErrorClass, ProbeError
from .exchange import Clock, Timed, parse_json, read_body, server_message
from .stream import StreamReply, assemble, read_stream

RERANK_QUERY = "What is the capital of France?"
RERANK_DOCUMENTS = (
    "Paris is the capital of France.",
    "Bananas are rich in potassium.",
    "The Pacific is the largest ocean.",
)


@dataclass(frozen=True)
class Checked:
    """A healthy reply: what to say about it, and the visible text and message that contracts look at."""

    summary: str
    text: str | None = None
    message: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verdict:
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    body: Callable[[Case], dict[str, Any] | None]
    check: Callable[[Case, Any], Checked]


def _stream_fields(case: Case) -> dict[str, Any]:
    return {"stream": True, "stream_options": {"include_usage": True}} if case.stream else {}


def _chat_body(case: Case) -> dict[str, Any]:
    return {
        "model": case.model,
        "messages": [{"role": "user", "content": case.prompt}],
        "max_tokens": case.max_tokens,
        **_stream_fields(case),
        **contracts.request_fields(case),
        **case.params,
    }


def _completion_body(case: Case) -> dict[str, Any]:
    return {"model": case.model, "prompt": case.prompt, "max_tokens": case.max_tokens, **_stream_fields(case), **case.params}


def _embedding_body(case: Case) -> dict[str, Any]:
    extra = {"encoding_format": case.encoding_format} if case.encoding_format else {}
    return {"model": case.model, "input": list(case.input), **extra, **case.params}


def _rerank_body(case: Case) -> dict[str, Any]:
    return {"model": case.model, "query": RERANK_QUERY, "documents": list(RERANK_DOCUMENTS), **case.params}


def _listed(data: Any, key: str, what: str) -> list[Any]:
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


def _first_choice(data: Any) -> dict[str, Any]:
    choice = _listed(data, "choices", "choices")[0]
    if not isinstance(choice, dict):
        raise ProbeError(ErrorClass.SCHEMA, "choices[0] is not an object")
    return choice


def check_chat_message(message: Any, finish_reason: Any) -> str:
    """Visible content or a tool call is an answer; reasoning alone shows a live model that ran out of budget."""
    if not isinstance(message, dict):
        raise ProbeError(ErrorClass.SCHEMA, "choices[0].message is not an object")
    if finish_reason == "error":
        raise ProbeError(ErrorClass.BAD_RESPONSE, "the reply finished with finish_reason=error")
    content, calls = message.get("content"), message.get("tool_calls")
    if content is not None and not isinstance(content, str):
        raise ProbeError(ErrorClass.SCHEMA, f"message content is {type(content).__name__}, expected a string")
    if calls is not None and not (isinstance(calls, list) and all(isinstance(call, dict) for call in calls)):
        raise ProbeError(ErrorClass.SCHEMA, f"message tool_calls is {type(calls).__name__}, expected a list of objects")
    if content and content.strip():
        return f"replied {len(content)} chars (finish_reason={finish_reason})"
    if calls:
        return f"replied with {len(calls)} tool call(s) (finish_reason={finish_reason})"
    if message.get("reasoning_content") or message.get("reasoning"):
        return f"reasoning only, no visible content yet (finish_reason={finish_reason})"
    raise ProbeError(ErrorClass.EMPTY, f"reply content is empty (finish_reason={finish_reason})")


def _check_chat(case: Case, data: Any) -> Checked:
    choice = _first_choice(data)
    message = choice.get("message")
    summary = check_chat_message(message, choice.get("finish_reason"))
    return Checked(summary, text=message.get("content") or "", message=message)


def _check_completion(case: Case, data: Any) -> Checked:
    choice = _first_choice(data)
    return _completion_text(choice.get("text"), choice.get("finish_reason"))


def _completion_text(text: Any, finish_reason: Any) -> Checked:
    if not isinstance(text, str):
        raise ProbeError(ErrorClass.SCHEMA, "choices[0].text is not a string")
    if not text.strip():
        raise ProbeError(ErrorClass.EMPTY, f"completion text is empty (finish_reason={finish_reason})")
    return Checked(f"completed {len(text)} chars (finish_reason={finish_reason})", text=text)


def _check_embedding(case: Case, data: Any) -> Checked:
    items = _listed(data, "data", "embeddings")
    if len(items) != len(case.input):
        raise ProbeError(ErrorClass.SCHEMA, f"got {len(items)} embeddings for {len(case.input)} inputs")
    sizes = set()
    for i, item in enumerate(items):
        vector = _vector(item.get("embedding") if isinstance(item, dict) else None, i)
        bad = next((v for v in vector if not _finite(v)), None)
        if bad is not None:
            raise ProbeError(ErrorClass.SCHEMA, f"data[{i}].embedding holds a non-finite value ({bad!r})")
        sizes.add(len(vector))
    if len(sizes) > 1:
        raise ProbeError(ErrorClass.SCHEMA, f"embeddings differ in size: {sorted(sizes)}")
    size = sizes.pop()
    if case.dimensions is not None and size != case.dimensions:
        raise ProbeError(ErrorClass.SCHEMA, f"embedding has {size} dimensions, expected {case.dimensions}")
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


def _check_rerank(case: Case, data: Any) -> Checked:
    results = _listed(data, "results", "results")
    documents = len(RERANK_DOCUMENTS)
    scored: list[tuple[float, int]] = []
    for i, result in enumerate(results):
        if not isinstance(result, dict):
            raise ProbeError(ErrorClass.SCHEMA, f"results[{i}] is not an object")
        score = result.get("relevance_score", result.get("score"))
        if not _finite(score):
            raise ProbeError(ErrorClass.SCHEMA, f"results[{i}] has no finite relevance_score ({score!r})")
        index = result.get("index")
        if not isinstance(index, int) or not 0 <= index < documents:
            raise ProbeError(ErrorClass.SCHEMA, f"results[{i}].index {index!r} is not a document index")
        scored.append((score, index))
    distinct = len({index for _, index in scored})
    if len(results) != documents or distinct != documents:
        raise ProbeError(ErrorClass.SCHEMA, f"got {distinct} distinct scores for {documents} documents")
    place = [index for _, index in sorted(scored, reverse=True)].index(0) + 1
    if case.rank_check and place != 1:
        raise ProbeError(
            ErrorClass.EXPECTATION, f"the relevant document ranked {place} of {documents} for {RERANK_QUERY!r}"
        )
    return Checked(f"{documents} documents scored, relevant one ranked {place}")


def _check_models(case: Case, data: Any) -> Checked:
    items = _listed(data, "data", "models")
    ids = [item.get("id") for item in items if isinstance(item, dict)]
    if case.model not in ids:
        shown = ", ".join(map(str, ids[:5])) + (", …" if len(ids) > 5 else "")
        raise ProbeError(ErrorClass.EXPECTATION, f"model {case.model!r} is not listed by GET /models ({len(ids)} listed: {shown})")
    return Checked(f"listed among {len(ids)} models")


def consumer(case: Case) -> Callable[[httpx.Response, Clock], Awaitable[Any]]:
    """How the exchange reads this case's reply: as a stream, or as one body."""
    return read_stream if case.stream else read_body


def evaluate(case: Case, result: Timed) -> Verdict:
    """Judge a completed exchange: shape, content, contracts and SLOs. A ProbeError carries the metrics measured."""
    metrics: dict[str, float] = {}
    try:
        if case.stream:
            reply = assemble(result.value, result.duration)
            metrics = reply.metrics(result.duration)
            checked = _check_stream(case, reply)
        else:
            data = parse_json(result)
            _refuse_error_object(data)
            checked = PROBES[case.type].check(case, data)
        if checked.text is not None:
            contracts.check_reply(case, checked.text, checked.message)
        contracts.check_slo(case, result.duration, metrics)
    except ProbeError as error:
        error.metrics = metrics
        raise
    return Verdict(checked.summary, metrics)


def _check_stream(case: Case, reply: StreamReply) -> Checked:
    if case.type == "completion":
        checked = _completion_text(reply.content, reply.finish_reason)
    else:
        message = reply.message()
        checked = Checked(check_chat_message(message, reply.finish_reason), text=reply.content, message=message)
    return Checked(f"streamed: {checked.summary}", checked.text, checked.message)


def _refuse_error_object(data: Any) -> None:
    """An `error` object in a 200 is a failure, also next to a reply (a gateway whose provider failed)."""
    if isinstance(data, dict) and data.get("error"):
        said = server_message({"error": data["error"]}) or "no message"
        raise ProbeError(ErrorClass.BAD_RESPONSE, f"error object in HTTP 200: {said}")


def _finite(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


PROBES: dict[str, Probe] = {
    "chat": Probe("POST", "/chat/completions", _chat_body, _check_chat),
    "completion": Probe("POST", "/completions", _completion_body, _check_completion),
    "embedding": Probe("POST", "/embeddings", _embedding_body, _check_embedding),
    "rerank": Probe("POST", "/rerank", _rerank_body, _check_rerank),
    "models": Probe("GET", "/models", lambda case: None, _check_models),
}
