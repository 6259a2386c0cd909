"""Load endpoints.yaml once, validate it once, and turn it into frozen cases the rest of the code trusts."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema

from ..case import DEFAULT_TIMEOUT_S, Case, Endpoint, monitor_key
from ..errors import MAX_LISTED, ConfigError
from ..types import TYPES
from .connection import Connection, base_url, secrets
from .document import Document, Problems, breaking_char, format_path
from .schema import SCHEMA_PATH
from .yaml_loader import MAX_DEPTH, FastStrictLoader, StrictLoader, compose

__all__ = [
    "ConfigError", "Discovery", "FastStrictLoader", "MAX_DEPTH", "MAX_LISTED", "SCHEMA_PATH", "StrictLoader", "Suite",
    "base_url", "compose", "load", "secrets",
]

DISCOVERED_TYPE = "chat"  # a discovered model's type when no `types` rule matches its id




@dataclass(frozen=True)
class Discovery:
    """How a `discover: true` endpoint turns the model ids it lists into cases (discovery.py does the listing)."""

    timeout: float
    include: tuple[str, ...]  # globs; empty: every listed model
    exclude: tuple[str, ...]
    types: tuple[tuple[str, str], ...]  # (glob, type), the first match wins
    explicit: frozenset[str]  # ids of the models the file lists itself (enabled or not): they keep their entry
    document: Document = field(repr=False)
    where: tuple[Any, ...] = field(repr=False)
    endpoint: Endpoint = field(repr=False)
    raw_endpoint: dict[str, Any] = field(repr=False)
    defaults: dict[str, Any] = field(repr=False)

    def type_of(self, model_id: str) -> str:
        return next((t for glob, t in self.types if fnmatch.fnmatchcase(model_id, glob)), DISCOVERED_TYPE)

    def case(self, model_id: str, model_type: str) -> Case:
        """The case of a listed model, as if the file listed it with only its name and type: the endpoint's and
        the file's defaults apply. Raise ConfigError when they do not make a case (they name the place)."""
        return _case(self.document, self.where, self.endpoint, self.raw_endpoint,
                     {"name": model_id, "type": model_type}, self.defaults)


@dataclass(frozen=True)
class Suite:
    """The cases of an endpoints file, in file order. Their endpoints' URL, headers and API key are read from the
    environment only for the cases a run selects (resolve): a CI job that holds one service's secret can run that
    service's cases from a file shared with others."""

    path: Path
    cases: tuple[Case, ...]  # each endpoint without its headers and key (and its URL when it holds a ${VAR}) until resolved
    connections: Mapping[str, Connection] = field(default_factory=dict, repr=False)
    discoveries: Mapping[str, Discovery] = field(default_factory=dict)  # endpoint name -> its discovery, file order

    def resolve(self, cases: Iterable[Case], environ: Mapping[str, str] | None = None) -> tuple[Case, ...]:
        """The given cases, each endpoint resolved from the environment; raise ConfigError listing every problem
        of their endpoints (an unset variable, a URL that is not one)."""
        environ = os.environ if environ is None else environ
        cases = tuple(cases)
        problems = Problems()
        endpoints: dict[str, Endpoint] = {}
        for name in dict.fromkeys(case.endpoint.name for case in cases if case.failure is None):
            with problems.catch():
                endpoints[name] = self.connections[name].resolve(environ)
        problems.check()
        # A case that fails without a request keeps its endpoint unresolved: it reads no secret.
        return tuple(case if case.failure else replace(case, endpoint=endpoints[case.endpoint.name]) for case in cases)


def load(path: Path, environ: Mapping[str, str] | None = None) -> Suite:
    """Read, interpolate, validate and build the cases of an endpoints file (their endpoints' connections wait
    for Suite.resolve); raise ConfigError listing every problem, each naming its place. A file too big, too deep
    or not YAML stops at that first problem."""
    environ = os.environ if environ is None else environ
    document = Document.read(path)
    data = document.interpolate(environ)
    document.validate(data)
    cases, connections, discoveries = _build(document, data)
    document.problems.check()
    if not cases and not discoveries:
        raise ConfigError(f"{document.path}: no enabled models; every model has enabled: false")
    return Suite(path=path, cases=cases, connections=connections, discoveries=discoveries)


def _build(
    document: Document, data: dict[str, Any]
) -> tuple[tuple[Case, ...], dict[str, Connection], dict[str, Discovery]]:
    """The enabled cases, each endpoint's connection and each discovering endpoint's rules, recording every problem
    the checks after the schema find. An entry with a problem already (the schema's, or an unset variable) is
    skipped, not checked twice."""
    problems = document.problems
    if problems.touched(("defaults",)) or problems.above(("endpoints",)):
        return (), {}, {}  # the defaults feed every entry; the list itself is broken
    defaults = data.get("defaults", {})
    for t, tag in enumerate(defaults.get("tags", [])):
        with problems.catch():
            _check_name(document, ("defaults", "tags", t), tag)
    cases: list[Case] = []
    connections: dict[str, Connection] = {}
    discoveries: dict[str, Discovery] = {}
    seen: dict[str, dict[str, tuple[Any, ...]]] = {"case id": {}, "monitor key": {}}
    for e, raw_endpoint in enumerate(data["endpoints"]):
        where = ("endpoints", e)
        if problems.above(where) or any(problems.touched(where + (f,)) for f in raw_endpoint if f != "models"):
            continue
        with problems.catch():
            _check_name(document, where + ("name",), raw_endpoint["name"])
        connection = Connection.from_entry(document, raw_endpoint, defaults, where)
        connections[raw_endpoint["name"]] = connection
        if raw_endpoint.get("discover"):
            discoveries[raw_endpoint["name"]] = _discovery(document, where, connection.endpoint, raw_endpoint, defaults)
        for m, raw_model in enumerate(raw_endpoint.get("models", [])):
            at = where + ("models", m)
            if problems.touched(at):
                continue
            for parts, name in _names(at, raw_model):
                with problems.catch():
                    _check_name(document, parts, name)
            if not raw_model.get("enabled", True) or problems.touched(at):
                continue
            with problems.catch():
                case = _case(document, at, connection.endpoint, raw_endpoint, raw_model, defaults)
                _check_unique(document, at, case, seen)
                cases.append(case)
    return tuple(cases), connections, discoveries


def _discovery(
    document: Document, where: tuple[Any, ...], endpoint: Endpoint, raw: dict[str, Any], defaults: dict[str, Any]
) -> Discovery:
    types = raw.get("types", {})
    rules = types.items() if isinstance(types, dict) else (rule for entry in types for rule in entry.items())
    timeout = raw.get("discover_timeout", raw.get("timeout", defaults.get("timeout", DEFAULT_TIMEOUT_S)))
    return Discovery(
        timeout=float(timeout),
        include=tuple(raw.get("include", ())),
        exclude=tuple(raw.get("exclude", ())),
        types=tuple(rules),
        explicit=frozenset(model.get("id", model["name"]) for model in raw.get("models", [])),
        document=document,
        where=where,
        endpoint=endpoint,
        raw_endpoint=raw,
        defaults=defaults,
    )


def _names(where: tuple[Any, ...], model: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """A model's values that become (part of) a test id, a monitor key or a marker, with their places."""
    yield from ((where + (name,), model[name]) for name in ("name", "id", "monitor") if name in model)
    yield from ((where + ("tags", t), tag) for t, tag in enumerate(model.get("tags", [])))


def _check_name(document: Document, parts: tuple[Any, ...], name: str) -> None:
    if char := breaking_char(name):
        raise document.error(parts, f"contains {char}, a control character or line break: names become test "
                             "ids, monitor keys and one-line reports")


def _check_unique(
    document: Document, where: tuple[Any, ...], case: Case, seen: dict[str, dict[str, tuple[Any, ...]]]
) -> None:
    """A case id or monitor key used twice would merge two cases' results."""
    for label, value in (("case id", case.id), ("monitor key", case.monitor)):
        if value in seen[label]:
            raise document.error(
                where, f"duplicate {label} {value!r} (also {format_path(seen[label][value])}); set a distinct "
                + ("'id'" if label == "case id" else "'monitor'")
            )
    seen["case id"][case.id] = seen["monitor key"][case.monitor] = where


def _case(
    document: Document,
    where: tuple[Any, ...],
    endpoint: Endpoint,
    raw_endpoint: dict[str, Any],
    raw: dict[str, Any],
    defaults: dict[str, Any],
) -> Case:
    model_type = TYPES[raw["type"]]

    def pick(name: str, fallback: Any = None) -> Any:
        """The model's value, else its endpoint's, else the file's defaults'."""
        return raw.get(name, raw_endpoint.get(name, defaults.get(name, fallback)))

    # A type's own fields, from the model, its endpoint or `defaults` (where they apply only to the types that have
    # them; the schema refuses them on a model of another type).
    options = {name: pick(name, default) for name, default in model_type.fields.items()}
    stream = bool(options.get("stream"))
    if "expect" in options:
        _check_expect(document, where + ("expect",), options["expect"])
    model_id = raw.get("id", raw["name"])
    monitor = monitor_key(raw.get("monitor") or f"{endpoint.name}-{model_id}")
    if not monitor:
        raise document.error(where + ("monitor",), f"{raw.get('monitor')!r} leaves an empty monitor key: it needs "
                             "a letter or digit (a-z, 0-9; others become '-')")
    limits = {name: pick(name) for name in ("max_latency", "warn_latency")}
    if stream:
        limits |= {name: pick(name) for name in ("max_ttft", "warn_ttft")}
    _check_warnings(document, where, raw, limits)
    return Case(
        endpoint=endpoint,
        model=raw["name"],
        model_id=model_id,
        type=model_type.name,
        monitor=monitor,
        timeout=float(pick("timeout", DEFAULT_TIMEOUT_S)),
        tags=tuple(dict.fromkeys([*defaults.get("tags", []), *raw.get("tags", [])])),
        params={**defaults.get("params", {}), **raw.get("params", {})},
        retries=pick("retries", 0),
        schedule=pick("schedule"),
        max_latency=limits["max_latency"],
        max_ttft=limits.get("max_ttft"),
        min_tokens_per_s=pick("min_tokens_per_s") if stream else None,
        warn_latency=limits["warn_latency"],
        warn_ttft=limits.get("warn_ttft"),
        options=options,
    )


def _check_warnings(document: Document, where: tuple[Any, ...], raw: dict[str, Any], limits: dict[str, Any]) -> None:
    """A warning threshold above its limit could never warn before the case fails: a config error, named on the
    model (either value may come from defaults)."""
    for warn, limit in (("warn_latency", "max_latency"), ("warn_ttft", "max_ttft")):
        if limits.get(warn) is not None and limits.get(limit) is not None and limits[warn] > limits[limit]:
            origin = {name: "" if name in raw else " (from defaults)" for name in (warn, limit)}
            raise document.error(
                where + (warn,), f"{limits[warn]:g} s{origin[warn]} is above {limit} {limits[limit]:g} s{origin[limit]}: "
                "it would never warn before the case fails"
            )


def _check_expect(document: Document, where: tuple[Any, ...], expect: Mapping[str, Any]) -> None:
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
