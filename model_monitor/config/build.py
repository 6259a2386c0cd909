"""The file's data, read and validated, becomes a Suite: every enabled model's case (cases.py), each endpoint's
connection (connection.py) and each discovering endpoint's Discovery; load() runs the whole way."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..case import DEFAULT_TIMEOUT_S, Case, Endpoint
from ..errors import ConfigError
from ..redact import Redactor
from .cases import check_name, check_unique, model_case, name_places
from .connection import Connection
from .document import Document, Problems

__all__ = ["Discovery", "Suite", "load"]

DISCOVERED_TYPE = "chat"  # a discovered model's type when no `types` rule matches its id
MAX_DISCOVERED = 2000  # the cases one listing may make: a few hundred models is a large gateway


@dataclass(frozen=True)
class Discovery:
    """How a `discover: true` endpoint turns the model ids it lists into cases (discovery.py does the listing)."""

    timeout: float
    max_discovered: int  # a listing that keeps more runs none of them: its discovery case fails
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
        """The case of a listed model, as if the file listed it with only its name and type: the same name checks
        as the file's entries, and the endpoint's and the file's defaults apply. Raise ConfigError when they do
        not make a case (a server's id is data until it passes the gate a file's name passes)."""
        raw = {"name": model_id, "type": model_type}
        for _, name in name_places(self.where, raw):
            check_name(self.document, self.where + ("discover",), name)
        return model_case(self.document, self.where, self.endpoint, self.raw_endpoint, raw, self.defaults)


@dataclass(frozen=True)
class Suite:
    """The cases of an endpoints file, in file order. Their endpoints' URL, headers and API key are read from the
    environment only for the cases a run selects (resolve): a CI job that holds one service's secret can run that
    service's cases from a file shared with others."""

    path: Path
    cases: tuple[
        Case, ...
    ]  # each endpoint without its headers and key (and its URL when it holds a ${VAR}) until resolved
    connections: Mapping[str, Connection] = field(default_factory=dict, repr=False)
    discoveries: Mapping[str, Discovery] = field(default_factory=dict)  # endpoint name -> its discovery, file order

    def resolve(
        self, cases: Iterable[Case], redact: Redactor, environ: Mapping[str, str] | None = None
    ) -> tuple[Case, ...]:
        """The given cases, each endpoint resolved from the environment and its secrets registered with `redact`;
        raise ConfigError listing every problem of their endpoints (an unset variable, a URL that is not one)."""
        environ = os.environ if environ is None else environ
        cases = tuple(cases)
        problems = Problems()
        endpoints: dict[str, Endpoint] = {}
        for name in dict.fromkeys(case.endpoint.name for case in cases if case.failure is None):
            with problems.catch():
                endpoints[name] = self.connections[name].resolve(environ, redact)
        problems.check()
        # A case that fails without a request keeps its endpoint unresolved: it reads no secret.
        return tuple(case if case.failure else replace(case, endpoint=endpoints[case.endpoint.name]) for case in cases)

    def resolve_all(self, redact: Redactor, environ: Mapping[str, str] | None = None) -> None:
        """Resolve every endpoint, those that only discover too, their secrets registered with `redact`, and drop
        the result: raise ConfigError listing every variable that is unset or makes no URL (`model-monitor validate
        --resolve`)."""
        environ = os.environ if environ is None else environ
        problems = Problems()
        for connection in self.connections.values():
            with problems.catch():
                connection.resolve(environ, redact)
        problems.check()


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
    document.settle()
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
            check_name(document, ("defaults", "tags", t), tag)
    cases: list[Case] = []
    connections: dict[str, Connection] = {}
    discoveries: dict[str, Discovery] = {}
    seen: dict[str, dict[str, tuple[Any, ...]]] = {"case id": {}, "monitor key": {}}
    for e, raw_endpoint in enumerate(data["endpoints"]):
        where = ("endpoints", e)
        if problems.above(where) or any(problems.touched(where + (f,)) for f in raw_endpoint if f != "models"):
            continue
        with problems.catch():
            check_name(document, where + ("name",), raw_endpoint["name"])
        connection = Connection.from_entry(document, raw_endpoint, defaults, where)
        connections[raw_endpoint["name"]] = connection
        if raw_endpoint.get("discover"):
            discoveries[raw_endpoint["name"]] = _discovery(document, where, connection.endpoint, raw_endpoint, defaults)
        for m, raw_model in enumerate(raw_endpoint.get("models", [])):
            at = where + ("models", m)
            if problems.touched(at):
                continue
            for parts, name in name_places(at, raw_model):
                with problems.catch():
                    check_name(document, parts, name)
            if not raw_model.get("enabled", True) or problems.touched(at):
                continue
            with problems.catch():
                case = model_case(document, at, connection.endpoint, raw_endpoint, raw_model, defaults)
                check_unique(document, at, case, seen)
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
        max_discovered=raw.get("max_discovered", MAX_DISCOVERED),
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
