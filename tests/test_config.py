"""endpoints.yaml: what loads, what it resolves to, and a clear error naming file, field and line for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.config import ConfigError, base_url, load, monitor_key
from testbed.openai_server import FakeOpenAI

from .helpers import CHECKS, endpoint, model

GOOD = """\
defaults:
  timeout: 12
  tags: [nightly]
  params: {temperature: 0}
endpoints:
  - name: gw
    url: https://gateway.example/v1/
    api_key_env: GW_KEY
    headers: {X-Team: "${TEAM}"}
    models:
      - {name: meta-llama/Llama-3.1-8B-Instruct, type: chat, tags: [critical], max_tokens: 512}
      - {name: text-embedding-3-small, type: embedding, timeout: 3, input: [a, b]}
      - {name: old, type: chat, enabled: false}
"""

# (file text, expected piece of the one-line error, expected line)
BAD = {
    "syntax": ("endpoints:\n  - name: a\n    url: [unclosed\n", "YAML syntax error", 4),
    "tab-indent": ("endpoints:\n\t- name: a\n", "YAML syntax error", 2),
    "empty": ("", "the file is empty", None),
    "comments-only": ("# nothing here\n", "the file is empty", None),
    "list": ("- name: a\n", "the top level is a list", 1),
    "scalar": ("hello\n", "the top level is a str", 1),
    "no-endpoints": ("defaults: {timeout: 3}\n", "missing required field 'endpoints'", 1),
    "empty-list": ("endpoints: []\n", "endpoints: must not be empty", 1),
    "unknown-type": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: chatt}\n",
        "endpoints[0].models[0].type: 'chatt' is not one of: chat, completion, embedding, rerank, models",
        5,
    ),
    "missing-url": ("endpoints:\n  - name: a\n    models: [{name: m, type: chat}]\n", "endpoints[0]: missing required field 'url'", 2),
    "missing-model-name": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - type: chat\n",
        "endpoints[0].models[0]: missing required field 'name'",
        5,
    ),
    "typo-field": (
        "endpoints:\n  - name: a\n    url: http://x\n    modles: []\n    models: [{name: m, type: chat}]\n",
        "unknown field 'modles'; accepted: api_key_env, headers, max_concurrency, models, name, schedule, timeout, url",
        2,
    ),
    "wrong-type": (
        "endpoints:\n  - name: a\n    url: http://x\n    timeout: soon\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].timeout: 'soon' is not of type number",
        4,
    ),
    "negative-timeout": (
        "endpoints:\n  - name: a\n    url: http://x\n    models: [{name: m, type: chat, timeout: -1}]\n",
        "endpoints[0].models[0].timeout: -1 is less than or equal to the minimum of 0",
        4,
    ),
    "bad-url": ("endpoints:\n  - name: a\n    url: my-service\n    models: [{name: m, type: chat}]\n", "endpoints[0].url: 'my-service' does not match", 3),
    "bad-name": ("endpoints:\n  - name: a/b\n    url: http://x\n    models: [{name: m, type: chat}]\n", "endpoints[0].name: 'a/b' does not match", 2),
    "duplicate-id": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: chat}\n      - {name: m, type: embedding}\n",
        "endpoints[0].models[1]: duplicate case id 'a/m' (also endpoints[0].models[0]); set a distinct 'id'",
        6,
    ),
    "duplicate-monitor": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: M, type: chat}\n      - {name: m, type: embedding, id: m2, monitor: a-m}\n",
        "duplicate monitor key 'a-m'",
        6,
    ),
    "duplicate-key": ("endpoints:\n  - name: a\n    name: b\n    url: http://x\n    models: [{name: m, type: chat}]\n", "duplicate key 'name'", 3),
    "unset-var": ("endpoints:\n  - name: a\n    url: ${NO_SUCH_VAR_FOR_TEST}\n    models: [{name: m, type: chat}]\n", "endpoints[0].url: environment variable NO_SUCH_VAR_FOR_TEST is not set", 3),
    "unset-key-env": (
        "endpoints:\n  - name: a\n    url: http://x\n    api_key_env: NO_SUCH_KEY_FOR_TEST\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].api_key_env: environment variable NO_SUCH_KEY_FOR_TEST (the API key) is not set",
        4,
    ),
    "all-disabled": ("endpoints:\n  - name: a\n    url: http://x\n    models: [{name: m, type: chat, enabled: false}]\n", "no enabled models", None),
    "bad-tag": ("endpoints:\n  - name: a\n    url: http://x\n    models: [{name: m, type: chat, tags: [not ok]}]\n", "tags[0]: 'not ok' does not match", 4),
    "bad-regex": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - name: m\n        type: chat\n        expect: {regex: 'po(ng'}\n",
        "endpoints[0].models[0].expect.regex: invalid regular expression: missing ), unterminated subpattern",
        7,
    ),
    "bad-json-schema": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - name: m\n        type: chat\n        expect: {json_schema: {type: banana}}\n",
        "endpoints[0].models[0].expect.json_schema: invalid JSON Schema:",
        7,
    ),
    "ttft-without-stream": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: chat, max_ttft: 2}\n",
        "endpoints[0].models[0].max_ttft: needs stream: true",
        5,
    ),
    "option-for-another-type": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: embedding, json_mode: true}\n",
        "endpoints[0].models[0].json_mode: applies only to type chat, not embedding",
        5,
    ),
    "input-type": ("endpoints:\n  - name: a\n    url: http://x\n    models: [{name: m, type: embedding, input: 3}]\n", "endpoints[0].models[0].input", 4),
}


def test_a_good_file_resolves_defaults_overrides_and_secrets(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(GOOD)
    suite = load(path, {"GW_KEY": "sk-test-1234", "TEAM": "team-secret-value"})
    chat, embed = suite.cases
    assert [c.id for c in suite.cases] == ["gw/meta-llama/Llama-3.1-8B-Instruct", "gw/text-embedding-3-small"]
    assert chat.endpoint.base_url == "https://gateway.example/v1"
    assert (chat.timeout, embed.timeout) == (12.0, 3.0)
    assert chat.tags == ("nightly", "critical") and chat.max_tokens == 512
    assert chat.params == {"temperature": 0}
    assert embed.input == ("a", "b")
    assert chat.monitor == "gw-meta-llama-llama-3-1-8b-instruct"
    assert set(suite.secrets) == {"sk-test-1234", "team-secret-value"}
    assert "sk-test-1234" not in repr(suite) and "team-secret-value" not in repr(suite)


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_file_is_one_clear_error_naming_file_field_and_line(tmp_path: Path, name: str) -> None:
    text, piece, line = BAD[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load(path, {})
    message = str(raised.value)
    assert piece in message
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert "\n" not in message


def test_not_utf8_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("endpoints:\n  - name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml:2: not UTF-8 \(byte 0xe9"):
        load(path, {})
    with pytest.raises(ConfigError, match="cannot read the endpoints file: No such file or directory"):
        load(tmp_path / "missing.yaml", {})


@pytest.mark.parametrize(
    "url", ["http://h", "http://h/", "http://h/v1", "http://h/v1/"],
)
def test_base_url_never_doubles_v1(url: str) -> None:
    assert base_url(url) == "http://h/v1"


def test_monitor_keys_are_path_safe() -> None:
    assert monitor_key("GW-meta-llama/Llama-3.1-8B-Instruct") == "gw-meta-llama-llama-3-1-8b-instruct"
    assert monitor_key("my_chat model") == "my_chat-model"


def test_a_config_error_stops_the_run_with_exit_4_before_any_request(openai_server: FakeOpenAI, run_monitor) -> None:
    bad = {"endpoints": [endpoint(openai_server.url, model("never-sent"), model("never-sent-either", "chatt"))]}
    run = run_monitor(bad)
    assert run.ret == 4
    assert "endpoints[0].models[1].type: 'chatt' is not one of: chat, completion, embedding, rerank, models" in run.output
    assert openai_server.requests_for("never-sent") == []


def test_a_missing_default_file_names_the_ways_to_give_one(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(str(CHECKS), "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*endpoints file: *endpoints.yaml: cannot read the endpoints file: No such file or directory*"])


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_bad_file_stops_the_run_with_exit_4_sending_no_request_or_ping(
    openai_server: FakeOpenAI, receiver, run_monitor, name: str
) -> None:
    text, piece, line = BAD[name]
    before = len(openai_server.requests)
    run = run_monitor(text.replace("http://x", openai_server.url), f"--cronitor-url={receiver.url}/p/badconfig1234")
    assert run.ret == 4
    assert piece in run.output and ("endpoints.yaml:" in run.output or "endpoints.yaml: " in run.output)
    assert len(openai_server.requests) == before and receiver.pings == []
