"""Reasoning models: the token parameter they accept, reasoning_effort passed through, and require_content."""

from __future__ import annotations

from testbed.openai_server import FakeOpenAI

from .helpers import endpoint, model


def test_a_reasoning_model_gets_max_completion_tokens_and_its_effort(server: FakeOpenAI, run_monitor) -> None:
    models = [
        model("o+reasoner", id="refuses-max-tokens"),
        model("o+reasoner", id="o-series", token_param="max_completion_tokens", reasoning_effort="low", max_tokens=64),
    ]
    run = run_monitor({"endpoints": [endpoint(server.url, *models)]})
    assert run.error_class("svc/refuses-max-tokens") == "client_error"
    assert "Use 'max_completion_tokens' instead" in run.reason("svc/refuses-max-tokens")
    assert run.cases["svc/o-series"]["model_monitor.verdict"] == "pass", run.reason("svc/o-series")
    sent = [r.body for r in server.requests_for("o+reasoner") if "max_completion_tokens" in r.body]
    assert sent == [{**sent[0], "max_completion_tokens": 64, "reasoning_effort": "low"}]
    assert "max_tokens" not in sent[0]


def test_reasoning_without_content_passes_unless_content_is_required(server: FakeOpenAI, run_monitor) -> None:
    models = [
        model("r+reasoning", id="alive"),
        model("r+reasoning", id="required", require_content=True),
        model("r+reasoning+nocontent", id="required-stream", require_content=True, stream=True),
    ]
    run = run_monitor({"endpoints": [endpoint(server.url, *models)]}, "-n", "2")
    assert (
        run.reason("svc/alive") == "reasoning only, no visible content; replied with reasoning (finish_reason=length)"
    )
    assert run.cases["svc/alive"]["model_monitor.degraded"] == "reasoning only, no visible content"
    for case_id in ("svc/required", "svc/required-stream"):
        assert run.error_class(case_id) == "empty", run.reason(case_id)
        assert "reasoning but no visible content, and require_content is set" in run.reason(case_id)


def test_reasoning_fields_belong_to_chat(server: FakeOpenAI, run_monitor) -> None:
    for field, value in (
        ("token_param", "max_completion_tokens"),
        ("reasoning_effort", "high"),
        ("require_content", True),
    ):
        run = run_monitor({"endpoints": [endpoint(server.url, model("e", "embedding", **{field: value}))]})
        assert run.ret == 4, run.output
        owners = "chat" if field != "require_content" else "chat or completion or messages or responses"
        assert f"endpoints[0].models[0].{field}: applies only to type {owners}, not embedding" in run.output
    run = run_monitor({"endpoints": [endpoint(server.url, model("c", token_param="max_output_tokens"))]})
    assert run.ret == 4 and "token_param" in run.output
    assert server.requests == []
