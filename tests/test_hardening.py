"""The worst day: a fault matrix with its pings, telemetry outages at scale, and a secret canary over every output."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .faults import CHAT_FAULTS, STREAM_CUT
from .helpers import WORKERS, endpoint, model

API_KEY = "sk-fault-matrix-key-0042"


@pytest.fixture(scope="module")
def other_origin() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(other_origin: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """Needs an API key, and redirects to another origin."""
    with FakeOpenAI(api_key=API_KEY, redirect_to=other_origin.url) as server:
        yield server


@pytest.fixture(scope="module")
def tls_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tls=True) as server:
        yield server


@WORKERS
def test_every_fault_fails_alone_with_its_class_reason_deadline_and_ping(
    keyed_server: FakeOpenAI,
    other_origin: FakeOpenAI,
    tls_server: FakeOpenAI,
    run_monitor,
    monkeypatch: pytest.MonkeyPatch,
    workers: list[str],
) -> None:
    monkeypatch.setenv("FAULT_KEY", API_KEY)
    faults = [model(name, timeout=timeout, id=name.split("+", 1)[1]) for name, timeout, _, _ in CHAT_FAULTS]
    faults.append(model(STREAM_CUT[0], id="cut", stream=True))
    endpoints = [
        endpoint(keyed_server.url, model("healthy"), *faults, api_key_env="FAULT_KEY"),
        endpoint("http://127.0.0.1:9", model("m"), name="refused"),
        endpoint(tls_server.url, model("m"), name="selfsigned"),
        endpoint(tls_server.url, model("m"), name="selfsigned-allowed", verify_tls=False),
    ]
    expected = {"svc/" + name.split("+", 1)[1]: (cls, piece, timeout) for name, timeout, cls, piece in CHAT_FAULTS}
    expected["svc/cut"] = STREAM_CUT[2:] + (STREAM_CUT[1],)
    expected["refused/m"] = ("connect", "Connect call failed ('127.0.0.1', 9)", 5)
    expected["selfsigned/m"] = ("tls", "TLS handshake failed: ", 5)
    with Receiver() as receiver:
        run = run_monitor({"endpoints": endpoints}, f"--cronitor-url={receiver.url}/p/faultkey1234", *workers)
        pings = {p.path.rsplit("/", 1)[1]: p.query for p in receiver.pings if p.query["state"] != ["run"]}
    assert run.ret == 1
    assert run.cases["svc/healthy"]["model_monitor.verdict"] == "pass", "the faults next door change nothing"
    assert run.cases["selfsigned-allowed/m"]["model_monitor.verdict"] == "pass", "verify_tls: false accepts it"
    for case_id, (error_class, piece, timeout) in expected.items():
        reason = run.reason(case_id)
        assert run.error_class(case_id) == error_class, (case_id, reason)
        assert piece in reason and "\n" not in reason, (case_id, reason)
        assert float(run.cases[case_id]["model_monitor.duration_s"]) <= timeout + 0.5, case_id
        ping = pings[run.cases[case_id]["model_monitor.monitor"]]
        assert ping["state"] == ["fail"] and ping["message"] == [reason], case_id
    assert other_origin.requests == [], "a redirect is not followed: the API key never reaches another origin"


def test_a_50_mb_reply_is_refused_without_being_read(
    keyed_server: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Content-Length short cut: the cap must hold while reading a chunked body too."""
    monkeypatch.setenv("FAULT_KEY", API_KEY)
    run = run_monitor(
        {"endpoints": [endpoint(keyed_server.url, model("big+huge", "embedding"), api_key_env="FAULT_KEY")]}
    )
    assert run.error_class("svc/big+huge") == "bad_response"
    assert "8 MiB cap" in run.reason("svc/big+huge")


def test_two_hundred_cases_with_telemetry_down_end_within_the_deadline_under_xdist(
    openai_server: FakeOpenAI, run_monitor
) -> None:
    models = [model(f"mass-{i}") for i in range(199)] + [model("mass-bad+status=500", id="bad")]
    with Receiver("hang") as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(openai_server.url, *models)]},
            "-n",
            "2",
            f"--cronitor-url={receiver.url}/p/masskey1234",
            "--telemetry-deadline=3",
            timeout=90,
        )
    assert run.ret == 1
    verdicts = [v["model_monitor.verdict"] for v in run.cases.values()]
    assert verdicts.count("pass") == 199 and verdicts.count("fail") == 1
    run.result.stdout.fnmatch_lines(
        ["telemetry (cronitor): 400 of 400 pings failed: not delivered within the 3 s deadline*"]
    )


CANARIES = {
    "ENDPOINT_KEY": "sk-canary-endpoint-7f3a9c",
    "HEADER_SECRET": "hdr-canary-1a2b3c4d",
    "CRONITOR_KEY": "cronitor-canary-5b2e1d",
    "HC_KEY": "hc-canary-9d4c7a11",
    "CRONITOR_API_KEY": "cronapi-canary-3e8f6b",
}


@WORKERS
def test_no_secret_appears_in_any_output(run_monitor, monkeypatch: pytest.MonkeyPatch, workers: list[str]) -> None:
    key = CANARIES["ENDPOINT_KEY"]
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    with FakeOpenAI() as other, FakeOpenAI(api_key=key, redirect_to=other.url) as server, Receiver() as receiver:
        monkeypatch.setenv("CRONITOR_URL", f"{receiver.url}/p/{CANARIES['CRONITOR_KEY']}/canary")
        monkeypatch.setenv("HEALTHCHECKS_URL", f"{receiver.url}/ping/{CANARIES['HC_KEY']}")
        monkeypatch.setenv("CRONITOR_API_URL", f"{receiver.url}/api")
        models = [
            model("ok"),
            model("ok-stream", stream=True),
            model("broken+status=503"),
            model("quotes-the-key+echoauth"),
            model("moved+redirect"),
            model("slow+hang", timeout=1),
        ]
        run = run_monitor(
            {
                "endpoints": [
                    endpoint(server.url, *models, api_key_env="ENDPOINT_KEY", headers={"X-Secret": "${HEADER_SECRET}"})
                ]
            },
            "-vv",
            "-rA",
            "--showlocals",
            "--log-level=DEBUG",
            *workers,
        )
        pings = list(receiver.pings)
        other_requests = list(other.requests)
    assert run.ret == 1
    assert "Incorrect API key provided: ***" in run.reason("svc/quotes-the-key+echoauth"), "the server's echo is masked"
    outputs = {"stdout": run.result.stdout.str(), "stderr": run.result.stderr.str(), "junit": run.junit}
    for ping in pings:
        outputs[f"ping {ping.method} {ping.path} query"] = repr(ping.query)
        if ping.path != "/api/monitors":
            outputs[f"ping {ping.path} body"] = ping.body.decode()
    outputs["other origin"] = repr([r.headers for r in other_requests])
    for where, text in outputs.items():
        for name, canary in CANARIES.items():
            assert canary not in text, f"{name} leaked into {where}"
    auth_b64 = base64.b64encode(f"{CANARIES['CRONITOR_API_KEY']}:".encode()).decode()
    assert any(p.headers.get("authorization") == f"Basic {auth_b64}" for p in pings), (
        "the API key was used, in its header"
    )
    assert any(CANARIES["CRONITOR_KEY"] in p.path for p in pings), "the key belongs in the ping URL's path"
