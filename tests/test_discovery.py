"""Discovery: an endpoint with `discover: true` gets one case per model its GET /v1/models lists, decided once per
run before selection; a listing that fails, or keeps nothing, is one failing `<endpoint>/discovery` case."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_monitor.config import ConfigError, load
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import model

GATEWAY_MODELS = ("gpt-4o", "gpt-4o-old", "text-embed-3", "llama-3-8b", "whisper-1")


@pytest.fixture
def gateway() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(models=GATEWAY_MODELS, api_key="sk-gw-123456") as server:
        yield server


@pytest.fixture(autouse=True)
def gateway_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MM_GW_KEY", "sk-gw-123456")


def discovering(url: str, **extra: Any) -> dict[str, Any]:
    """An endpoints file with one discovering endpoint `gw`; `defaults` gives the file's defaults."""
    defaults = extra.pop("defaults", None)
    endpoint = {"name": "gw", "url": url, "api_key_env": "MM_GW_KEY", "discover": True, **extra}
    return {**({"defaults": defaults} if defaults else {}), "endpoints": [endpoint]}


def listings(server: FakeOpenAI) -> int:
    return sum(r.path == "/v1/models" for r in server.requests)


def test_filters_type_and_defaults_apply_to_each_listed_model(gateway: FakeOpenAI, run_monitor) -> None:
    file = discovering(
        gateway.url,
        include=["gpt-*", "*embed*", "llama-*"],
        exclude=["*-old"],
        types=[{"*embed*": "embedding"}, {"*": "chat"}],
        timeout=7,
        defaults={"tags": ["fleet"], "max_tokens": 3},
    )
    run = run_monitor(file, "-m", "fleet")
    assert run.ret == 0, run.output
    assert list(run.cases) == ["gw/gpt-4o", "gw/llama-3-8b", "gw/text-embed-3"]
    assert run.cases["gw/text-embed-3"]["model_monitor.type"] == "embedding"
    assert run.cases["gw/gpt-4o"]["model_monitor.monitor"] == "gw-gpt-4o"
    chat = gateway.requests_for("gpt-4o")[0]
    assert chat.path == "/v1/chat/completions" and chat.body["max_tokens"] == 3, "the file's defaults apply"
    assert gateway.requests_for("text-embed-3")[0].path == "/v1/embeddings"
    listing = next(r for r in gateway.requests if r.path == "/v1/models")
    assert listing.headers["authorization"] == "Bearer sk-gw-123456"
    assert listing.headers["x-model-monitor-probe"] == "gw-discovery"


def test_a_model_listed_in_the_file_keeps_its_own_entry(gateway: FakeOpenAI, run_monitor) -> None:
    file = discovering(
        gateway.url,
        include=["gpt-4o", "text-embed-3"],
        models=[model("text-embed-3", "embedding", monitor="my-embedder")],
    )
    run = run_monitor(file)
    assert run.ret == 0, run.output
    assert list(run.cases) == ["gw/text-embed-3", "gw/gpt-4o"]
    assert run.cases["gw/text-embed-3"]["model_monitor.monitor"] == "my-embedder"
    assert len(gateway.requests_for("text-embed-3")) == 1


def test_k_and_only_select_discovered_cases(gateway: FakeOpenAI, run_monitor) -> None:
    run = run_monitor(discovering(gateway.url, exclude=["whisper-*"]), "-k", "llama", "--only", "gw/llama-3-8b")
    assert run.ret == 0, run.output
    assert list(run.cases) == ["gw/llama-3-8b"]
    assert [r.model for r in gateway.requests if r.path != "/v1/models"] == ["llama-3-8b"]


@pytest.mark.parametrize(
    ("listing", "extra", "expected"),
    [
        (
            "hang",
            {"discover_timeout": 0.5},
            "timeout: listing GET /v1/models failed: no complete reply within 0.5 s (waiting for response headers)",
        ),
        ("status=500", {}, "server_error: listing GET /v1/models failed: HTTP 500 from GET /v1/models after "),
        ("badjson", {}, "bad_response: listing GET /v1/models failed: reply is not valid JSON"),
        (
            "",
            {"include": ["claude-*"], "exclude": ["*-old"]},
            "expectation: GET /models lists 5 models, none kept by include ['claude-*'] and exclude ['*-old']",
        ),
    ],
    ids=["timeout", "500", "badjson", "nothing-matches"],
)
def test_a_failed_listing_is_one_failing_discovery_case(
    gateway: FakeOpenAI, run_monitor, listing: str, extra: dict[str, Any], expected: str
) -> None:
    gateway.listing = listing
    file = discovering(gateway.url, **extra)
    file["endpoints"].append(
        {"name": "other", "url": gateway.url, "api_key_env": "MM_GW_KEY", "models": [model("gpt-4o")]}
    )
    run = run_monitor(file)
    assert run.ret == 1, run.output
    assert list(run.cases) == ["gw/discovery", "other/gpt-4o"], "the other endpoint's cases still run"
    assert run.reason("gw/discovery").startswith(expected)
    assert run.cases["other/gpt-4o"]["model_monitor.verdict"] == "pass"


def test_an_unset_key_fails_the_discovery_case_naming_the_variable(
    gateway: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MM_GW_KEY")
    run = run_monitor(discovering(gateway.url))
    assert run.ret == 1, run.output
    assert list(run.cases) == ["gw/discovery"]
    assert "environment variable MM_GW_KEY (the API key) is not set" in run.reason("gw/discovery")
    assert gateway.requests == []


def test_a_proxy_variable_that_is_no_url_fails_the_discovery_case_naming_it(
    gateway: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://user:s3cret-proxy@[::1:3128")
    run = run_monitor(discovering(gateway.url))
    assert run.ret == 1, run.output
    assert list(run.cases) == ["gw/discovery"]
    reason = run.reason("gw/discovery")
    assert reason.startswith("connect: ") and "HTTP_PROXY (or http_proxy) is not a proxy URL" in reason, reason
    assert "s3cret" not in run.output
    assert gateway.requests == []


def test_under_xdist_the_controller_lists_once_and_every_worker_collects_alike(
    gateway: FakeOpenAI, run_monitor
) -> None:
    run = run_monitor(discovering(gateway.url, types={"*embed*": "embedding"}), "-n", "2")
    assert run.ret == 0, run.output
    assert sorted(run.cases) == [f"gw/{m}" for m in sorted(GATEWAY_MODELS)]
    assert listings(gateway) == 1
    assert {run.cases[f"gw/{m}"]["model_monitor.type"] for m in GATEWAY_MODELS} == {"chat", "embedding"}


def test_discovered_cases_are_pinged_and_provisioned(
    gateway: FakeOpenAI, receiver: Receiver, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRONITOR_URL", f"{receiver.url}/p/cronkey123456")
    monkeypatch.setenv("CRONITOR_API_KEY", "cronitorapikey987654321")
    monkeypatch.setenv("CRONITOR_API_URL", f"{receiver.url}/api")
    run = run_monitor(discovering(gateway.url, include=["gpt-4o", "llama-*"]))
    assert run.ret == 0, run.output
    (put,) = receiver.pings_for("/api/monitors")
    assert [m["key"] for m in json.loads(put.body)["monitors"]] == ["gw-gpt-4o", "gw-llama-3-8b"]
    pinged = [p.path.rsplit("/", 1)[1] for p in receiver.pings if p.path.startswith("/p/")]
    assert sorted(pinged) == ["gw-gpt-4o", "gw-gpt-4o", "gw-llama-3-8b", "gw-llama-3-8b"]


# --- the file: models optional only when discovering, the discovery fields only with discover: true ---


def test_models_are_required_unless_the_endpoint_discovers(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    for text, error in [
        ("", "2: endpoints[0]: missing required field 'models'"),
        (
            "    models: [{name: m, type: chat}]\n    include: ['gpt-*']\n",
            "5: endpoints[0].include: needs discover: true",
        ),
    ]:
        path.write_text("endpoints:\n  - name: a\n    url: http://x\n" + text, encoding="utf-8")
        with pytest.raises(ConfigError) as raised:
            load(path, {})
        assert str(raised.value) == f"{path}:{error}"
    path.write_text(
        "endpoints:\n  - name: a\n    url: http://x\n    discover: true\n"
        "    types: {'*embed*': embedding, '*': chat}\n",
        encoding="utf-8",
    )
    suite = load(path, {})
    assert suite.cases == () and suite.discoveries["a"].types == (("*embed*", "embedding"), ("*", "chat"))


# What a hostile gateway lists: each id must pass the gate a file's model name passes, or be refused by name.
HOSTILE_IDS = {
    "lone\ud800x": "lone surrogate",
    "esc\x1b[31mred": "U+001B, a control character",
    "nul\x00byte": "U+0000, a control character",
    "rlo\u202eevil": "U+202E, a bidi control",
    "two\nlines": "U+000A, a control character",
    "x" * 100_000: "100,000 characters long",
    "discovery": "is taken",
}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_a_hostile_listing_is_data_refused_by_name_and_the_rest_runs(run_monitor, workers: list[str]) -> None:
    """A listed id goes through the file's name rules: the refused ones are named, escaped and cut, in the
    discovery case; the healthy model still runs; nothing the server chose reaches the output raw."""
    with FakeOpenAI(models=("good-model", *HOSTILE_IDS)) as server, Receiver() as receiver:
        run = run_monitor(discovering(server.url), f"--cronitor-url={receiver.url}/p/hostilekey1", *workers)
        pings = [(p.path, p.query) for p in receiver.pings]
    assert run.ret == 1, run.output[-3000:]
    assert run.cases["gw/good-model"]["model_monitor.verdict"] == "pass"
    reason = run.reason("gw/discovery")
    assert reason.startswith(f"expectation: {len(HOSTILE_IDS)} listed models get no case: "), reason
    for why in list(HOSTILE_IDS.values())[:5]:  # the reason names five, then …
        assert why in reason, reason
    assert set(run.cases) == {"gw/good-model", "gw/discovery"}, "the refused ids make no case"
    text = run.output + run.junit + repr(pings)
    for raw in ("\x1b", "\x00", "\u202e", "\ud800", "x" * 1000):
        assert raw not in text
    assert "\nlines" not in run.output
    assert len(run.output) < 20_000, "a 100 KB id is cut, not printed"
    assert {path.rsplit("/", 1)[1] for path, _ in pings} == {"gw-good-model", "gw-discovery"}


def test_a_listed_id_holding_the_key_the_listing_sent_makes_no_case_and_is_shown_masked(run_monitor) -> None:
    """A gateway that echoes the API key it was sent into a model id: that id would become a case id, printed in
    every output and sent in every ping. It gets no case; the discovery case names it with the key masked."""
    with FakeOpenAI(models=("good-model", "ft-sk-gw-123456-v2"), api_key="sk-gw-123456") as server:
        run = run_monitor(discovering(server.url))
    assert run.ret == 1, run.output[-3000:]
    assert set(run.cases) == {"gw/good-model", "gw/discovery"}
    assert run.reason("gw/discovery") == (
        "expectation: 1 listed models get no case: 'ft-***-v2' (it holds a secret this run sends)"
    )
    assert "sk-gw-123456" not in run.output + run.junit


def test_a_listing_past_max_discovered_probes_nothing_and_says_how_many(run_monitor) -> None:
    """120,000 listed ids (7.4 MB, under the body cap) make no 120,000 cases: the discovery case fails."""
    listed = tuple(f"m-{n:06d}" for n in range(120_000))
    with FakeOpenAI(models=listed) as server:
        run = run_monitor(discovering(server.url))
        narrowed = run_monitor(discovering(server.url, include=["m-00000*"], max_discovered=5))
        sent = [r.path for r in server.requests if r.path != "/v1/models"]
    assert run.ret == 1 and list(run.cases) == ["gw/discovery"], run.output[-2000:]
    assert run.reason("gw/discovery") == (
        "expectation: GET /models lists 120,000 models, more than max_discovered 2,000: none is probed; narrow the "
        "listing with include/exclude or raise max_discovered"
    )
    assert "(10 kept by include/exclude), more than max_discovered 5" in narrowed.reason("gw/discovery")
    assert sent == [], "no model was probed"
