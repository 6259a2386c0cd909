"""The responses type end to end: POST /v1/responses, plain and streamed as typed events, against FakeOpenAI."""

from __future__ import annotations

import pytest

from testbed.openai_server import FakeOpenAI

from .faults import RESPONSES_FAULTS
from .helpers import WORKERS, endpoint, model


def responses(name: str, **extra: object) -> dict:
    return model(name, "responses", id=name, **extra)


def test_a_healthy_response_passes_plain_and_streamed(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [
        responses("r-ok", expect={"contains": "pong"}),
        responses("r-stream+tokens=10+token_delay=0.05+delay=0.2", stream=True, expect={"regex": "^(pong)+$"}),
        responses("r-think+reasoning+tokens=4+token_delay=0.02", stream=True, max_ttft=30),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 0, run.output
    assert run.reason("svc/r-ok") == "replied 4 chars (status=completed, 2 output tokens)"
    sent = openai_server.requests_for("r-ok")[-1]
    assert (sent.path, sent.body) == (
        "/v1/responses",
        {"model": "r-ok", "input": "Reply with the single word: pong", "max_output_tokens": 256},
    )
    name = "r-stream+tokens=10+token_delay=0.05+delay=0.2"
    assert openai_server.requests_for(name)[-1].body["stream"] is True
    props = run.cases[f"svc/{name}"]
    metrics = {k.removeprefix("model_monitor.metric."): float(v) for k, v in props.items() if ".metric." in k}
    duration = float(props["model_monitor.duration_s"])
    assert props["model_monitor.reason"] == "streamed: replied 20 chars (status=completed, 10 output tokens)"
    assert 0.2 <= metrics["ttft_s"] < duration - 0.4, "the first delta after the 0.2 s delay, 9 more 0.05 s apart"
    assert metrics["output_tokens"] == 10, "usage.output_tokens of the final response"
    assert metrics["tokens_per_s"] == pytest.approx(9 / (9 * metrics["itl_mean_s"])), "after the first token"
    assert 0.05 <= metrics["itl_max_s"]
    think = run.cases["svc/r-think+reasoning+tokens=4+token_delay=0.02"]
    assert float(think["model_monitor.metric.ttft_s"]) < float(think["model_monitor.metric.ttfc_s"]), (
        "reasoning is alive first"
    )


@WORKERS
def test_each_fault_fails_with_its_class_and_one_line(
    openai_server: FakeOpenAI, run_monitor, workers: list[str]
) -> None:
    models = [responses(name, **extra) for name, extra, _, _ in RESPONSES_FAULTS] + [responses("r-fine", stream=True)]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, *workers)
    assert run.ret == 1
    assert run.cases["svc/r-fine"]["model_monitor.verdict"] == "pass"
    for name, _, error_class, piece in RESPONSES_FAULTS:
        run.assert_fault(f"svc/{name}", error_class, piece)


def test_a_stream_held_open_after_its_terminal_event_ends_there(openai_server: FakeOpenAI, run_monitor) -> None:
    """The Responses API sends no [DONE]: reading stops at response.completed, not when a proxy closes the line."""
    entry = {
        "name": "rs+linger+tokens=3+token_delay=0.01",
        "type": "responses",
        "id": "lingering",
        "stream": True,
        "timeout": 3,
    }
    run = run_monitor({"endpoints": [endpoint(openai_server.url, entry)]})
    assert run.cases["svc/lingering"]["model_monitor.verdict"] == "pass", run.reason("svc/lingering")
    assert float(run.cases["svc/lingering"]["model_monitor.duration_s"]) < 3
