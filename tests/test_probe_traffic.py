"""Probe traffic that gateways can recognise: the user agent, the probe header, and metadata / user in the body
where the type's API takes them; each configurable or off, and a user's own header or field wins."""

from __future__ import annotations

from model_monitor import __version__
from testbed.openai_server import FakeOpenAI

from .helpers import endpoint, model


def test_probes_carry_the_user_agent_the_probe_header_and_the_body_tags_asked_for(
    server: FakeOpenAI, run_monitor
) -> None:
    endpoints = {
        "defaults": {"probe_metadata": True, "probe_user": "model-monitor"},
        "endpoints": [
            endpoint(
                server.url,
                model("p-chat"),
                model("p-embed", "embedding"),
                model("p-own", params={"user": "me", "metadata": {"team": "a"}}),
                name="plain",
            ),
            endpoint(
                server.url,
                model("c-chat"),
                name="custom",
                probe_header={"name": "X-Synthetic", "value": "yes"},
                probe_metadata=False,
            ),
            endpoint(server.url, model("o-chat"), name="off", probe_header=False, probe_user="other"),
            endpoint(
                server.url,
                model("u-chat"),
                name="users",
                headers={"x-model-monitor-probe": "mine", "User-Agent": "my-agent/2"},
            ),
        ],
    }
    run = run_monitor(endpoints)
    assert run.ret == 0, run.output
    sent = {r.model: r for r in server.requests}
    assert sent["p-chat"].headers["user-agent"] == f"model-monitor/{__version__}"
    assert sent["p-chat"].headers["x-model-monitor-probe"] == "plain-p-chat", "the case's monitor key"
    assert sent["p-chat"].body["metadata"] == {"model_monitor_probe": "plain-p-chat"}
    assert sent["p-chat"].body["user"] == "model-monitor"
    assert sent["p-embed"].body["user"] == "model-monitor" and "metadata" not in sent["p-embed"].body
    assert (sent["p-own"].body["user"], sent["p-own"].body["metadata"]) == ("me", {"team": "a"}), "params win"
    custom = sent["c-chat"]
    assert custom.headers["x-synthetic"] == "yes" and "x-model-monitor-probe" not in custom.headers
    assert "metadata" not in custom.body and custom.body["user"] == "model-monitor"
    off = sent["o-chat"]
    assert "x-model-monitor-probe" not in off.headers and off.body["user"] == "other"
    users = sent["u-chat"]
    assert (users.headers["x-model-monitor-probe"], users.headers["user-agent"]) == ("mine", "my-agent/2")


def test_without_configuration_only_the_header_marks_a_probe(server: FakeOpenAI, run_monitor) -> None:
    run = run_monitor({"endpoints": [endpoint(server.url, model("bare"))]})
    assert run.ret == 0, run.output
    (request,) = server.requests
    assert request.headers["x-model-monitor-probe"] == "svc-bare"
    assert "metadata" not in request.body and "user" not in request.body, "strict servers refuse unknown fields"
