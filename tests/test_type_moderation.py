"""The moderation type end to end: POST /v1/moderations against FakeOpenAI, its faults, and its config errors."""

from __future__ import annotations

import pytest

from testbed.openai_server import FakeOpenAI

from .faults import MODERATION_FAULTS
from .helpers import WORKERS, endpoint, model


@WORKERS
def test_a_healthy_moderation_passes_and_each_fault_fails_with_its_class(
    openai_server: FakeOpenAI, run_monitor, workers: list[str]
) -> None:
    models = [
        model("mod-ok", "moderation", id="ok"),
        model("mod-two", "moderation", id="two", input=["a calm sentence", "flagme please"]),
        *(model(name, "moderation", id=name) for name, _, _ in MODERATION_FAULTS),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, *workers)
    assert run.ret == 1, run.output
    assert run.reason("svc/ok") == "1 result, not flagged (13 categories)"
    assert run.reason("svc/two") == "2 results, 1 flagged (13 categories)"
    for name, error_class, piece in MODERATION_FAULTS:
        run.assert_fault(f"svc/{name}", error_class, piece)
    sent = openai_server.requests_for("mod-ok")[-1]
    assert sent.path == "/v1/moderations" and isinstance(sent.body["input"], str)
    assert openai_server.requests_for("mod-two")[-1].body["input"] == ["a calm sentence", "flagme please"]


def test_input_in_defaults_reaches_moderation_and_embedding_alike(openai_server: FakeOpenAI, run_monitor) -> None:
    """`input` is a field of both types: the schema takes it on either, and from defaults for both."""
    models = [model("mod-default", "moderation"), model("embed-default", "embedding")]
    run = run_monitor({"defaults": {"input": ["one", "two"]}, "endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 0, run.output
    assert run.reason("svc/mod-default") == "2 results, not flagged (13 categories)"
    assert run.reason("svc/embed-default") == "2 vector(s) of 8 dimensions"


@pytest.mark.parametrize(
    ("entry", "piece"),
    [
        (model("m", "moderation", input=""), "endpoints[0].models[0].input: '' should be non-empty"),
        (model("m", "moderation", input=[]), "endpoints[0].models[0].input: must not be empty"),
        (model("m", "moderation", input=7), "endpoints[0].models[0].input: 7 is not valid"),
        (
            model("m", "chat", input="hello"),
            "endpoints[0].models[0].input: applies only to type embedding or moderation or responses or speech, not chat",
        ),
        (
            model("m", "moderation", prompt="hi"),
            "endpoints[0].models[0].prompt: applies only to type chat or completion or image or messages, not moderation",
        ),
    ],
    ids=["empty-text", "empty-list", "number", "input-on-chat", "prompt-on-moderation"],
)
def test_a_wrong_moderation_field_stops_the_run_naming_it(
    openai_server: FakeOpenAI, run_monitor, entry: dict, piece: str
) -> None:
    run = run_monitor({"endpoints": [endpoint(openai_server.url, entry)]})
    assert run.ret == 4
    assert piece in run.output, run.output
