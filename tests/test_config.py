"""endpoints.yaml: what loads, what it resolves to, and a clear error naming file, field and line for what does not."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_monitor import config
from model_monitor.case import monitor_key
from model_monitor.config import MAX_DEPTH, SCHEMA_PATH, ConfigError, Suite, base_url, load
from model_monitor.redact import Redactor
from testbed.openai_server import FakeOpenAI

from .helpers import CHECKS, WORKERS, endpoint, model

# An endpoint's fields as an unknown-field error lists them: the schema's own list, so a new field needs no edit here.
ENDPOINT_FIELDS = ", ".join(sorted(json.loads(SCHEMA_PATH.read_text())["$defs"]["endpoint"]["properties"]))

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


def one_model(fields: str, model_type: str = "chat") -> str:
    """A file whose one model (line 4) has this type and these extra flow-mapping fields."""
    return f"endpoints:\n  - name: a\n    url: http://x\n    models: [{{name: m, type: {model_type}, {fields}}}]\n"


def one_endpoint(fields: str) -> str:
    """A file whose one endpoint has these extra fields on line 3 (the url is line 2)."""
    return f"endpoints:\n  - {{name: a, url: http://x,\n     {fields}, models: [{{name: m, type: chat}}]}}\n"


# The fields that belong to some model types, a valid value of each, and the types it applies to.
TYPE_FIELDS = {
    "stream": ("true", "chat or completion or messages or responses"),
    "expect": ("{contains: pong}", "chat or completion or messages or responses or transcription"),
    "prompt": ("hello", "chat or completion or image or messages"),
    "max_tokens": ("8", "chat or completion or messages"),
    "max_ttft": ("2", "chat or completion or messages or responses"),
    "min_tokens_per_s": ("5", "chat or completion or messages or responses"),
    "json_mode": ("true", "chat"),
    "tool_call": ("true", "chat"),
    "dimensions": ("8", "embedding"),
    "encoding_format": ("float", "embedding"),
    "input": ("hello", "embedding or moderation or responses or speech"),
    "max_output_tokens": ("8", "responses"),
    "rank_check": ("true", "rerank"),
    "language": ("en", "transcription"),
    "voice": ("alloy", "speech"),
    "response_format": ("wav", "speech"),
    "size": ("256x256", "image"),
}
MODEL_TYPES = (
    "chat",
    "completion",
    "embedding",
    "rerank",
    "responses",
    "messages",
    "models",
    "transcription",
    "speech",
    "moderation",
    "image",
)


def wrong_type_files() -> dict[str, tuple[str, str, int]]:
    """Every field on every model type it does not apply to: refused, naming the types it applies to."""
    return {
        f"{name}-on-{model_type}": (
            one_model(f"{name}: {value}", model_type),
            f"endpoints[0].models[0].{name}: applies only to type {types}, not {model_type}",
            4,
        )
        for name, (value, types) in TYPE_FIELDS.items()
        for model_type in MODEL_TYPES
        if model_type not in types.split(" or ")
    }


# Billion laughs: each anchor is nine aliases of the one before; "i" would stand for 9^9 strings.
ALIAS_BOMB = (
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    + "endpoints: [{name: a, url: http://x, models: [{name: m, type: chat, params: {x: *i}}]}]\n"
)

# Every password in these files is PASSWORD: no message may show it.
PASSWORD = "hunter2-canary"

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
        "endpoints[0].models[0].type: 'chatt' is not one of: chat, completion, embedding, image, messages, models, moderation",
        5,
    ),
    "missing-url": (
        "endpoints:\n  - name: a\n    models: [{name: m, type: chat}]\n",
        "endpoints[0]: missing required field 'url'",
        2,
    ),
    "missing-model-name": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - type: chat\n",
        "endpoints[0].models[0]: missing required field 'name'",
        5,
    ),
    "typo-field": (
        "endpoints:\n  - name: a\n    url: http://x\n    modles: []\n    models: [{name: m, type: chat}]\n",
        "unknown field 'modles'; accepted: " + ENDPOINT_FIELDS,
        4,
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
    "bad-url": (
        "endpoints:\n  - name: a\n    url: my-service\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].url: 'my-service' does not match",
        3,
    ),
    "bad-name": (
        "endpoints:\n  - name: a/b\n    url: http://x\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].name: 'a/b' does not match",
        2,
    ),
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
    "duplicate-key": (
        "endpoints:\n  - name: a\n    name: b\n    url: http://x\n    models: [{name: m, type: chat}]\n",
        "duplicate key 'name'",
        3,
    ),
    "no-name-beside-a-model-with-one": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: chat}\n      - {type: chat}\n",
        "endpoints[0].models[1]: missing required field 'name'",
        6,
    ),
    "list-as-a-key": (
        "endpoints:\n  - name: a\n    url: http://x\n    ? [name]\n    : b\n    models: [{name: m, type: chat}]\n",
        "found unhashable key",
        4,
    ),
    "text-tagged-as-a-mapping": ("endpoints: !!map a\n", "expected a mapping node, but found scalar", 1),
    "unset-var": (
        "endpoints:\n  - name: a\n    url: ${NO_SUCH_VAR_FOR_TEST}\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].url: environment variable NO_SUCH_VAR_FOR_TEST is not set",
        3,
    ),
    "unset-key-env": (
        "endpoints:\n  - name: a\n    url: http://x\n    api_key_env: NO_SUCH_KEY_FOR_TEST\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].api_key_env: environment variable NO_SUCH_KEY_FOR_TEST (the API key) is not set",
        4,
    ),
    "all-disabled": (
        "endpoints:\n  - name: a\n    url: http://x\n    models: [{name: m, type: chat, enabled: false}]\n",
        "no enabled models",
        None,
    ),
    "bad-tag": (
        "endpoints:\n  - name: a\n    url: http://x\n    models: [{name: m, type: chat, tags: [not ok]}]\n",
        "tags[0]: 'not ok' does not match",
        4,
    ),
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
    "min-tokens-per-s-without-stream": (
        one_model("min_tokens_per_s: 5", "completion"),
        "endpoints[0].models[0].min_tokens_per_s: needs stream: true",
        4,
    ),
    "ttft-with-stream-off": (
        one_model("stream: false, max_ttft: 2"),
        "endpoints[0].models[0].max_ttft: needs stream: true, not false",
        4,
    ),
    "ttft-with-stream-off-in-defaults": (
        "defaults: {stream: false}\n" + one_model("max_ttft: 2"),
        "endpoints[0].models[0].max_ttft: needs stream: true",
        5,
    ),
    "ttft-turning-off-the-defaults-stream": (
        "defaults: {stream: true}\n" + one_model("stream: false, min_tokens_per_s: 5"),
        "endpoints[0].models[0].min_tokens_per_s: needs stream: true, not false",
        5,
    ),
    "ttft-on-embedding-with-the-defaults-stream": (
        "defaults: {stream: true}\n" + one_model("max_ttft: 2", "embedding"),
        "endpoints[0].models[0].max_ttft: applies only to type chat or completion or messages or responses, not embedding",
        5,
    ),
    "option-for-another-type": (
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: embedding, json_mode: true}\n",
        "endpoints[0].models[0].json_mode: applies only to type chat, not embedding",
        5,
    ),
    "input-type": (
        "endpoints:\n  - name: a\n    url: http://x\n    models: [{name: m, type: embedding, input: 3}]\n",
        "endpoints[0].models[0].input",
        4,
    ),
    # Names become test ids, monitor keys and one-line reports.
    "tab-in-model-name": (
        'endpoints:\n  - name: a\n    url: http://x\n    models: [{name: "m\\tx", type: chat}]\n',
        "endpoints[0].models[0].name: contains U+0009, a control character or line break",
        4,
    ),
    "newline-ending-endpoint-name": (
        'endpoints:\n  - name: "a\\n"\n    url: http://x\n    models: [{name: m, type: chat}]\n',
        "endpoints[0].name: contains U+000A",
        2,
    ),
    "control-in-id": (one_model('id: "m\\x01"'), "endpoints[0].models[0].id: contains U+0001", 4),
    "nel-in-monitor": (one_model('monitor: "a\\u0085b"'), "endpoints[0].models[0].monitor: contains U+0085", 4),
    "line-separator-in-name": (
        'endpoints:\n  - name: a\n    url: http://x\n    models: [{name: "m\\u2028x", type: chat}]\n',
        "endpoints[0].models[0].name: contains U+2028",
        4,
    ),
    "newline-ending-tag": (one_model('tags: ["critical\\n"]'), "endpoints[0].models[0].tags[0]: contains U+000A", 4),
    "empty-monitor-key": (
        one_model('monitor: "!!!"'),
        "endpoints[0].models[0].monitor: '!!!' leaves an empty monitor key",
        4,
    ),
    "lone-surrogate": (
        one_model('id: "m\\ud83e"'),
        "endpoints[0].models[0].id: a lone UTF-16 surrogate (U+D83E) is not a character",
        4,
    ),
    # Configuration that cannot work: refused here, not found as a crash in every case.
    "credentials-in-url": (
        f"endpoints:\n  - name: a\n    url: http://user:{PASSWORD}@x\n    models: [{{name: m, type: chat}}]\n",
        "endpoints[0].url: credentials in the URL are not accepted; put the API key in the environment variable "
        "named by api_key_env, or other credentials in headers",
        3,
    ),
    "credentials-without-scheme": (
        f"endpoints:\n  - name: a\n    url: user:{PASSWORD}@x\n    models: [{{name: m, type: chat}}]\n",
        "endpoints[0].url: '***@x' does not match",
        3,
    ),
    "open-ipv6-bracket": (
        "endpoints:\n  - name: a\n    url: http://[::1\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].url: not a valid URL: Invalid IPv6 URL",
        3,
    ),
    "port-out-of-range": (
        "endpoints:\n  - name: a\n    url: http://h:99999\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].url: not a valid URL: Port out of range",
        3,
    ),
    "fragment-in-url": (
        "endpoints:\n  - name: a\n    url: http://x/v1#chat\n    models: [{name: m, type: chat}]\n",
        "endpoints[0].url: a fragment (#...) is never sent",
        3,
    ),
    "nan-timeout": (one_model("timeout: .nan"), "endpoints[0].models[0].timeout: nan is not a finite number", 4),
    "inf-max-latency": (
        one_model("max_latency: .inf"),
        "endpoints[0].models[0].max_latency: inf is not a finite number",
        4,
    ),
    "inf-in-params": (
        one_model("params: {temperature: -.inf}"),
        "endpoints[0].models[0].params.temperature: -inf is not a finite number",
        4,
    ),
    "date-in-params": (
        one_model("params: {seed: 2024-01-01}"),
        "endpoints[0].models[0].params.seed: a YAML date is not accepted",
        4,
    ),
    "impossible-date": (
        one_model("params: {seed: 2024-02-30}"),
        "cannot read this value: day is out of range for month",
        4,
    ),
    "integer-of-5000-digits": (
        one_model("max_tokens: " + "9" * 5000),
        "cannot read this value: Exceeds the limit (4300 digits)",
        4,
    ),
    # PyYAML's constructors trust that the text fits the tag: these raised IndexError, KeyError, AttributeError
    "empty-tagged-float": (one_model("max_tokens: !!float ''"), "cannot read this value: its tag says float", 4),
    "empty-tagged-int": (one_model('max_tokens: !!int ""'), "cannot read this value: its tag says int", 4),
    "tagged-bool-no-bool": (one_model("stream: !!bool maybe"), "cannot read this value: its tag says bool", 4),
    "tagged-timestamp-no-date": (one_model("params: {seed: !!timestamp x}"), "its tag says timestamp", 4),
    "key-that-is-not-text": (
        one_model("params: {on: 1}"),
        "endpoints[0].models[0].params: key True: is not text; quote it",
        4,
    ),
    # params add to the request; they never replace what the case itself sends, nor probe another model under its id
    "params-replace-model": (
        one_model("params: {model: other}"),
        "endpoints[0].models[0].params: model: set by the case itself",
        4,
    ),
    "params-stream-and-messages": (
        one_model("params: {stream: true, messages: [], temperature: 0}"),
        "endpoints[0].models[0].params: messages, stream: set by the case itself, not by params",
        4,
    ),
    "params-replace-speech-format": (
        one_model("params: {response_format: mp3}", "speech"),
        "params: response_format: set by the case itself",
        4,
    ),
    "params-in-defaults-replace-input": (
        "defaults: {params: {input: other}}\n"
        "endpoints:\n  - name: a\n    url: http://x\n    models: [{name: m, type: embedding}]\n",
        "endpoints[0].models[0].params: input: set by the case itself",
        5,
    ),
    "bad-header-name": (
        one_endpoint('headers: {"X Team": t}'),
        "endpoints[0].headers.X Team: 'X Team' is not a valid header name",
        3,
    ),
    "control-in-header": (
        one_endpoint('headers: {X-Team: "t\\x1bx"}'),
        "endpoints[0].headers.X-Team: contains a control character (U+001B)",
        3,
    ),
    "non-ascii-header": (
        one_endpoint("headers: {X-Team: caf\u00e9}"),
        "endpoints[0].headers.X-Team: contains a non-ASCII character",
        3,
    ),
    # The file cannot exhaust the machine.
    "alias-bomb": (ALIAS_BOMB, "more than 100000 YAML nodes, aliases counted as what they expand to (MAX_NODES)", 6),
    "recursive-alias": (
        "endpoints:\n  - &e\n    name: a\n    url: http://x\n    models: [*e]\n",
        "an alias refers to a node that contains it",
        5,
    ),
    "lists-5000-deep": (
        "endpoints: " + "[" * 5000 + "]" * 5000 + "\n",
        "nested more than 64 levels deep (MAX_DEPTH)",
        1,
    ),
    "mappings-100000-deep": (
        "endpoints: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n",
        "nested more than 64 levels deep",
        1,
    ),
    **wrong_type_files(),
}


def test_a_good_file_resolves_defaults_overrides_and_secrets(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(GOOD)
    environ = {"GW_KEY": "sk-test-1234", "TEAM": "team-secret-value"}
    suite = load(path, environ)
    redact = Redactor()
    chat, embed = suite.resolve(suite.cases, redact, environ)
    assert [c.id for c in suite.cases] == ["gw/meta-llama/Llama-3.1-8B-Instruct", "gw/text-embedding-3-small"]
    assert chat.endpoint.base_url == "https://gateway.example/v1"
    assert (chat.timeout, embed.timeout) == (12.0, 3.0)
    assert chat.tags == ("nightly", "critical") and chat.options.max_tokens == 512
    assert chat.params == {"temperature": 0}
    assert embed.options.input == ["a", "b"]
    assert chat.monitor == "gw-meta-llama-llama-3-1-8b-instruct"
    assert redact("sk-test-1234, team-secret-value") == "***, ***", "resolving registers them"
    for shown in (repr(suite), repr(chat), repr(embed)):
        assert "sk-test-1234" not in shown and "team-secret-value" not in shown


def test_stream_slos_on_a_model_that_streams_by_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text("defaults: {stream: true}\n" + one_model("max_ttft: 2, min_tokens_per_s: 5"))
    (case,) = load(path, {}).cases
    assert (case.stream, case.max_ttft, case.min_tokens_per_s) == (True, 2, 5)


def resolved(suite: Suite) -> tuple:
    """Every case of the suite, resolved as a run that selects them all resolves them (with no variable set)."""
    return suite.resolve(suite.cases, Redactor(), {})


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_file_is_one_clear_error_naming_file_field_and_line(tmp_path: Path, name: str) -> None:
    text, piece, line = BAD[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        resolved(load(path, {}))
    message = str(raised.value)
    assert piece in message
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert "\n" not in message and PASSWORD not in message


# A field on a model type it does not apply to, or a value out of its range: (model entry, the error's piece).
FIELD_ERRORS = {
    "messages-max-output-tokens": (
        model("m", "messages", max_output_tokens=8),
        "models[0].max_output_tokens: applies only to type responses, not messages",
    ),
    "messages-max-tokens-zero": (
        model("m", "messages", max_tokens=0),
        "models[0].max_tokens: 0 is less than the minimum of 1",
    ),
    "messages-json-mode": (
        model("m", "messages", json_mode=True),
        "models[0].json_mode: applies only to type chat, not messages",
    ),
    "messages-ttft-without-stream": (model("m", "messages", max_ttft=2), "models[0].max_ttft: needs stream: true"),
    "chat-max-output-tokens": (
        model("m", max_output_tokens=8),
        "models[0].max_output_tokens: applies only to type responses, not chat",
    ),
    "responses-max-output-tokens-zero": (
        model("m", "responses", max_output_tokens=0),
        "models[0].max_output_tokens: 0 is less than the minimum of 1",
    ),
    "responses-input-a-list": (
        model("m", "responses", input=["a", "b"]),
        "models[0].input: ['a', 'b'] is not of type string",
    ),
    "completion-input": (
        model("m", "completion", input="hi"),
        "models[0].input: applies only to type embedding or moderation or responses or speech, not completion",
    ),
    "responses-prompt": (
        model("m", "responses", prompt="hi"),
        "models[0].prompt: applies only to type chat or completion or image or messages, not responses",
    ),
    "responses-ttft-without-stream": (model("m", "responses", max_ttft=2), "models[0].max_ttft: needs stream: true"),
}


@pytest.mark.parametrize("name", sorted(FIELD_ERRORS))
def test_a_type_field_error_names_the_field(tmp_path: Path, name: str) -> None:
    entry, piece = FIELD_ERRORS[name]
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [endpoint("http://x", entry)]}), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"endpoints[0].{piece}")):
        resolved(load(path, {}))


def test_not_utf8_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("endpoints:\n  - name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml:2: not UTF-8 \(byte 0xe9"):
        load(path, {})
    with pytest.raises(ConfigError, match="cannot read the endpoints file: No such file or directory"):
        load(tmp_path / "missing.yaml", {})


@pytest.mark.parametrize(
    "url",
    ["http://h", "http://h/", "http://h/v1", "http://h/v1/"],
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
    assert (
        "endpoints[0].models[1].type: 'chatt' is not one of: chat, completion, embedding, image, messages, models, moderation"
        in run.output
    )
    assert openai_server.requests_for("never-sent") == []


def test_a_missing_default_file_names_the_ways_to_give_one(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(str(CHECKS), "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        ["*endpoints file: *endpoints.yaml: cannot read the endpoints file: No such file or directory*"]
    )


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_bad_file_stops_the_run_with_exit_4_sending_no_request_or_ping(
    openai_server: FakeOpenAI, receiver, run_monitor, name: str
) -> None:
    text, piece, _ = BAD[name]
    before = len(openai_server.requests)
    run = run_monitor(text.replace("http://x", openai_server.url), f"--cronitor-url={receiver.url}/p/badconfig1234")
    assert run.ret == 4
    assert piece in run.output and ("endpoints.yaml:" in run.output or "endpoints.yaml: " in run.output)
    assert len(openai_server.requests) == before and receiver.pings == []
    assert PASSWORD not in run.output


# The same three names written as characters and as escapes (the emoji as json.dumps writes it: a surrogate pair).
NAMES = {"café": "caf\\u00e9", "模型": "\\u6a21\\u578b", "🧪": "\\ud83e\\uddea"}


def names_file(url: str) -> str:
    """Endpoint 'lit' writes the names as characters, endpoint 'esc' as escapes."""
    text = "endpoints:\n"
    for form, index in (("lit", 0), ("esc", 1)):
        text += f"  - name: {form}\n    url: {url}\n    models:\n"
        for n, written in enumerate(pair[index] for pair in NAMES.items()):
            text += f'      - {{name: "{written}", type: chat, monitor: {form}-{n}}}\n'
    return text


def test_names_load_to_the_intended_character_written_as_text_or_as_escapes(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(names_file("http://x"), encoding="utf-8")
    assert [case.id for case in load(path, {}).cases] == [f"{form}/{name}" for form in ("lit", "esc") for name in NAMES]


def test_names_written_as_escapes_are_requested_and_reported_as_the_character(
    openai_server: FakeOpenAI, run_monitor
) -> None:
    run = run_monitor(names_file(openai_server.url))
    assert run.ret == 0, run.output
    for name in NAMES:
        assert len(openai_server.requests_for(name)) == 2
    assert len(run.cases) == 6 and all(props["junit"] == "passed" for props in run.cases.values())


def test_a_key_file_ending_in_a_newline_just_works(monkeypatch: pytest.MonkeyPatch, run_monitor) -> None:
    """kubectl create secret --from-file keeps the file's trailing newline in the environment variable."""
    monkeypatch.setenv("MM_TEST_FILE_KEY", "sk-from-a-file-1234\n")
    with FakeOpenAI(api_key="sk-from-a-file-1234") as server:
        run = run_monitor({"endpoints": [endpoint(server.url, model("chat-model"), api_key_env="MM_TEST_FILE_KEY")]})
        assert run.ret == 0, run.output
        assert [r.headers["authorization"] for r in server.requests] == ["Bearer sk-from-a-file-1234"]


@pytest.mark.parametrize(
    ("fields", "piece"),
    [
        (
            {"api_key_env": "MM_TEST_BAD_SECRET"},
            "endpoints[0].api_key_env: environment variable MM_TEST_BAD_SECRET "
            "(the API key) contains a control character (U+0001)",
        ),
        (
            {"headers": {"X-Token": "t-${MM_TEST_BAD_SECRET}"}},
            "endpoints[0].headers.X-Token: contains a control character (U+0001)",
        ),
    ],
    ids=["api-key", "header"],
)
def test_a_secret_with_a_control_character_is_refused_without_showing_it(
    openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, run_monitor, fields: dict[str, Any], piece: str
) -> None:
    monkeypatch.setenv("MM_TEST_BAD_SECRET", "sk-in\x01side-secret")
    run = run_monitor({"endpoints": [endpoint(openai_server.url, model("never-sent-secret"), **fields)]})
    assert run.ret == 4 and piece in run.output
    assert "side-secret" not in run.output and openai_server.requests_for("never-sent-secret") == []


def test_the_url_query_is_kept_on_every_request(run_monitor) -> None:
    """Azure style: the API version travels in the query, which must follow the API path, not precede it."""
    models = model("chat-model"), model("embed-model", "embedding"), model("models-listed", "models")
    with FakeOpenAI(models=("chat-model", "embed-model", "models-listed")) as server:
        run = run_monitor({"endpoints": [endpoint(f"{server.url}/v1?api-version=2024-06-01", *models)]})
        assert run.ret == 0, run.output
        seen = sorted((r.path, r.query) for r in server.requests)
    paths = ["/v1/chat/completions", "/v1/embeddings", "/v1/models"]
    assert seen == [(path, "api-version=2024-06-01") for path in paths]


def test_the_url_query_is_held_as_a_secret(tmp_path: Path) -> None:
    """A query may carry a key (?code=...): it never prints itself, and the redactor knows it."""
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "endpoints:\n  - {name: a, url: 'https://h/openai/v1/?code=k-1234', models: [{name: m, type: chat}]}\n"
    )
    redact = Redactor()
    suite = load(path, {})
    (case,) = suite.resolve(suite.cases, redact, {})
    assert case.endpoint.url_for("/chat/completions") == "https://h/openai/v1/chat/completions?code=k-1234"
    assert "k-1234" not in repr(case) and redact("?code=k-1234") == "?***"


def test_a_huge_file_is_refused_by_size_before_parsing(pytester: pytest.Pytester) -> None:
    path = pytester.path / "endpoints.yaml"
    with path.open("wb") as file:
        file.truncate(50 * 2**20)  # sparse: 50 MB of NUL bytes that cost no disk
    result = pytester.runpytest_subprocess(str(CHECKS), f"--endpoints={path}", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*endpoints file: {path}: larger than 10 MiB (MAX_FILE_BYTES)*"])


def test_a_file_nested_to_the_limit_still_loads(openai_server: FakeOpenAI, run_monitor) -> None:
    """MAX_DEPTH leaves room: params and a json_schema as deep as allowed load under pytest without RecursionError."""
    params: Any = 1
    for _ in range(MAX_DEPTH - 6):  # root, endpoints, endpoint, models, model, then params' levels, then 1
        params = {"a": params}
    schema: dict[str, Any] = {"type": "object"}
    for _ in range((MAX_DEPTH - 8) // 2):  # each level is two nodes: the schema and its properties
        schema = {"type": "object", "properties": {"a": schema}}
    deep = model("chat-model", params=params, expect={"json_schema": schema})
    run = run_monitor({"endpoints": [endpoint(openai_server.url, deep)]}, "--collect-only")
    assert run.ret == 0, run.output


# Five kinds of mistake, one a line: a wrong type, an unknown field, a block value of the wrong type (its key's
# line, not the line below where the value starts), a type that does not exist, and a regex that does not compile
# (found by a check after the schema).
FIVE_MISTAKES = """\
endpoints:
  - name: a
    url: http://x
    timeout: soon
    modles: []
    models:
      - name: m
        type: chat
        params:
          - 1
  - name: b
    url: http://y
    models:
      - name: n
        type: chatt
      - name: o
        type: chat
        expect: {regex: 'po(ng'}
"""
FIVE_FOUND = [
    "4: endpoints[0].timeout: 'soon' is not of type number",
    f"5: endpoints[0].modles: unknown field 'modles'; accepted: {ENDPOINT_FIELDS}",
    "9: endpoints[0].models[0].params: [1] is not of type object",
    "15: endpoints[1].models[0].type: 'chatt' is not one of: chat, completion, embedding, image, messages, models, moderation, "
    "rerank, responses, speech, transcription",
    "18: endpoints[1].models[1].expect.regex: invalid regular expression: missing ), unterminated subpattern at "
    "position 2",
]


def test_every_mistake_in_a_file_is_listed_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(FIVE_MISTAKES)
    with pytest.raises(ConfigError) as raised:
        load(path, {})
    assert str(raised.value).splitlines() == [f"{path}:{found}" for found in FIVE_FOUND]


def test_a_file_of_thirty_mistakes_lists_twenty_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "endpoints:\n  - name: a\n    url: http://x\n    models:\n"
        + "".join(f"      - {{name: m{n}, type: chatt}}\n" for n in range(30))
    )
    with pytest.raises(ConfigError) as raised:
        load(path, {})
    lines = str(raised.value).splitlines()
    assert [line.split(": ")[0] for line in lines[:-1]] == [f"{path}:{5 + n}" for n in range(20)]
    assert lines[-1] == "... and 10 more"


@WORKERS
def test_every_mistake_stops_the_run_in_one_go_before_any_request(
    openai_server: FakeOpenAI, run_monitor, workers: list[str]
) -> None:
    before = len(openai_server.requests)
    run = run_monitor(FIVE_MISTAKES.replace("http://y", openai_server.url), *workers)
    assert run.ret == 4
    errors = [line for line in run.result.stderr.lines if "endpoints.yaml:" in line]
    assert [line.split("endpoints.yaml:", 1)[1] for line in errors] == FIVE_FOUND
    assert errors[0].startswith("ERROR: endpoints file: ") and len(openai_server.requests) == before


FAST_AND_REFERENCE = """\
defaults: {timeout: 5, tags: &t [nightly]}
endpoints:
  - name: "gw"
    url: http://127.0.0.1:1/v1
    models:
      - {name: a, type: chat, tags: *t}
      - name: 'b # not a comment'
        type: embedding
        prompt: |
          two
          lines
      - {name: "caf\\u00e9", type: chat, max_tokens: 0x10}
"""
# What the fast loader leaves to PyYAML's constructor (values of other tags), and aliases.
RARE_IN_A_FILE = """\
params: &params {seed: 1}
name: &name gw
endpoints:
  - name: *name
    url: !!str http://127.0.0.1:1/v1
    models: !!seq
      - {params: *params, name: a, type: chat, retries: !!int "2"}
      - {name: b, type: embedding, params: {at: 2024-01-02, none: ~, flag: yes, set: !!set {x}, pairs: !!omap [a: 1]}}
"""


@pytest.mark.parametrize("text", [FAST_AND_REFERENCE, RARE_IN_A_FILE], ids=["usual", "rare"])
def test_libyaml_reads_a_file_as_the_python_parser_does(text: str) -> None:
    """The fast parser is only a faster way to the same data and the same lines (which every error names)."""
    fast_root, fast = config.compose(config.FastStrictLoader, text)
    root, reference = config.compose(config.StrictLoader, text)
    assert fast == reference and fast["endpoints"][0]["name"] in ("gw", "café")

    def lines(node: Any) -> list[tuple[int, str]]:
        children = node.value if isinstance(node.value, list) else []
        flat = [child for item in children for child in (item if isinstance(item, tuple) else (item,))]
        return [(node.start_mark.line, node.tag), *(line for child in flat for line in lines(child))]

    assert lines(fast_root) == lines(root)


def test_what_libyaml_refuses_is_read_by_the_python_parser(tmp_path: Path) -> None:
    """libyaml refuses a JSON-style surrogate pair; PyYAML reads it and we join it: the file loads."""
    path = tmp_path / "endpoints.yaml"
    path.write_text('endpoints:\n  - name: a\n    url: http://x\n    models: [{name: "\\ud83e\\uddea", type: chat}]\n')
    with pytest.raises(yaml.YAMLError):
        config.compose(config.FastStrictLoader, path.read_text())
    assert load(path, {}).cases[0].model == "\U0001f9ea"


def test_a_loaded_file_keeps_no_node_of_its_models(tmp_path: Path) -> None:
    """A run holds its Suite to the end; the YAML nodes of 5,000 models were 10 MB of it, kept only for lines that
    no question after the load asks about. What resolve asks (an unset variable in a URL) still names its line."""
    models = [model(f"m{i}") for i in range(300)]
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [endpoint("http://x/${HOST_VAR}", *models)]}), encoding="utf-8")
    gc.collect()
    before = sum(isinstance(o, yaml.Node) for o in gc.get_objects())
    suite = load(path, {})
    gc.collect()
    held = sum(isinstance(o, yaml.Node) for o in gc.get_objects()) - before
    assert len(suite.cases) == 300
    assert held < 20, f"{held} YAML nodes still held after loading 300 models"
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.lstrip().startswith("url:"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:{line}: endpoints\[0\]\.url: .*HOST_VAR"):
        resolved(suite)
