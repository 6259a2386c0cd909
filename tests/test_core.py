"""The monitor end to end: endpoints file in, one timed case per model, verdicts, reasons and exit codes out."""

from __future__ import annotations

import pytest

from testbed.openai_server import FakeOpenAI

from .helpers import endpoint, model

SEED_ENDPOINTS = """\
endpoints:
  - name: "my-service"
    url: "{url}"
    models:
      - name: "embed"
        type: "embedding"
        monitor: "my-embedding-model"  # Optional: cronitor monitor name
      - name: "generate"
        type: "chat"
        monitor: "my-chat-model"  # Optional: cronitor monitor name
"""

ALL_TYPES = [
    model("chat-model", "chat"),
    model("completion-model", "completion"),
    model("embed-model", "embedding"),
    model("rerank-model", "rerank"),
    model("chat-model", "models", id="listed"),
]


def test_every_model_type_passes_with_a_measured_duration(openai_server: FakeOpenAI, run_monitor) -> None:
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *ALL_TYPES)]})
    assert run.ret == 0, run.output
    assert set(run.cases) == {
        "svc/chat-model",
        "svc/completion-model",
        "svc/embed-model",
        "svc/rerank-model",
        "svc/listed",
    }
    for case_id, props in run.cases.items():
        assert props["model_monitor.verdict"] == "pass", case_id
        assert 0 < float(props["model_monitor.duration_s"]) < 5, case_id
    run.result.stdout.fnmatch_lines(
        [
            "*model-monitor summary*",
            "case * type * verdict * duration * ttft * tok/s * reason",
            "svc/chat-model * chat * PASS * -  * -  * replied 4 chars*",
            "svc/embed-model * embedding * PASS * - * - * 1 vector(s) of 8 dimensions",
            "svc/rerank-model * rerank * PASS * - * - * 3 documents scored, relevant one ranked 1",
            "svc/listed * models * PASS * - * - * listed among 4 models",
        ]
    )


def test_the_original_charts_example_loads_unchanged_and_passes(openai_server: FakeOpenAI, run_monitor) -> None:
    run = run_monitor(SEED_ENDPOINTS.format(url=openai_server.url), "-v")
    assert run.ret == 0, run.output
    run.result.stdout.fnmatch_lines(
        ["*test_endpoint?my-service/embed? PASSED*", "*test_endpoint?my-service/generate? PASSED*"]
    )
    assert run.cases["my-service/embed"]["model_monitor.monitor"] == "my-embedding-model"


def test_url_with_or_without_v1_gives_the_same_requests(openai_server: FakeOpenAI, run_monitor) -> None:
    endpoints = [
        endpoint(openai_server.url, model("url-bare"), name="bare"),
        endpoint(openai_server.url + "/", model("url-slash"), name="slash"),
        endpoint(openai_server.url + "/v1", model("url-v1"), name="v1"),
        endpoint(openai_server.url + "/v1/", model("url-v1-slash"), name="v1slash"),
    ]
    run = run_monitor({"endpoints": endpoints})
    assert run.ret == 0, run.output
    paths = {r.path for r in openai_server.requests if r.model and r.model.startswith("url-")}
    assert paths == {"/v1/chat/completions"}


def test_a_name_that_does_not_resolve_is_a_dns_failure(run_monitor) -> None:
    """In a network namespace of its own (unshare -n), so the lookup cannot leave the machine."""
    run = run_monitor(
        {"endpoints": [endpoint("http://model-monitor-test.invalid", model("m"))]}, prefix=("unshare", "-n", "--")
    )
    assert run.ret == 1
    assert run.error_class("svc/m") == "dns"
    assert "cannot resolve host 'model-monitor-test.invalid'" in run.reason("svc/m")


def test_embedding_and_rerank_shapes_are_validated(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [
        model("e+nan", "embedding", id="nan"),
        model("e+wrongcount", "embedding", id="count", input=["a", "b"]),
        model("e+empty", "embedding", id="empty"),
        model("r+wrongcount", "rerank", id="rerank-count"),
        model("absent-model", "models", id="absent"),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 1
    assert run.error_class("svc/nan") == "schema" and "non-finite" in run.reason("svc/nan")
    assert run.error_class("svc/count") == "schema" and "1 embeddings for 2 inputs" in run.reason("svc/count")
    assert run.error_class("svc/empty") == "empty"
    assert run.error_class("svc/rerank-count") == "schema" and "for 3 documents" in run.reason("svc/rerank-count")
    assert run.error_class("svc/absent") == "expectation" and "'absent-model' is not listed" in run.reason("svc/absent")


def test_duration_is_the_requests_own(openai_server: FakeOpenAI, run_monitor) -> None:
    run = run_monitor({"endpoints": [endpoint(openai_server.url, model("slow+delay=0.4"), model("fast"))]})
    assert run.ret == 0, run.output
    slow = float(run.cases["svc/slow+delay=0.4"]["model_monitor.duration_s"])
    fast = float(run.cases["svc/fast"]["model_monitor.duration_s"])
    server_side = openai_server.requests_for("slow+delay=0.4")[-1].duration
    assert server_side is not None and 0.4 <= server_side <= slow < server_side + 0.25
    assert fast < slow - 0.2, "a fast case is not charged for the slow one"


def test_a_case_whose_answer_came_is_reported_before_one_still_waiting(openai_server: FakeOpenAI, run_monitor) -> None:
    """A slow endpoint's case collected earlier does not hold back a fast one's report (its verdict, its JUnit entry,
    its pings): while the first case waits for its answer, the fast one's comes, and it is judged next (in one
    process; xdist's workers keep their order)."""
    endpoints = [
        endpoint(openai_server.url, model("first+delay=0.4"), name="a"),
        endpoint(openai_server.url, model("late+delay=1.2"), name="b"),
        endpoint(openai_server.url, model("soon"), name="c"),
    ]
    run = run_monitor({"endpoints": endpoints})
    assert run.ret == 0, run.output
    assert list(run.cases) == ["a/first+delay=0.4", "c/soon", "b/late+delay=1.2"]


def test_retries_pass_and_say_so(openai_server: FakeOpenAI, run_monitor) -> None:
    run = run_monitor({"endpoints": [endpoint(openai_server.url, model("retry-me+flaky=2", retries=2))]})
    assert run.ret == 0, run.output
    props = run.cases["svc/retry-me+flaky=2"]
    assert props["model_monitor.reason"].startswith("passed after 2 retries: 503")
    assert props["model_monitor.attempts"].startswith("server_error 503 ")
    assert len(openai_server.requests_for("retry-me+flaky=2")) == 3


def test_selection_sends_no_request_for_deselected_cases(openai_server: FakeOpenAI, run_monitor) -> None:
    endpoints = [
        endpoint(openai_server.url, model("sel-a", tags=["critical"]), model("sel-b"), name="one"),
        endpoint(openai_server.url, model("sel-c"), name="two"),
    ]
    run = run_monitor({"endpoints": endpoints}, "-m", "critical")
    assert run.ret == 0 and set(run.cases) == {"one/sel-a"}
    run = run_monitor({"endpoints": endpoints}, "-k", "two/")
    assert run.ret == 0 and set(run.cases) == {"two/sel-c"}
    run = run_monitor({"endpoints": endpoints}, "--only", "one/sel-b")
    assert run.ret == 0 and set(run.cases) == {"one/sel-b"}
    counts = {name: len(openai_server.requests_for(name)) for name in ("sel-a", "sel-b", "sel-c")}
    assert counts == {"sel-a": 1, "sel-b": 1, "sel-c": 1}


def test_under_xdist_verdicts_match_and_each_case_sends_one_request(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [model(f"xd-{i}") for i in range(6)] + [model("xd-bad+status=503", id="bad")]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, "-n", "2")
    assert run.ret == 1
    assert {k: v["model_monitor.verdict"] for k, v in run.cases.items()} == {
        **{f"svc/xd-{i}": "pass" for i in range(6)},
        "svc/bad": "fail",
    }
    assert run.error_class("svc/bad") == "server_error"
    for i in range(6):
        assert len(openai_server.requests_for(f"xd-{i}")) == 1
    run.result.stdout.fnmatch_lines(["*model-monitor summary*", "svc/bad * chat * FAIL * server_error: HTTP 503*"])


@pytest.mark.parametrize("only", ["nope", "svc/nope"])
def test_only_naming_nothing_is_a_usage_error(openai_server: FakeOpenAI, run_monitor, only: str) -> None:
    run = run_monitor({"endpoints": [endpoint(openai_server.url, model("m"))]}, "--only", only)
    assert run.ret == 4
    assert f"--only {only!r} names no endpoint and no case id" in run.output
