"""Sanity tests of the loopback test servers themselves."""

from __future__ import annotations

import base64
import json
import math
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from testbed import FakeOpenAI, Receiver

from .helpers import ROOT, wait_for_requests

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeOpenAI]:
    """One shared FakeOpenAI for the module."""
    with FakeOpenAI(redirect_to="http://127.0.0.1:1") as server:
        yield server


@pytest.fixture
def client(srv: FakeOpenAI) -> Iterator[httpx.Client]:
    """A client bound to the shared server."""
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        yield c


def chat(client: httpx.Client, model: str, **extra: object) -> httpx.Response:
    """POST a one-message chat request."""
    return client.post(CHAT, json={"model": model, "messages": [{"role": "user", "content": "ping"}], **extra})


def sse_events(text: str) -> list[str]:
    """The data payloads of an SSE body."""
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def test_healthy_chat_shape_and_record(srv: FakeOpenAI, client: httpx.Client) -> None:
    r = chat(client, "gpt-4o", temperature=0)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "pong"}
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["total_tokens"] > 0
    assert srv.wait_idle()
    rec = srv.requests_for("gpt-4o")[-1]
    assert (rec.method, rec.path, rec.body["temperature"]) == ("POST", CHAT, 0)
    assert rec.headers["content-type"] == "application/json" and rec.duration is not None


def test_injected_statuses(client: httpx.Client) -> None:
    r = chat(client, "m+status=503")
    assert r.status_code == 503
    assert r.json() == {"error": {"message": "injected 503", "type": "server_error", "code": 503}}
    assert chat(client, "m+status=429").headers["retry-after"] == "1"
    assert chat(client, "m+status=429+retry_after=7").headers["retry-after"] == "7"
    r = chat(client, "m+status=301")
    assert r.status_code == 301 and r.headers["location"] == "http://127.0.0.1:1/v1/landing"
    r = chat(client, "m+redirect")
    assert r.status_code == 302 and r.headers["location"] == "http://127.0.0.1:1/v1/chat/completions"


def test_flaky_sequences(client: httpx.Client) -> None:
    assert [chat(client, "m+flaky=2").status_code for _ in range(4)] == [503, 503, 200, 200]
    codes = [chat(client, "m+flaky429=1") for _ in range(2)]
    assert [r.status_code for r in codes] == [429, 200] and codes[0].headers["retry-after"] == "1"


def test_stream_with_done_and_usage(client: httpx.Client) -> None:
    r = chat(client, "m+tokens=3", stream=True, stream_options={"include_usage": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "pongpo"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    r = client.post("/v1/completions", json={"model": "c", "prompt": "The capital of France is", "stream": True})
    completions = [json.loads(e) for e in sse_events(r.text)[:-1]]
    assert "".join(c["choices"][0]["text"] for c in completions) == "pongpong"


def test_stream_faults(client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client, "m+cut", stream=True)
    assert sse_events(chat(client, "m+nodone", stream=True).text)[-1] != "[DONE]"
    events = sse_events(chat(client, "m+errorevent", stream=True).text)
    assert json.loads(events[-1])["error"]["message"] == "upstream overloaded"
    events = sse_events(chat(client, "m+nofinish", stream=True).text)
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events[:-1])
    assert '{"choices": [' in sse_events(chat(client, "m+malformed", stream=True).text)


def test_stream_delay_is_before_first_chunk(client: httpx.Client) -> None:
    start = time.monotonic()
    with client.stream("POST", CHAT, json={"model": "m+delay=0.3", "messages": [], "stream": True}) as r:
        headers_at = time.monotonic() - start
        next(r.iter_lines())
        first_at = time.monotonic() - start
    assert headers_at < first_at and first_at >= 0.3, (headers_at, first_at)  # the delay is after the headers


def test_auth_and_routing() -> None:
    with FakeOpenAI(api_key="sekrit", latency=0.05) as srv:
        r = httpx.post(srv.url + CHAT, json={"model": "m", "messages": []})
        assert r.status_code == 401 and "sekrit" not in r.text
        assert r.json()["error"] == {"message": "Invalid API key", "type": "invalid_request_error"}
        auth = {"Authorization": "Bearer sekrit"}
        r = httpx.get(srv.url + "/v1/models", headers=auth)
        assert [m["id"] for m in r.json()["data"]] == ["chat-model", "embed-model", "rerank-model", "completion-model"]
        assert httpx.post(srv.url + "/v1/v1/chat/completions", json={"model": "m"}, headers=auth).status_code == 404
        assert httpx.post(srv.url + "/chat/completions", json={"model": "m"}, headers=auth).status_code == 404
        assert srv.wait_idle()
        last = srv.requests[-1]
        assert last.path == "/v1/models" and last.duration is not None and last.duration >= 0.05


def test_tools_and_json_mode(client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    msg = chat(client, "m", tools=tools).json()["choices"][0]["message"]
    assert msg["content"] is None and json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert msg["tool_calls"][0]["function"]["name"] == "get_weather"
    bad = chat(client, "m+badtool", tools=tools).json()["choices"][0]["message"]["tool_calls"][0]
    assert bad["function"]["arguments"] == "{city: Paris"
    assert "tool_calls" not in chat(client, "m+notool", tools=tools).json()["choices"][0]["message"]
    fmt = {"type": "json_object"}
    assert json.loads(chat(client, "m", response_format=fmt).json()["choices"][0]["message"]["content"]) == {
        "answer": "pong"
    }
    assert chat(client, "m+nojson", response_format=fmt).json()["choices"][0]["message"]["content"] == "pong"
    reasoning = chat(client, "m+reasoning").json()["choices"][0]
    assert reasoning["message"]["reasoning_content"] and reasoning["finish_reason"] == "length"


def test_embeddings_and_rerank(client: httpx.Client) -> None:
    r = client.post("/v1/embeddings", json={"model": "e+dims=4", "input": ["a", "b"]}).json()
    assert [d["index"] for d in r["data"]] == [0, 1] and len(r["data"][0]["embedding"]) == 4
    again = client.post("/v1/embeddings", json={"model": "e+dims=4", "input": "a"}).json()
    assert again["data"][0]["embedding"] == r["data"][0]["embedding"]
    b64 = client.post("/v1/embeddings", json={"model": "e", "input": "a", "encoding_format": "base64"}).json()
    assert len(struct.unpack("<8f", base64.b64decode(b64["data"][0]["embedding"]))) == 8
    nan = client.post("/v1/embeddings", json={"model": "e+nan", "input": "a"})
    assert "NaN" in nan.text and math.isnan(json.loads(nan.text)["data"][0]["embedding"][0])
    assert len(client.post("/v1/embeddings", json={"model": "e+wrongcount", "input": ["a", "b"]}).json()["data"]) == 1
    docs = ["Berlin is the capital of Germany.", "Paris is the capital of France.", "Bananas are yellow."]
    req = {"query": "What is the capital of France?", "documents": docs}
    results = client.post("/v1/rerank", json={"model": "r", **req}).json()["results"]
    assert [x["index"] for x in results] == [1, 0, 2]
    assert results[0]["relevance_score"] > results[1]["relevance_score"]
    assert client.post("/v1/rerank", json={"model": "r+badrank", **req}).json()["results"][0]["index"] == 2
    assert len(client.post("/v1/rerank", json={"model": "r+wrongcount", **req}).json()["results"]) == 2


def test_body_faults(client: httpx.Client) -> None:
    assert "<title>Sign in</title>" in chat(client, "m+html").text
    assert chat(client, "m+error200").json()["error"]["message"] == "model is loading"
    with pytest.raises(json.JSONDecodeError):
        chat(client, "m+badjson").json()
    assert chat(client, "m+texttype").headers["content-type"].startswith("text/plain")
    with pytest.raises(httpx.DecodingError):
        chat(client, "m+badgzip")
    assert chat(client, "m+empty").json()["choices"][0]["message"]["content"] == ""
    assert chat(client, "m+nochoices").json()["choices"] == []
    with client.stream("POST", CHAT, json={"model": "m+huge"}) as r:
        assert int(r.headers["content-length"]) == 50 * 1024 * 1024
    with pytest.raises(httpx.ReadTimeout):
        client.post(CHAT, json={"model": "m+trickle", "messages": []}, timeout=httpx.Timeout(5, read=0.5))


def test_connection_faults_and_quick_stop(client: httpx.Client) -> None:
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        chat(client, "m+reset")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client, "m+close")
    errors: list[Exception] = []
    server = FakeOpenAI().start()

    def hung() -> None:
        try:
            httpx.post(server.url + CHAT, json={"model": "m+hang"}, timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    wait_for_requests(server, 1)
    start = time.monotonic()
    server.stop()
    thread.join(5)
    assert time.monotonic() - start < 1 and errors and server.requests[0].duration is None


def test_tls_certificate_is_not_trusted() -> None:
    with FakeOpenAI(tls=True) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(srv.url + "/v1/models")
        assert httpx.get(srv.url + "/v1/models", verify=False).status_code == 200


def test_receiver_records_and_modes() -> None:
    with Receiver() as rx:
        r = httpx.get(rx.url + "/ping/abc", params=[("metric", "a:1"), ("metric", "b:2"), ("state", "ok")])
        assert (r.status_code, r.text) == (200, "OK")
        ping = rx.pings[-1]
        assert ping.path == "/ping/abc" and ping.query == {"metric": ["a:1", "b:2"], "state": ["ok"]}
        monitors = [{"key": "m1", "type": "heartbeat"}]
        r = httpx.put(rx.url + "/api/monitors", json=monitors, auth=("apikey", ""))
        assert r.json() == monitors and rx.pings[-1].headers["authorization"].startswith("Basic ")
    with Receiver("fail_first=1") as rx:
        assert [httpx.post(rx.url + "/x", content=b"hi").status_code for _ in range(2)] == [503, 200]
        assert rx.pings[0].body == b"hi"
    with Receiver("status=429") as rx:
        assert httpx.get(rx.url + "/").headers["retry-after"] == "1"
    with Receiver("hang") as rx:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(rx.url + "/hb", timeout=0.2)
        assert rx.pings[0].path == "/hb"


@pytest.mark.e2e  # runs the demo, which runs the model-monitor command
def test_the_demo_shows_a_failure_and_still_exits_0() -> None:
    """`./dev demo`: the passing cases and one failing on purpose, said once by its id and in the table; the demo
    exits 0 because that is the run it means to show, and ends with how to check one's own endpoints."""
    proc = subprocess.run([sys.executable, "-m", "testbed.demo"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("FAIL  local/broken  server_error: HTTP 503") for line in lines) == 1
    assert [line.split()[2] for line in lines if line.startswith("local/")] == ["PASS"] * 6 + ["FAIL"]
    assert "1 failed, 6 passed" in proc.stdout
    assert lines[-2:] == [
        "demo: as expected, only local/broken failed (the server answered 503)",
        "demo: your own endpoints next: model-monitor init endpoints.yaml, keep your servers, "
        "model-monitor validate --resolve, then model-monitor",
    ]


def test_a_bare_listing_gives_the_ids_alone() -> None:
    """The benchmark's 400,000-id listing (bench/listing.py) stays under the monitor's 8 MiB cap only this way."""
    with FakeOpenAI(models=("m-000001", "m-000002"), listing="bare") as lean, FakeOpenAI(models=("m",)) as full:
        assert httpx.get(lean.url + "/v1/models").json()["data"] == [{"id": "m-000001"}, {"id": "m-000002"}]
        assert httpx.get(full.url + "/v1/models").json()["data"] == [
            {"id": "m", "object": "model", "owned_by": "testbed"}
        ]
