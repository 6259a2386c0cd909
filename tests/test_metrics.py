"""Metrics for dashboards: one push per run to a real Prometheus Pushgateway, and OTLP metrics to a loopback receiver."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from model_monitor.case import Case, Endpoint
from model_monitor.outcome import Attempt, Outcome
from model_monitor.reporters.pushgateway import registry
from model_monitor.types import TYPES
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import (
    HELD,
    STOP_GRACE_S,
    WORKERS,
    OtlpReceiver,
    endpoint,
    junit_cases,
    model,
    wait_for_requests,
    wait_for_verdicts,
)

PUSHGATEWAY = "prometheus-pushgateway"
READY_WITHIN_S = 20.0
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Gateway:
    url: str

    def series(self, instance: str = "default") -> Series:
        """name and labels (job and instance left out) -> value, of the group our pushes made."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        found: Series = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = dict(sample.labels)
                if labels.pop("job", None) == "model-monitor" and labels.pop("instance", None) == instance:
                    found[(sample.name, tuple(sorted(labels.items())))] = sample.value
        return found


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """A real Pushgateway on a free loopback port, keeping nothing on disk."""
    port = free_port()
    process = subprocess.Popen(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the Pushgateway did not start"
                time.sleep(0.1)
        yield Gateway(url)
    finally:
        process.terminate()
        process.wait(timeout=10)


def labels(case: str, endpoint_name: str = "svc", type_: str = "chat", **extra: str) -> tuple[tuple[str, str], ...]:
    model_name = case.split("/", 1)[1]
    return tuple(sorted({"endpoint": endpoint_name, "model": model_name, "type": type_, "case": case, **extra}.items()))


def names_for(series: Series, case: str) -> set[str]:
    return {name for name, found in series if dict(found).get("case") == case}


@WORKERS
def test_a_run_pushes_every_case_series(server: FakeOpenAI, gateway: Gateway, run_monitor, workers: list[str]) -> None:
    """One push at the run's end carries each case's series with its labels and values, whatever process ran it."""
    models = [model("ok", stream=True), model("down+status=500", id="down")]
    before = time.time()
    run = run_monitor({"endpoints": [endpoint(server.url, *models)]}, f"--pushgateway-url={gateway.url}", *workers)
    assert run.ret == 1, run.output
    series = gateway.series()
    ok, down = (
        labels("svc/ok"),
        (("case", "svc/down"), ("endpoint", "svc"), ("model", "down+status=500"), ("type", "chat")),
    )
    assert series[("model_monitor_probe_success", ok)] == 1
    assert series[("model_monitor_probe_success", down)] == 0
    assert series[("model_monitor_probe_degraded", ok)] == 0
    assert series[("model_monitor_probe_attempts", ok)] == 1
    assert series[("model_monitor_probe_duration_seconds", ok)] == pytest.approx(
        float(run.cases["svc/ok"]["model_monitor.duration_s"])
    )
    assert series[("model_monitor_probe_ttft_seconds", ok)] == pytest.approx(
        float(run.cases["svc/ok"]["model_monitor.metric.ttft_s"])
    )
    assert series[("model_monitor_probe_error", (*down[:1], ("class", "server_error"), *down[1:]))] == 1
    assert not any(name == "model_monitor_probe_error" for name in names_for(series, "svc/ok")), (
        "no error series when it passed"
    )
    assert "model_monitor_probe_ttft_seconds" not in names_for(series, "svc/down")
    assert before <= series[("model_monitor_last_run_timestamp_seconds", ())] <= time.time()
    run.result.stdout.fnmatch_lines(
        [f"metrics: 2 cases pushed to {gateway.url}/metrics/job/model-monitor/instance/default"]
    )


def test_the_next_run_replaces_the_group(server: FakeOpenAI, gateway: Gateway, run_monitor) -> None:
    """A model removed from the file is gone after the next push; another instance's group is left alone."""
    both = [model("ok"), model("old")]
    assert run_monitor({"endpoints": [endpoint(server.url, *both)]}, f"--pushgateway-url={gateway.url}").ret == 0
    assert (
        run_monitor(
            {"endpoints": [endpoint(server.url, *both)]},
            f"--pushgateway-url={gateway.url}",
            "--metrics-instance=shard-1",
        ).ret
        == 0
    )
    assert ("model_monitor_probe_success", labels("svc/old")) in gateway.series()
    assert run_monitor({"endpoints": [endpoint(server.url, model("ok"))]}, f"--pushgateway-url={gateway.url}").ret == 0
    series = gateway.series()
    assert names_for(series, "svc/old") == set(), "the removed model's series are gone"
    assert series[("model_monitor_probe_success", labels("svc/ok"))] == 1
    assert ("model_monitor_probe_success", labels("svc/old")) in gateway.series("shard-1")


@pytest.mark.parametrize("down", ["refused", "500"])
def test_a_failed_push_is_named_and_counts_only_when_strict(server: FakeOpenAI, run_monitor, down: str) -> None:
    """The summary names the failure and the URL with its userinfo hidden; the exit code changes only under
    --telemetry-strict. A 500 is retried, a refused connection too."""
    with Receiver("status=500") as receiver:
        base = receiver.url if down == "500" else f"http://127.0.0.1:{free_port()}"
        url = base.replace("http://", "http://pushuser:pushsecret99@")
        endpoints = {"endpoints": [endpoint(server.url, model("ok"))]}
        run = run_monitor(endpoints, f"--pushgateway-url={url}")
        strict = run_monitor(endpoints, f"--pushgateway-url={url}", "--telemetry-strict")
        pushes = [p for p in receiver.pings if p.method == "PUT"]
    cause = "500 from 127.0.0.1" if down == "500" else "ConnectError from 127.0.0.1"
    for result in (run, strict):
        result.result.stdout.fnmatch_lines(
            [f"metrics: push of 1 cases to {base}/metrics/job/model-monitor/instance/default failed: {cause}"]
        )
        assert "pushsecret99" not in result.output and "pushsecret99" not in result.junit
    assert (run.ret, strict.ret) == (0, 1)
    if down == "500":
        assert len(pushes) == 6, "three attempts per run"
        assert pushes[0].headers["authorization"] == "Basic cHVzaHVzZXI6cHVzaHNlY3JldDk5"


def test_auth_and_headers_come_from_the_environment(
    server: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_MONITOR_PUSHGATEWAY_USERNAME", "envuser")
    monkeypatch.setenv("MODEL_MONITOR_PUSHGATEWAY_PASSWORD", "envpassword7")
    monkeypatch.setenv("MODEL_MONITOR_PUSHGATEWAY_HEADERS", "X-Scope-OrgID=tenant-a, X-Token=headersecret42")
    with Receiver() as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(server.url, model("ok"))]},
            f"--pushgateway-url={receiver.url}/gw",
            "--metrics-instance=release-a/shard-0",
        )
        (push,) = receiver.pings
    assert run.ret == 0, run.output
    assert push.method == "PUT"
    assert push.path == "/gw/metrics/job/model-monitor/instance@base64/cmVsZWFzZS1hL3NoYXJkLTA="
    assert push.headers["authorization"] == "Basic ZW52dXNlcjplbnZwYXNzd29yZDc="
    assert (push.headers["x-scope-orgid"], push.headers["x-token"]) == ("tenant-a", "headersecret42")
    assert "model_monitor_probe_success{" in push.body.decode()
    assert "headersecret42" not in run.output and "envpassword7" not in run.output


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        (
            "--pushgateway-url",
            "ftp://gw.example:9091",
            "--pushgateway-url (MODEL_MONITOR_PUSHGATEWAY_URL): expected http(s)://",
        ),
        (
            "--pushgateway-url",
            "http://gw.example:9091/?token=querysecret1",
            "--pushgateway-url (MODEL_MONITOR_PUSHGATEWAY_URL): expected",
        ),
        (
            "MODEL_MONITOR_PUSHGATEWAY_HEADERS",
            "Authorization",
            "MODEL_MONITOR_PUSHGATEWAY_HEADERS: expected Name=value,",
        ),
        (
            "MODEL_MONITOR_PUSHGATEWAY_HEADERS",
            '{"X-Key": 12345}',
            "MODEL_MONITOR_PUSHGATEWAY_HEADERS: expected Name=value,",
        ),
    ],
)
def test_a_malformed_gateway_setting_is_refused_at_start(
    server: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch, option: str, value: str, said: str
) -> None:
    args = [f"{option}={value}"] if option.startswith("--") else ["--pushgateway-url=http://127.0.0.1:1"]
    if not option.startswith("--"):
        monkeypatch.setenv(option, value)
    run = run_monitor({"endpoints": [endpoint(server.url, model("ok"))]}, *args)
    assert run.ret == 4
    assert said in run.output
    assert "querysecret1" not in run.output and "12345" not in run.output
    assert server.requests == []


@WORKERS
def test_an_interrupted_run_still_pushes(
    server: FakeOpenAI, gateway: Gateway, start_monitor, workers: list[str]
) -> None:
    """SIGTERM while two cases are held: the push still carries every case, the held ones failed as interrupted."""
    with Receiver() as receiver:
        pings = f"--cronitor-url={receiver.url}/p/stopkey1234"
        run = start_monitor([endpoint(server.url, *HELD)], f"--pushgateway-url={gateway.url}", pings, *workers)
        wait_for_requests(server, len(HELD))
        wait_for_verdicts(receiver, "svc-ok", "svc-bad")  # hang and slow held
        run.signal_and_wait(signal.SIGTERM, bound=STOP_GRACE_S)
    assert run.process.returncode == 2, run.output
    series = gateway.series()
    assert series[("model_monitor_probe_success", labels("svc/ok", model="ok"))] == 1
    for held, name in (("svc/hang", "held+hang"), ("svc/slow", "held+delay=30")):
        assert series[("model_monitor_probe_error", labels(held, model=name, **{"class": "interrupted"}))] == 1
    assert junit_cases(run.junit)["svc/hang"]["model_monitor.class"] == "interrupted"


def test_the_series_of_a_degraded_case_with_tokens() -> None:
    """The mapping alone: degraded only when passed, tokens by kind, attempts counted, one error class."""
    svc = Endpoint("svc", "http://127.0.0.1:1/v1")
    slow = Case(svc, "m1", "m1", TYPES["chat"], "svc-m1")
    broken = Case(svc, "m2", "m2", TYPES["embedding"], "svc-m2")
    results = [
        (
            slow,
            Outcome(
                True,
                "ok",
                duration_s=1.5,
                degraded=("retried once",),
                attempts=(Attempt("server_error", 503, 0.1), Attempt(None, None, 1.5)),
                metrics={"prompt_tokens": 12.0, "completion_tokens": 30.0, "reasoning_tokens": 20.0},
            ),
        ),
        (broken, Outcome(False, "schema: no data", error_class="schema", degraded=("retried once",))),
    ]
    text = generate_latest(registry(results, 1_700_000_000.0)).decode()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    m1 = {"endpoint": "svc", "model": "m1", "type": "chat", "case": "svc/m1"}
    m2 = {"endpoint": "svc", "model": "m2", "type": "embedding", "case": "svc/m2"}

    def at(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert at("model_monitor_probe_degraded", **m1) == 1
    assert at("model_monitor_probe_degraded", **m2) == 0, "a failed case is failed, not degraded"
    assert at("model_monitor_probe_attempts", **m1) == 2
    assert [at("model_monitor_probe_tokens", **m1, kind=k) for k in ("prompt", "completion", "reasoning")] == [
        12,
        30,
        20,
    ]
    assert at("model_monitor_probe_error", **m2, **{"class": "schema"}) == 1
    assert at("model_monitor_last_run_timestamp_seconds") == 1_700_000_000.0
    assert not any(name == "model_monitor_probe_tokens" and ("case", "svc/m2") in labels for name, labels in found)
    assert not any(
        name == "model_monitor_probe_duration_seconds" and ("case", "svc/m2") in labels for name, labels in found
    )


def test_attempts_travel_through_user_properties() -> None:
    outcome = Outcome(
        True,
        "ok",
        attempts=(Attempt("timeout", None, 2.0), Attempt("server_error", 503, 0.25), Attempt(None, None, 1.0)),
    )
    assert Outcome.from_properties(outcome.properties()).attempts == outcome.attempts


@WORKERS
def test_otlp_metrics_arrive_with_the_genai_names_and_attributes(
    server: FakeOpenAI, run_monitor, workers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = OtlpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    models = [model("ok", stream=True), model("down+status=503", id="down"), model("vec", type="embedding")]
    try:
        run = run_monitor({"endpoints": [endpoint(server.url, *models)]}, *workers)
    finally:
        receiver.shutdown()
    assert run.ret == 1, run.output
    points = receiver.points()
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    common = {"server.address": "127.0.0.1", "server.port": port, "model_monitor.endpoint": "svc"}
    durations = {
        attrs["gen_ai.request.model"]: (attrs, point) for attrs, point in points["gen_ai.client.inference.duration"]
    }
    assert durations["ok"][0] == {"gen_ai.operation.name": "chat", "gen_ai.request.model": "ok", **common}
    assert durations["down+status=503"][0] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "down+status=503",
        "error.type": "server_error",
        **common,
    }
    assert durations["vec"][0]["gen_ai.operation.name"] == "embeddings"
    ok_duration = float(run.cases["svc/ok"]["model_monitor.duration_s"])
    assert (durations["ok"][1].count, durations["ok"][1].sum) == (1, pytest.approx(ok_duration, abs=1e-5))
    ((ttfc_attrs, ttfc),) = points["gen_ai.client.inference.time_to_first_chunk"]
    assert ttfc_attrs["gen_ai.request.model"] == "ok"
    assert ttfc.sum == pytest.approx(float(run.cases["svc/ok"]["model_monitor.metric.ttft_s"]), abs=1e-5)
    run.result.stdout.fnmatch_lines(["otlp (OTEL_EXPORTER_OTLP_ENDPOINT): metrics of 3 cases exported"])


def test_otlp_token_usage_from_a_constructed_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    """Token usage (from the token counts another change puts in the metrics) as input and output points."""
    from model_monitor.reporters.otlp import OtlpMetrics

    receiver = OtlpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    try:
        metrics = OtlpMetrics("OTEL_EXPORTER_OTLP_ENDPOINT")
        case = Case(Endpoint("svc", "https://api.example/v1"), "m1", "m1", TYPES["completion"], "svc-m1")
        metrics.ended(
            case, Outcome(True, "ok", duration_s=0.5, metrics={"prompt_tokens": 12.0, "completion_tokens": 30.0})
        )
        metrics.flush(10)
    finally:
        receiver.shutdown()
    assert metrics.failure is None
    usage = {
        attrs["gen_ai.token.type"]: (attrs, point.sum)
        for attrs, point in receiver.points()["gen_ai.client.token.usage"]
    }
    assert {kind: total for kind, (_, total) in usage.items()} == {"input": 12, "output": 30}
    assert usage["input"][0]["gen_ai.operation.name"] == "text_completion"
    assert (usage["input"][0]["server.address"], usage["input"][0]["server.port"]) == ("api.example", 443)


def test_an_otlp_endpoint_that_is_down_is_named(
    server: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"http://127.0.0.1:{free_port()}/v1/metrics")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2")
    endpoints = {"endpoints": [endpoint(server.url, model("ok"))]}
    run = run_monitor(endpoints)
    strict = run_monitor(endpoints, "--telemetry-strict")
    for result in (run, strict):
        result.result.stdout.fnmatch_lines(["otlp (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT): metrics of 1 cases failed: *"])
    assert (run.ret, strict.ret) == (0, 1)
