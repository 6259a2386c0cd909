"""A secret a server echoes is masked in every channel (stdout, JUnit, results JSON, step summary, pings), whatever
request sent it (a discovery listing as well as a case), wherever the file put it (a ${VAR} in the URL's path or
inside a header), and wherever the echo falls (at the cut of a long server message)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from model_monitor.reply import MAX_SERVER_MESSAGE
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import WORKERS, endpoint, model

KEY = "sk-echoed-0123456789abcdef"
ECHO_PREFIX = len("Incorrect API key provided: ")  # what the testbed's echoauth says before the key


@dataclass
class Channels:
    """Every text a run leaves behind, and the reasons it gave."""

    text: str
    reasons: dict[str, str]


@pytest.fixture
def channels(run_monitor, receiver: Receiver, tmp_path: Path):
    """Run the monitor with every channel on: a Cronitor URL, --results-json and --step-summary."""

    def run(file: dict[str, Any], *args: str) -> Channels:
        results, summary = tmp_path / "results.json", tmp_path / "summary.md"
        run = run_monitor(
            file,
            f"--cronitor-url={receiver.url}/p/echokey1",
            f"--results-json={results}",
            f"--step-summary={summary}",
            *args,
        )
        assert run.ret == 1, run.output[-3000:]
        pings = [(p.path, p.query, p.body) for p in receiver.pings]
        assert pings, "the run pinged"
        text = run.output + run.junit + results.read_text() + summary.read_text() + repr(pings)
        return Channels(text, {case: run.reason(case) for case in run.cases})

    return run


@WORKERS
def test_a_listing_that_echoes_the_key_prints_it_nowhere(
    channels, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    """A discover-only endpoint's key is registered when its listing is sent, not only when a case is resolved."""
    monkeypatch.setenv("MM_ECHO_KEY", KEY)
    with FakeOpenAI(api_key=KEY, listing="echoauth") as server:
        file = {"endpoints": [{"name": "gw", "url": server.url, "api_key_env": "MM_ECHO_KEY", "discover": True}]}
        ran = channels(file, *workers)
    reason = ran.reasons["gw/discovery"]
    assert reason.startswith("auth: listing GET /v1/models failed: HTTP 401"), reason
    assert reason.endswith(": Incorrect API key provided: *** (invalid_request_error)"), reason
    assert KEY not in ran.text and KEY[:8] not in ran.text


@pytest.mark.parametrize("kept", [2, 12, len(KEY) - 2], ids=["2-chars", "12-chars", "all-but-2"])
def test_an_echo_at_the_cut_of_a_server_message_leaks_no_piece(
    channels, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    """The server's message is cut short; the `kept` first characters of the key fall before the cut."""
    monkeypatch.setenv("MM_ECHO_KEY", KEY)
    pad = MAX_SERVER_MESSAGE - 1 - ECHO_PREFIX - kept
    with FakeOpenAI(api_key=KEY) as server:
        ran = channels(
            {"endpoints": [endpoint(server.url, model(f"m+echoauth={pad}", id="m"), api_key_env="MM_ECHO_KEY")]}
        )
    assert ran.reasons["svc/m"].endswith("Incorrect API key provided: ***…"), ran.reasons
    assert KEY[:kept] + "…" not in ran.text and KEY[:8] not in ran.text


@WORKERS
def test_a_variable_in_the_url_path_is_a_secret(channels, monkeypatch: pytest.MonkeyPatch, workers: list[str]) -> None:
    """`url: https://host/${TENANT}/v1`: the path every failure names carries the tenant's key."""
    tenant = "tenant-key-5f3a9c"
    monkeypatch.setenv("MM_TENANT", tenant)
    with FakeOpenAI() as server:  # it serves /v1 only: the tenant's path is a 404 that names the path
        ran = channels({"endpoints": [endpoint(server.url + "/${MM_TENANT}/v1", model("m"))]}, *workers)
    assert "POST /***/v1/chat/completions" in ran.reasons["svc/m"], ran.reasons
    assert tenant not in ran.text


def test_a_variable_inside_a_header_is_a_secret_on_its_own(channels, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Authorization: Bearer ${TOKEN}`: a server that echoes the token alone, without `Bearer `."""
    monkeypatch.setenv("MM_TOKEN", KEY)
    with FakeOpenAI() as server:
        file = endpoint(server.url, model("m+echoauth", id="m"), headers={"Authorization": "Bearer ${MM_TOKEN}"})
        ran = channels({"endpoints": [file]})
    assert ran.reasons["svc/m"].endswith("Incorrect API key provided: *** (invalid_request_error)"), ran.reasons
    assert KEY not in ran.text
