"""The probe core in-process (the fast tier): every fault table, through the loader, the engine, the exchange, the
stream reader and each type's check, against the loopback testbed server; no pytest run in a subprocess."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from model_monitor.outcome import Outcome
from testbed.openai_server import FakeOpenAI

from .faults import (
    CHAT_FAULTS,
    IMAGE_FAULTS,
    MESSAGES_FAULTS,
    MODERATION_FAULTS,
    RERANK_FAULTS,
    RESPONSES_FAULTS,
    SHAPE_FAULTS,
    SPEECH_FAULTS,
    STREAM_CUT,
    STREAM_FAULTS,
    TRANSCRIPTION_FAULTS,
)
from .helpers import endpoint, model, probe_endpoints

Probe = Callable[..., dict[str, Outcome]]
# case id -> (the model entry, the class and a piece of the reason the outcome must carry)
TABLE: dict[str, tuple[dict[str, Any], str, str]] = {
    **{
        f"chat-{name}": (model(name, timeout=timeout, id=f"chat-{name}"), cls, piece)
        for name, timeout, cls, piece in CHAT_FAULTS
        if name != "f+redirect"
    },  # a redirect needs a second origin
    f"stream-{STREAM_CUT[0]}": (model(STREAM_CUT[0], stream=True, id=f"stream-{STREAM_CUT[0]}"), *STREAM_CUT[2:]),
    **{
        f"stream-{name}": (model(name, stream=True, id=f"stream-{name}"), cls, piece)
        for name, cls, piece in STREAM_FAULTS
    },
    **{f"image-{name}": (model(name, "image", id=f"image-{name}"), cls, piece) for name, cls, piece in IMAGE_FAULTS},
    **{
        f"moderation-{name}": (model(name, "moderation", id=f"moderation-{name}"), cls, piece)
        for name, cls, piece in MODERATION_FAULTS
    },
    **{
        f"rerank-{name}": (model(name, "rerank", id=f"rerank-{name}"), cls, piece) for name, cls, piece in RERANK_FAULTS
    },
    **{
        f"responses-{name}": (model(name, "responses", id=f"responses-{name}", **extra), cls, piece)
        for name, extra, cls, piece in RESPONSES_FAULTS
    },
    **{
        f"messages-{name}": (model(name, "messages", id=f"messages-{name}", **extra), cls, piece)
        for name, extra, cls, piece in MESSAGES_FAULTS
    },
    **{
        f"speech-{name}-{fmt}": (model(name, "speech", id=f"speech-{name}-{fmt}", response_format=fmt), cls, piece)
        for name, fmt, cls, piece in SPEECH_FAULTS
    },
    **{
        f"transcription-{name}": (model(name, "transcription", id=f"transcription-{name}"), cls, piece)
        for name, cls, piece in TRANSCRIPTION_FAULTS
    },
    **{
        f"shape-{name}{'-stream' if stream else ''}": (
            model(name, id=f"shape-{name}{'-stream' if stream else ''}", stream=stream),
            cls,
            piece,
        )
        for name, stream, cls, piece in SHAPE_FAULTS
    },
}


@pytest.fixture(scope="module")
def outcomes(openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every faulty case and a healthy one of each kind, probed together as one run probes them."""
    healthy = [
        model("fine", id="fine"),
        model("fine", stream=True, id="fine-stream"),
        model("fine", "responses", id="fine-responses", stream=True),
        model("fine", "messages", id="fine-messages", stream=True),
        model("embed-model", "embedding", id="fine-embedding"),
    ]
    return probe_endpoints(
        tmp_path_factory.mktemp("probe"),
        [endpoint(openai_server.url, *healthy, *(entry for entry, _, _ in TABLE.values()))],
    )


@pytest.mark.parametrize("case_id", list(TABLE))
def test_each_fault_is_its_own_class_with_the_servers_reason(outcomes: dict[str, Outcome], case_id: str) -> None:
    _, error_class, piece = TABLE[case_id]
    outcome = outcomes[f"svc/{case_id}"]
    assert not outcome.passed
    assert (outcome.error_class, piece in outcome.reason) == (error_class, True), outcome.reason


@pytest.mark.parametrize("case_id", ["fine", "fine-stream", "fine-responses", "fine-messages", "fine-embedding"])
def test_a_healthy_case_beside_them_passes_with_its_timings(outcomes: dict[str, Outcome], case_id: str) -> None:
    outcome = outcomes[f"svc/{case_id}"]
    assert outcome.passed, outcome.reason
    assert outcome.elapsed_s is not None and outcome.elapsed_s > 0
    assert len(outcome.attempts) == 1


def test_a_retried_case_says_so_and_counts_its_attempts(probe: Probe, server: FakeOpenAI) -> None:
    found = probe(
        [
            endpoint(
                server.url,
                model("flaky+flaky=1", id="flaky", retries=1),
                model("down+status=503", id="down", retries=1),
            )
        ]
    )
    assert found["svc/flaky"].passed and found["svc/flaky"].degraded == ("1 retry: 503",), found["svc/flaky"]
    assert [a.error_class for a in found["svc/down"].attempts] == ["server_error", "server_error"]
    assert len(server.requests_for("down+status=503")) == 2


def test_the_api_key_is_sent_and_never_told(probe: Probe) -> None:
    key = "sk-probe-core-key-7731"
    with FakeOpenAI(api_key=key) as keyed:
        found = probe(
            [endpoint(keyed.url, model("m+echoauth", id="echo"), model("m", id="ok"), api_key_env="KEY")],
            environ={"KEY": key},
        )
        wrong = probe(
            [endpoint(keyed.url, model("m", id="wrong"), api_key_env="KEY")], environ={"KEY": "sk-wrong-0000"}
        )
    assert found["svc/ok"].passed, found["svc/ok"].reason
    assert key not in found["svc/echo"].reason
    assert wrong["svc/wrong"].error_class == "auth"


def test_a_spent_budget_is_never_retried_and_an_overload_is(probe: Probe, server: FakeOpenAI) -> None:
    found = probe(
        [
            endpoint(
                server.url,
                model("q+shape=openai-quota", id="quota", retries=2),
                model("o+shape=anthropic-overloaded", id="overloaded", retries=1),
            )
        ]
    )
    assert [a.error_class for a in found["svc/quota"].attempts] == ["quota"]
    assert len(server.requests_for("q+shape=openai-quota")) == 1
    assert [a.error_class for a in found["svc/overloaded"].attempts] == ["server_error", "server_error"]
