"""The one reading of what a server says when it fails (reply.server_said), and the event stream reader's
handling of line ends and of errors outside `data:`: pure logic, so plain tables; the shapes real servers send
run end to end in test_probe.py (faults.SHAPE_FAULTS)."""

from __future__ import annotations

from typing import Any

import pytest

from model_monitor.errors import ErrorClass, ProbeError, status_class
from model_monitor.probe.stream import RawStream, assemble
from model_monitor.reply import MAX_SERVER_MESSAGE, carries_error, said_in_body, server_said
from model_monitor.types.stream_format import ChunkReply


def _nested(depth: int, leaf: Any) -> Any:
    """{"error": {"error": ... leaf}} `depth` deep, built without recursion."""
    node = leaf
    for _ in range(depth):
        node = {"error": node}
    return node


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"error": {"message": "bad model", "type": "invalid_request_error"}}, "bad model (invalid_request_error)"),
        ({"error": "model not found"}, "model not found"),
        ({"detail": [{"loc": ["body", "messages", 0], "msg": "Field required"}] * 5}, "body.messages.0: Field"),
        ({"error": {"message": "x" * 10_000_000}}, "x" * (MAX_SERVER_MESSAGE - 1) + "…"),
        ({"error": {"message": "a\nb\tc\u2028d\u202ee\x00f"}}, r"a b c d\u202ee\u0000f"),
        ({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}, "max_output_tokens"),
        ({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "boom"}}}, "boom"),
        ({"choices": [{"message": {"content": "pong"}}]}, None),
        ({"error": True}, None),
        ({"error": {"message": ["not", "a", "string"], "code": 7}}, "not; a; string"),
        ([{"error": "a list at the top"}], None),
        ("plain string", "plain string"),
    ],
)
def test_the_servers_words_are_found_bounded_and_escaped(data: Any, words: str | None) -> None:
    said = server_said(data).words
    assert said is None if words is None else said is not None and said.startswith(words), said
    assert said is None or len(said) <= MAX_SERVER_MESSAGE


def test_a_body_nested_100000_deep_is_read_without_recursion() -> None:
    assert server_said(_nested(100_000, {"message": "lost in the depths"})).words is None
    assert server_said(_nested(5, {"message": "found"})).words == "found"


def test_a_list_of_a_million_validation_errors_quotes_three_and_counts_the_rest() -> None:
    said = server_said({"detail": [{"loc": ["body"], "msg": "bad"}] * 1_000_000}).words
    assert said == "body: bad; body: bad; body: bad; and 999997 more"


@pytest.mark.parametrize(
    ("status", "data", "expected"),
    [
        (429, {"error": {"type": "insufficient_quota", "message": "You exceeded your current quota"}}, "quota"),
        (429, {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}, "quota"),
        (429, {"error": {"code": "rate_limit_exceeded", "message": "You exceeded your current quota"}}, "rate_limited"),
        (
            429,
            {
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "details": {"error_code": "enforced_spend_limit_reached"},
                    "message": "m",
                },
            },
            "quota",
        ),
        (402, {"error": "anything"}, "quota"),
        (400, {"type": "error", "error": {"type": "billing_error", "message": "m"}}, "quota"),
        (403, {"error": {"code": "403", "message": "Out of call volume quota for OpenAI API."}}, "quota"),
        (403, {"error": {"code": "403", "message": "Forbidden"}}, "auth"),
        (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "server_error"),
        (503, {"error": {"code": "insufficient_quota", "message": "m"}}, "server_error"),  # a 5xx is the server's
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, "rate_limited"),
    ],
)
def test_a_spent_budget_is_quota_and_an_overload_stays_transient(status: int, data: Any, expected: str) -> None:
    error_class = status_class(status, server_said(data).quota)
    assert error_class == expected
    assert error_class.transient is (expected != "quota" and expected != "auth")


def test_quota_is_never_retried() -> None:
    assert not ErrorClass.QUOTA.transient


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"object": "error", "message": "m"}, True),
        ({"type": "error", "error": {}}, True),
        ({"choices": [], "error": {"message": "provider failed"}}, True),
        ({"object": "chat.completion", "error": None}, False),
        ([], False),
    ],
)
def test_an_error_is_known_by_its_member_or_its_name(data: Any, expected: bool) -> None:
    assert carries_error(data) is expected


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"error": {"message": "json"}}', "json"),
        (b'data: {"error": {"message": "sse"}}\n\n', "sse"),
        (b'error: {"message": "field line"}\n\n', "field line"),
        (b"Internal Server Error", "Internal Server Error"),
        (b"<html><body>502</body></html>", None),
        (b"[" * 100_000, None),
        (b"", None),
    ],
)
def test_an_error_body_is_read_whatever_its_form(body: bytes, words: str | None) -> None:
    assert said_in_body(body).words == words


def _stream(*chunks: bytes) -> ChunkReply:
    raw = RawStream([(0.001 * i, chunk) for i, chunk in enumerate(chunks, 1)])
    return assemble(raw, 0.01, ChunkReply())


CHUNK = b'data: {"choices": [{"delta": {"content": "p\xc3\xb6ng"}, "finish_reason": "stop"}]}'


@pytest.mark.parametrize(
    "chunks",
    [
        [CHUNK + b"\n\ndata: [DONE]\n\n"],
        [CHUNK + b"\r\n\r\ndata: [DONE]\r\n\r\n"],
        [CHUNK + b"\r", b"\n\r", b"\ndata: [DONE]\r", b"\n\r\n"],  # CRLF split between chunks
        [CHUNK + b"\r\rdata: [DONE]\r\r"],
        [CHUNK[:44], CHUNK[44:45], CHUNK[45:] + b"\n\n: a comment\n\ndata: [DONE]\n\n"],  # a UTF-8 character split
    ],
)
def test_every_sse_line_end_and_split_reads_the_same(chunks: list[bytes]) -> None:
    reply = _stream(*chunks)
    assert (reply.content, reply.finish_reason, reply.done) == ("pöng", "stop", True)


@pytest.mark.parametrize(
    ("tail", "error_class", "piece"),
    [
        (b'error: {"message": "llama_decode failed"}\n\n', "stream_broken", ": llama_decode failed"),
        (b"error: out of memory\n\n", "stream_broken", ": out of memory"),
        (b'{"error": {"message": "runner stopped", "type": "api_error"}}\n', "stream_broken", ": runner stopped"),
        (b'data: {"object": "error", "message": "engine dead"}\n\n', "stream_broken", ": engine dead"),
        (b'data: {"error": {"code": 402, "message": "no credits"}}\n\n', "quota", ": no credits"),
    ],
)
def test_an_error_outside_data_lines_is_the_servers_words(tail: bytes, error_class: str, piece: str) -> None:
    with pytest.raises(ProbeError) as raised:
        _stream(CHUNK.replace(b'"stop"', b"null") + b"\n\n", tail)
    assert (raised.value.error_class, piece in raised.value.message) == (error_class, True), raised.value.message


def test_a_bare_json_line_that_is_no_error_is_ignored_as_sse_says() -> None:
    reply = _stream(b'{"choices": [{"delta": {"content": "x"}}]}\n', CHUNK + b"\n\ndata: [DONE]\n\n")
    assert reply.content == "pöng"
