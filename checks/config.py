"""Load endpoints.yaml once, validate it once, and turn it into frozen cases the rest of the code trusts."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .redact import Secret

SCHEMA_PATH = Path(__file__).with_name("endpoints.schema.json")

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_CONCURRENCY = 20
DEFAULT_MAX_TOKENS = {"chat": 256, "completion": 32}
DEFAULT_PROMPT = {"chat": "Reply with the single word: pong", "completion": "The capital of France is"}
JSON_PROMPT = 'Reply with the JSON object {"answer": "pong"} and nothing else.'
TOOL_PROMPT = "What is the weather in Paris? Use the get_weather tool."
DEFAULT_INPUT = ("Model Monitor canary sentence.",)

# Options that mean something only for some model types: on a model of another type they are an error,
# from `defaults` they apply only where they mean something.
ONLY_FOR = {
    "stream": ("chat", "completion"),
    "expect": ("chat", "completion"),
    "json_mode": ("chat",),
    "tool_call": ("chat",),
    "dimensions": ("embedding",),
    "encoding_format": ("embedding",),
    "input": ("embedding",),
    "rank_check": ("rerank",),
    "prompt": ("chat", "completion"),
    "max_tokens": ("chat", "completion"),
}
STREAM_ONLY = ("max_ttft", "min_tokens_per_s")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_UNSAFE_KEY_CHARS = re.compile(r"[^a-z0-9_-]+")


class ConfigError(Exception):
    """The endpoints file cannot be used; the message names the file, the field and the line."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str
    api_key: Secret | None = None
    headers: tuple[tuple[str, Secret], ...] = ()
    verify_tls: bool = True
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY


@dataclass(frozen=True)
class Case:
    """One endpoint/model: one pytest case."""

    endpoint: Endpoint
    model: str
    model_id: str
    type: str
    monitor: str
    timeout: float = DEFAULT_TIMEOUT_S
    tags: tuple[str, ...] = ()
    prompt: str | None = None
    input: tuple[str, ...] = DEFAULT_INPUT
    max_tokens: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    schedule: str | None = None
    stream: bool = False
    expect: Mapping[str, Any] = field(default_factory=dict)
    json_mode: bool = False
    tool_call: bool = False
    dimensions: int | None = None
    encoding_format: str | None = None
    rank_check: bool = False
    max_latency: float | None = None
    max_ttft: float | None = None
    min_tokens_per_s: float | None = None

    @property
    def id(self) -> str:
        return f"{self.endpoint.name}/{self.model_id}"


@dataclass(frozen=True)
class Suite:
    path: Path
    cases: tuple[Case, ...]

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value the cases carry, for redaction."""
        found: set[str] = set()
        for case in self.cases:
            if case.endpoint.api_key:
                found.add(case.endpoint.api_key.reveal())
            found.update(value.reveal() for _, value in case.endpoint.headers)
        return tuple(sorted(s for s in found if s))


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def monitor_key(text: str) -> str:
    """A path-safe, stable heartbeat monitor key: lower case, [a-z0-9_-] only."""
    return _UNSAFE_KEY_CHARS.sub("-", text.lower()).strip("-")[:100]


def base_url(url: str) -> str:
    """The API root ending in /v1, whether the user wrote the bare host or the OpenAI SDK's .../v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def load(path: Path, environ: Mapping[str, str] | None = None) -> Suite:
    """Read, interpolate, validate and resolve an endpoints file; raise ConfigError naming the place of any fault."""
    environ = os.environ if environ is None else environ
    document = _Document.read(path)
    data = document.interpolate(environ)
    document.validate(data)
    cases = _resolve(document, data, environ)
    return Suite(path=path, cases=cases)


def format_path(parts: tuple[Any, ...] | list[Any]) -> str:
    """endpoints[0].models[1].type"""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass
class _Document:
    """The parsed file plus its YAML node tree, so that every error can name a line."""

    path: Path
    data: Any
    root: yaml.Node | None

    @classmethod
    def read(cls, path: Path) -> _Document:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the endpoints file: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
        loader = _StrictLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
        finally:
            loader.dispose()
        if data is None:
            raise ConfigError(f"{path}: the file is empty; expected a mapping with an 'endpoints' list")
        if not isinstance(data, dict):
            kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
            raise ConfigError(f"{path}:1: the top level is {kind}; expected a mapping with an 'endpoints' list")
        return cls(path=path, data=data, root=root)

    def where(self, parts: tuple[Any, ...] | list[Any]) -> str:
        """file:line for a path into the document (the deepest node that exists)."""
        node = self.root
        for part in parts:
            child = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
            if child is None:
                break
            node = child
        return f"{self.path}:{node.start_mark.line + 1}" if node is not None else str(self.path)

    def error(self, parts: tuple[Any, ...] | list[Any], message: str) -> ConfigError:
        return ConfigError(f"{self.where(parts)}: {format_path(parts)}: {message}")

    def interpolate(self, environ: Mapping[str, str]) -> Any:
        """Replace ${VAR} in every string value; an unset variable is an error."""

        def walk(value: Any, parts: tuple[Any, ...]) -> Any:
            if isinstance(value, dict):
                return {k: walk(v, parts + (k,)) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, parts + (i,)) for i, v in enumerate(value)]
            if isinstance(value, str):
                return _VAR.sub(lambda m: lookup(m.group(1), parts), value)
            return value

        def lookup(name: str, parts: tuple[Any, ...]) -> str:
            if name not in environ:
                raise self.error(parts, f"environment variable {name} is not set (used as ${{{name}}})")
            return environ[name]

        return walk(self.data, ())

    def validate(self, data: Any) -> None:
        validator = jsonschema.Draft202012Validator(load_schema())
        errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
        if errors:
            lines = [self.error(list(e.absolute_path), _describe(e)).args[0] for e in _leaf_errors(errors)[:10]]
            raise ConfigError("\n".join(lines))


def _leaf_errors(errors: list[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    """For oneOf/anyOf failures, the most specific sub-error says more than 'is not valid under any'."""
    out = []
    for error in errors:
        out.append(jsonschema.exceptions.best_match([error]) if error.context else error)
    return out


def _describe(error: jsonschema.ValidationError) -> str:
    """One plain sentence for a schema violation, with the accepted values."""
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "enum":
        return f"{value!r} is not one of: {', '.join(map(str, expected))}"
    if kind == "required":
        missing = [name for name in expected if name not in value]
        return f"missing required field {missing[0]!r}" if missing else error.message
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed))
        return f"unknown field {unknown[0]!r}; accepted: {', '.join(allowed)}"
    if kind == "type":
        return f"{value!r} is not of type {expected}"
    if kind == "minItems" and expected == 1:
        return "must not be empty"
    if kind == "pattern":
        return f"{value!r} does not match {expected}"
    return error.message


def _resolve(document: _Document, data: dict[str, Any], environ: Mapping[str, str]) -> tuple[Case, ...]:
    defaults = data.get("defaults", {})
    cases: list[Case] = []
    seen_ids: dict[str, tuple[Any, ...]] = {}
    seen_monitors: dict[str, tuple[Any, ...]] = {}
    for e, raw_endpoint in enumerate(data["endpoints"]):
        endpoint = _endpoint(document, raw_endpoint, defaults, environ, ("endpoints", e))
        for m, raw_model in enumerate(raw_endpoint["models"]):
            where = ("endpoints", e, "models", m)
            if not raw_model.get("enabled", True):
                continue
            case = _case(document, where, endpoint, raw_endpoint, raw_model, defaults)
            for seen, value, label in ((seen_ids, case.id, "case id"), (seen_monitors, case.monitor, "monitor key")):
                if value in seen:
                    raise document.error(
                        where, f"duplicate {label} {value!r} (also {format_path(seen[value])}); set a distinct "
                        + ("'id'" if label == "case id" else "'monitor'")
                    )
                seen[value] = where
            cases.append(case)
    if not cases:
        raise ConfigError(f"{document.path}: no enabled models; every model has enabled: false")
    return tuple(cases)


def _endpoint(
    document: _Document, raw: dict[str, Any], defaults: dict[str, Any], environ: Mapping[str, str], where: tuple[Any, ...]
) -> Endpoint:
    api_key = None
    key_env = raw.get("api_key_env", defaults.get("api_key_env"))
    if key_env:
        if not environ.get(key_env):
            field_path = where + ("api_key_env",) if "api_key_env" in raw else ("defaults", "api_key_env")
            raise document.error(field_path, f"environment variable {key_env} (the API key) is not set or empty")
        api_key = Secret(environ[key_env])
    headers = {**defaults.get("headers", {}), **raw.get("headers", {})}
    return Endpoint(
        name=raw["name"],
        base_url=base_url(raw["url"]),
        api_key=api_key,
        headers=tuple((name, Secret(value)) for name, value in headers.items()),
        verify_tls=raw.get("verify_tls", defaults.get("verify_tls", True)),
        max_concurrency=raw.get("max_concurrency", defaults.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)),
    )


def _case(
    document: _Document,
    where: tuple[Any, ...],
    endpoint: Endpoint,
    raw_endpoint: dict[str, Any],
    raw: dict[str, Any],
    defaults: dict[str, Any],
) -> Case:
    model_type = raw["type"]

    def pick(name: str, fallback: Any = None) -> Any:
        if model_type not in ONLY_FOR.get(name, (model_type,)):
            return fallback
        return raw.get(name, raw_endpoint.get(name, defaults.get(name, fallback)))

    for name, types in ONLY_FOR.items():
        if name in raw and model_type not in types:
            raise document.error(where + (name,), f"applies only to type {' or '.join(types)}, not {model_type}")
    stream = bool(pick("stream", False))
    for name in STREAM_ONLY:
        if name in raw and not stream:
            raise document.error(where + (name,), "needs stream: true (it is measured on a stream)")
    expect = pick("expect", {})
    _check_expect(document, where + ("expect",), expect)
    model_id = raw.get("id", raw["name"])
    text_input = pick("input", DEFAULT_INPUT)
    json_mode, tool_call = bool(pick("json_mode", False)), bool(pick("tool_call", False))
    default_prompt = TOOL_PROMPT if tool_call else JSON_PROMPT if json_mode else DEFAULT_PROMPT.get(model_type)
    return Case(
        endpoint=endpoint,
        model=raw["name"],
        model_id=model_id,
        type=model_type,
        monitor=monitor_key(raw.get("monitor") or f"{endpoint.name}-{model_id}"),
        timeout=float(pick("timeout", DEFAULT_TIMEOUT_S)),
        tags=tuple(dict.fromkeys([*defaults.get("tags", []), *raw.get("tags", [])])),
        prompt=pick("prompt", default_prompt),
        input=(text_input,) if isinstance(text_input, str) else tuple(text_input),
        max_tokens=pick("max_tokens", DEFAULT_MAX_TOKENS.get(model_type)),
        params={**defaults.get("params", {}), **raw.get("params", {})},
        retries=pick("retries", 0),
        schedule=pick("schedule"),
        stream=stream,
        expect=expect,
        json_mode=json_mode,
        tool_call=tool_call,
        dimensions=pick("dimensions"),
        encoding_format=pick("encoding_format"),
        rank_check=bool(pick("rank_check", False)),
        max_latency=pick("max_latency"),
        max_ttft=pick("max_ttft") if stream else None,
        min_tokens_per_s=pick("min_tokens_per_s") if stream else None,
    )


def _check_expect(document: _Document, where: tuple[Any, ...], expect: Mapping[str, Any]) -> None:
    """A regex that does not compile or a schema that is not one is a config error, not a failed check later."""
    if "regex" in expect:
        try:
            re.compile(expect["regex"])
        except re.error as exc:
            raise document.error(where + ("regex",), f"invalid regular expression: {exc}") from None
    if "json_schema" in expect:
        try:
            jsonschema.Draft202012Validator.check_schema(expect["json_schema"])
        except jsonschema.SchemaError as exc:
            raise document.error(where + ("json_schema",), f"invalid JSON Schema: {exc.message}") from None
