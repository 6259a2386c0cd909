"""LLM-grade checks: stream timings and integrity, contracts, SLOs, the error classes and retries."""

from __future__ import annotations

import pytest

from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .faults import STREAM_FAULTS
from .helpers import WORKERS, endpoint, model


def stream(name: str, type: str = "chat", **extra: object) -> dict:
    return model(name, type, stream=True, **extra)


def test_a_healthy_stream_passes_with_its_timings(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [
        stream("st-ok+tokens=10+token_delay=0.05+delay=0.2", id="ok"),
        stream("st-think+reasoning+tokens=4+token_delay=0.02", id="think"),
        stream("st-completion+tokens=3", "completion", id="completion"),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 0, run.output
    ok = {k.removeprefix("model_monitor.metric."): float(v) for k, v in run.cases["svc/ok"].items() if ".metric." in k}
    duration = float(run.cases["svc/ok"]["model_monitor.duration_s"])
    assert 0.2 <= ok["ttft_s"] < duration - 0.4, "the first token after the 0.2 s delay, 9 more 0.05 s apart"
    assert ok["output_tokens"] == 10, "usage.completion_tokens from stream_options.include_usage"
    assert ok["tokens_per_s"] == pytest.approx(9 / (9 * ok["itl_mean_s"])), "the server's tokens after the first"
    assert ok["tokens_per_s"] <= 20, "never faster than the server sent them"
    assert 0.05 <= ok["itl_max_s"] and ok["itl_mean_s"] <= ok["itl_max_s"]
    think = run.cases["svc/think"]
    assert float(think["model_monitor.metric.ttft_s"]) < float(think["model_monitor.metric.ttfc_s"]), (
        "reasoning counts as alive first"
    )
    request = openai_server.requests_for("st-ok+tokens=10+token_delay=0.05+delay=0.2")[-1].body
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    run.result.stdout.fnmatch_lines(["svc/ok * chat * PASS * 0.*s * 0.2*s * *.? * streamed: replied *"])


@WORKERS
def test_each_way_a_stream_breaks_is_its_own_failure(
    openai_server: FakeOpenAI, run_monitor, workers: list[str]
) -> None:
    models = [stream(name, id=name) for name, _, _ in STREAM_FAULTS] + [stream("st-fine", id="fine")]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, *workers)
    assert run.ret == 1
    assert run.cases["svc/fine"]["model_monitor.verdict"] == "pass"
    for name, error_class, piece in STREAM_FAULTS:
        run.assert_fault(f"svc/{name}", error_class, piece)


CONTRACTS = [
    # model entry, expected class ("" = passes), piece of the reason
    (model("ct-json", json_mode=True), "", "replied"),
    (
        model("ct-json+nojson", json_mode=True),
        "expectation",
        "reply is not JSON although response_format asked for JSON",
    ),
    (model("ct-tool", tool_call=True), "", "tool call"),
    (stream("ct-tool-stream", tool_call=True), "", "tool call"),
    (model("ct-tool+notool", tool_call=True), "expectation", "reply carries no tool call"),
    (model("ct-tool+badtool", tool_call=True), "expectation", "tool call arguments are not a JSON object"),
    (model("ct-contains", expect={"contains": "pong"}), "", "replied"),
    (model("ct-contains-no", expect={"contains": "banana"}), "expectation", "reply does not contain 'banana'"),
    (model("ct-regex-no", expect={"regex": "^\\d+$"}), "expectation", "reply does not match /^\\d+$/"),
    (
        model("ct-schema", json_mode=True, expect={"json_schema": {"type": "object", "required": ["answer"]}}),
        "",
        "replied",
    ),
    (
        model("ct-schema-no", json_mode=True, expect={"json_schema": {"type": "object", "required": ["city"]}}),
        "expectation",
        "reply JSON does not match expect.json_schema at (top level): 'city' is a required property",
    ),
    (model("ct-dims+dims=384", "embedding", dimensions=384), "", "384 dimensions"),
    (model("ct-dims-no+dims=12", "embedding", dimensions=384), "schema", "embedding has 12 dimensions, expected 384"),
    (model("ct-b64+dims=16", "embedding", encoding_format="base64", dimensions=16), "", "16 dimensions"),
    (model("ct-nan+nan", "embedding"), "schema", "non-finite value (nan)"),
    (model("ct-rank", "rerank", rank_check=True), "", "relevant one ranked 1"),
    (model("ct-rank+badrank", "rerank", rank_check=True), "expectation", "the relevant document ranked 3 of 3"),
    (model("ct-slow+delay=0.3", max_latency=0.1), "slo", "latency 0.3"),
    (stream("ct-ttft+delay=0.3", max_ttft=0.1), "slo", "ttft 0.3"),
    (stream("ct-rate+tokens=5+token_delay=0.1", min_tokens_per_s=100), "slo", "< min_tokens_per_s 100"),
]


def test_contracts_and_slos_are_opt_in_and_say_what_missed(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [entry for entry, _, _ in CONTRACTS]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    for entry, error_class, piece in CONTRACTS:
        case_id = "svc/" + entry["name"]
        assert run.error_class(case_id) == error_class, (case_id, run.reason(case_id))
        assert piece in run.reason(case_id), (case_id, run.reason(case_id))
    request = openai_server.requests_for("ct-tool")[-1].body
    assert request["tools"][0]["function"]["name"] == "get_weather"
    assert openai_server.requests_for("ct-json")[-1].body["response_format"] == {"type": "json_object"}
    assert openai_server.requests_for("ct-b64+dims=16")[-1].body["encoding_format"] == "base64"


def test_slo_breach_reports_its_numbers_to_cronitor(openai_server: FakeOpenAI, run_monitor) -> None:
    with Receiver() as receiver:
        run = run_monitor(
            {
                "endpoints": [
                    endpoint(
                        openai_server.url, stream("slo+delay=0.3+tokens=3+token_delay=0.01", id="slo", max_ttft=0.1)
                    )
                ]
            },
            f"--cronitor-url={receiver.url}/p/slokey1234",
        )
        end = receiver.pings[-1].query
    assert run.ret == 1
    assert end["state"] == ["fail"] and end["message"][0].startswith("slo: ttft ")
    metrics = dict(m.split(":") for m in end["metric"])
    assert set(metrics) >= {"duration", "ttft_s", "tokens_per_s", "output_tokens"}
    assert float(metrics["ttft_s"]) >= 0.3


def test_retries_honour_retry_after_and_only_retry_transient_classes(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [
        model("rt-429+flaky429=1", id="after-429", retries=1),
        model("rt-503+flaky=1", id="after-503", retries=2),
        model("rt-400+status=400", id="no-retry", retries=2),
        model("rt-always+status=503", id="gives-up", retries=1),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.reason("svc/after-429").startswith("passed after 1 retry: 429")
    first, second = openai_server.requests_for("rt-429+flaky429=1")
    assert second.received - first.received >= 1.0, "Retry-After: 1 was honoured"
    after_503 = run.cases["svc/after-503"]
    assert after_503["model_monitor.reason"].startswith("passed after 1 retry: 503")
    assert (
        after_503["model_monitor.attempts"].startswith("server_error 503 ")
        and "; ok 200 " in after_503["model_monitor.attempts"]
    )
    assert float(after_503["model_monitor.duration_s"]) == pytest.approx(
        float(after_503["model_monitor.attempts"].rsplit(" ", 1)[1].rstrip("s")), abs=0.001
    ), "the reported duration is the successful attempt's"
    assert len(openai_server.requests_for("rt-400+status=400")) == 1
    assert run.error_class("svc/no-retry") == "client_error"
    assert len(openai_server.requests_for("rt-always+status=503")) == 2
    assert run.reason("svc/gives-up").endswith("(2 attempts)")
