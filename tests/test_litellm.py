"""The monitor against a real LiteLLM proxy (mock models, 127.0.0.1 only): a real gateway's replies, errors and auth.

One proxy is started for the module (~12-20 s) from tests/litellm/config.yaml and always stopped. Its models
answer from `mock_response`, so no provider is called: healthy chat (plain and streamed), completion,
responses (plain: LiteLLM's mock cannot stream it), embeddings, a model that always fails with HTTP 500, and master-key auth whose wrong key is a 401
(tests/litellm/custom_auth.py).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import ROOT, endpoint, model
from .servers import LoopbackServer, free_port, loopback_server

pytestmark = pytest.mark.e2e  # runs a real LiteLLM proxy

CONFIG = ROOT / "tests" / "litellm" / "config.yaml"
MASTER_KEY = "sk-model-monitor-litellm-test"  # general_settings.master_key in config.yaml


def litellm_command() -> str:
    """The proxy's console script from this interpreter's environment; missing is a failure, not a skip."""
    found = shutil.which("litellm", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("litellm is not installed in this environment: pip install -e '.[test]' (or ./dev test)")
    return found


@pytest.fixture(scope="module")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    command = litellm_command()
    workdir = tmp_path_factory.mktemp("litellm")
    port = free_port()
    with loopback_server(
        "litellm proxy",
        [command, "--config", str(CONFIG), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        port=port,
        ready_path="/health/liveliness",
        log=workdir / "litellm.log",
        cwd=workdir,
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"},  # the bundled model cost map, not a download
        # A bound on a hang, not a speed check: importing the proxy alone is ~6 s of CPU, and beside the suite's
        # four workers on two cores one CI run took over 60 s to answer.
        deadline_s=180,
    ) as server:
        yield server


@pytest.fixture
def litellm_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The right key and a wrong one, in environment variables the monitor's subprocess inherits."""
    monkeypatch.setenv("LITELLM_TEST_KEY", MASTER_KEY)
    monkeypatch.setenv("LITELLM_WRONG_KEY", "sk-not-the-master-key")


MODELS = [
    model("mock-chat", "chat"),
    model("mock-chat", "chat", id="mock-chat-stream", stream=True),
    model("mock-chat", "completion", id="mock-completion"),
    model("mock-embed", "embedding"),
    model("mock-chat", "models", id="mock-chat-listed"),
    model("mock-chat", "responses", id="mock-responses"),  # LiteLLM's mock answers /v1/responses plain, not streamed
    model("mock-broken", "chat"),
]


@pytest.fixture
def litellm_run(litellm_proxy: LoopbackServer, litellm_keys: None, run_monitor, module_runs: dict[str, Any]):
    """One monitor run against the proxy, shared by this module's tests: every model with the right key, the
    healthy chat with a wrong key and with none."""
    if "run" not in module_runs:
        endpoints = [
            endpoint(litellm_proxy.url, *MODELS, name="gw", api_key_env="LITELLM_TEST_KEY", timeout=15),
            endpoint(
                litellm_proxy.url, model("mock-chat"), name="gw-wrong-key", api_key_env="LITELLM_WRONG_KEY", timeout=15
            ),
            endpoint(litellm_proxy.url, model("mock-chat"), name="gw-no-key", timeout=15),
        ]
        module_runs["run"] = run_monitor({"endpoints": endpoints})
    return module_runs["run"]


def test_healthy_litellm_models_pass(litellm_run) -> None:
    run = litellm_run
    assert run.ret == 1, run.output  # the broken model and the wrong keys fail the run
    for case_id in (
        "gw/mock-chat",
        "gw/mock-chat-stream",
        "gw/mock-completion",
        "gw/mock-embed",
        "gw/mock-chat-listed",
        "gw/mock-responses",
    ):
        props = run.cases[case_id]
        assert props["model_monitor.verdict"] == "pass", (case_id, props.get("model_monitor.reason"), run.output)
        assert props["junit"] == "passed", case_id
        assert 0 < float(props["model_monitor.duration_s"]) < 15, case_id
    assert run.reason("gw/mock-chat").startswith("replied 4 chars (finish_reason=stop)")
    assert run.reason("gw/mock-completion").startswith("completed 4 chars")
    assert run.reason("gw/mock-embed") == "1 vector(s) of 4 dimensions"
    assert run.reason("gw/mock-chat-listed").startswith("listed among 3 models")
    assert run.reason("gw/mock-responses").startswith("replied 4 chars (status=completed")


def test_streamed_litellm_chat_passes_with_stream_metrics(litellm_run) -> None:
    props = litellm_run.cases["gw/mock-chat-stream"]
    assert props["model_monitor.verdict"] == "pass", props.get("model_monitor.reason")
    assert "model_monitor.metric.ttft_s" in props, props
    ttft = float(props["model_monitor.metric.ttft_s"])
    assert 0 < ttft <= float(props["model_monitor.duration_s"])
    assert float(props["model_monitor.metric.output_tokens"]) >= 1


def test_a_litellm_500_fails_as_server_error(litellm_run) -> None:
    run = litellm_run
    assert run.cases["gw/mock-broken"]["junit"] == "failed"
    assert run.error_class("gw/mock-broken") == "server_error", run.reason("gw/mock-broken")
    reason = run.reason("gw/mock-broken")
    assert "HTTP 500 from POST /v1/chat/completions" in reason
    assert "mock internal server error" in reason, "the gateway's own message is quoted"
    assert "\n" not in reason


def test_a_wrong_or_missing_litellm_key_fails_as_auth(litellm_run) -> None:
    run = litellm_run
    for case_id in ("gw-wrong-key/mock-chat", "gw-no-key/mock-chat"):
        assert run.cases[case_id]["junit"] == "failed", case_id
        assert run.error_class(case_id) == "auth", (case_id, run.reason(case_id))
        assert "HTTP 401" in run.reason(case_id), run.reason(case_id)
    assert "sk-not-the-master-key" not in run.output, "the key never appears in output"
    assert MASTER_KEY not in run.output
