"""The messages type end to end: POST /v1/messages (Anthropic's Messages API), plain and streamed as typed events,
against FakeOpenAI."""

from __future__ import annotations

import pytest

from testbed.openai_server import FakeOpenAI

from .faults import MESSAGES_FAULTS
from .helpers import WORKERS, endpoint, model

KEY = "sk-ant-messages-key-0815"


def messages(name: str, **extra: object) -> dict:
    return model(name, "messages", id=name, **extra)


def test_a_healthy_message_passes_plain_and_streamed(run_monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSAGES_KEY", KEY)
    stream = "ms+tokens=10+token_delay=0.05+delay=0.2"
    think = "ms-think+reasoning+tokens=4+token_delay=0.02"
    models = [
        messages("m-ok", expect={"contains": "pong"}),
        messages(stream, stream=True, expect={"regex": "^(pong)+$"}),
        messages(think, stream=True, max_ttft=30),
    ]
    with FakeOpenAI(api_key=KEY) as server:
        run = run_monitor({"endpoints": [endpoint(server.url, *models, api_key_env="MESSAGES_KEY")]})
        sent = server.requests_for("m-ok")[-1]
        streamed = server.requests_for(stream)[-1]
    assert run.ret == 0, run.output
    assert run.reason("svc/m-ok") == "replied 4 chars (stop_reason=end_turn, 2 output tokens)"
    assert (sent.path, sent.body) == (
        "/v1/messages",
        {
            "model": "m-ok",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Reply with the single word: pong"}],
        },
    )
    assert (sent.headers["x-api-key"], sent.headers["authorization"]) == (KEY, f"Bearer {KEY}")
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert streamed.body["stream"] is True
    props = run.cases[f"svc/{stream}"]
    metrics = {k.removeprefix("model_monitor.metric."): float(v) for k, v in props.items() if ".metric." in k}
    duration = float(props["model_monitor.duration_s"])
    assert props["model_monitor.reason"] == "streamed: replied 20 chars (stop_reason=end_turn, 10 output tokens)"
    assert 0.2 <= metrics["ttft_s"] < duration, "the first delta comes after the 0.2 s delay"
    assert (metrics["output_tokens"], metrics["completion_tokens"]) == (10, 10), "message_delta's usage.output_tokens"
    assert metrics["prompt_tokens"] > 0, "message_start's usage.input_tokens"
    assert metrics["tokens_per_s"] == pytest.approx(9 / (9 * metrics["itl_mean_s"])), "after the first token"
    thinking = run.cases[f"svc/{think}"]
    assert float(thinking["model_monitor.metric.ttft_s"]) < float(thinking["model_monitor.metric.ttfc_s"]), (
        "thinking is alive first"
    )


def test_the_servers_error_is_the_reason(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [
        messages("m+apierror"),
        messages("m+apierror=529", retries=0),
        messages("ms+errorevent", stream=True),
        messages("ms+cut", stream=True),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 1
    assert run.reason("svc/m+apierror").startswith("bad_response: error object in HTTP 200: Internal server error")
    assert run.error_class("svc/m+apierror=529") == "server_error"
    assert run.reason("svc/m+apierror=529").endswith(": Overloaded (overloaded_error)"), "the status and the words"
    assert run.reason("svc/ms+errorevent").startswith(
        "stream_broken: error event in the stream after 5 events: Overloaded"
    )
    assert run.reason("svc/ms+cut").startswith("stream_broken: connection lost reading the stream")


def test_a_slo_and_expect_apply_as_on_chat(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [
        messages("m-slow+delay=0.3", max_latency=0.1, retries=0),
        messages("m-said", expect={"contains": "pang"}),
        messages("ms-late+delay=0.3+tokens=4", stream=True, max_ttft=0.1),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 1
    assert {run.error_class(f"svc/{m['name']}") for m in models} == {"slo", "expectation"}
    assert run.error_class("svc/ms-late+delay=0.3+tokens=4") == "slo" and "max_ttft 0.1" in run.reason(
        "svc/ms-late+delay=0.3+tokens=4"
    )
    assert "reply does not contain 'pang'" in run.reason("svc/m-said")


@WORKERS
def test_each_fault_fails_with_its_class_and_one_line(
    openai_server: FakeOpenAI, run_monitor, workers: list[str]
) -> None:
    models = [messages(name, **extra) for name, extra, _, _ in MESSAGES_FAULTS] + [messages("m-fine", stream=True)]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, *workers)
    assert run.ret == 1
    assert run.cases["svc/m-fine"]["model_monitor.verdict"] == "pass"
    for name, _, error_class, piece in MESSAGES_FAULTS:
        run.assert_fault(f"svc/{name}", error_class, piece)


def test_a_stream_held_open_after_message_stop_ends_there(openai_server: FakeOpenAI, run_monitor) -> None:
    """The Messages API sends no [DONE]: reading stops at message_stop, not when a proxy closes the line."""
    entry = {
        "name": "ms+linger+tokens=3+token_delay=0.01",
        "type": "messages",
        "id": "lingering",
        "stream": True,
        "timeout": 3,
    }
    run = run_monitor({"endpoints": [endpoint(openai_server.url, entry)]})
    assert run.cases["svc/lingering"]["model_monitor.verdict"] == "pass", run.reason("svc/lingering")
    assert float(run.cases["svc/lingering"]["model_monitor.duration_s"]) < 3
