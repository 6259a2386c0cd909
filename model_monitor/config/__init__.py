"""Load endpoints.yaml once, validate it once, and turn it into frozen cases the rest of the code trusts."""

from __future__ import annotations

import copy
import fnmatch
import functools
import itertools
import json
import math
import operator
import os
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

import jsonschema
import yaml

from ..case import DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_S, Case, Endpoint, ProbeHeader, monitor_key
from ..errors import MonitorError
from ..redact import Secret
from ..types import TYPES

__all__ = [
    "ConfigError", "Discovery", "FastStrictLoader", "MAX_DEPTH", "MAX_LISTED", "SCHEMA_PATH", "StrictLoader", "Suite",
    "base_url", "compose", "load", "secrets",
]

SCHEMA_PATH = Path(__file__).with_name("endpoints.schema.json")
DISCOVERED_TYPE = "chat"  # a discovered model's type when no `types` rule matches its id



# Bounds that keep a wrong or hostile file from exhausting the machine. A real endpoints file is a few KB,
# a few hundred to a few thousand YAML nodes, and nested about 10 levels (a json_schema in `expect` a few more).
MAX_FILE_BYTES = 10 * 1024 * 1024  # refused before parsing
MAX_DEPTH = 64  # nesting levels, checked while composing: well below where anything recursive would overflow
MAX_NODES = 100_000  # YAML nodes with every alias counted each time it is used: what later walks will visit
MAX_LISTED = 20  # problems listed in one error (a file of mistakes is fixed a screenful at a time); the rest counted

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^/?#@\s]*@", re.IGNORECASE)
# Categories that break a one-line id, report or header: C0/C1 controls (tab, newline, NEL...), line and
# paragraph separators.
_BREAKING = ("Cc", "Zl", "Zp")


class ConfigError(MonitorError):
    """The endpoints file cannot be used; each line of the message names the file, the line, the field and the
    problem. `problems` holds one error per line, so that errors from several checks can be listed together."""

    def __init__(self, message: str, line: int = 0, parts: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.line = line
        self.parts = parts
        self.problems: list[ConfigError] = [self]

    @classmethod
    def listing(cls, errors: Iterable[ConfigError]) -> ConfigError:
        """One error listing every problem once, in file order: at most MAX_LISTED lines, then how many more."""
        unique = {str(p): p for e in errors for p in e.problems}
        ordered = sorted(unique.values(), key=lambda p: p.line)
        lines = [str(p) for p in ordered[:MAX_LISTED]]
        if len(ordered) > MAX_LISTED:
            lines.append(f"... and {len(ordered) - MAX_LISTED} more")
        listed = cls("\n".join(lines), ordered[0].line, ordered[0].parts)
        listed.problems = ordered
        return listed


class _Problems:
    """The problems found so far, so that one run reports every fault in the file, and later checks can skip a
    place where one was found (a check on a value the schema refused would only repeat it)."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.errors.extend(error.problems)

    @contextmanager
    def catch(self) -> Iterator[None]:
        """Record a ConfigError raised inside and carry on with the next check."""
        try:
            yield
        except ConfigError as error:
            self.add(error)

    def above(self, parts: tuple[Any, ...]) -> bool:
        """Whether a problem was found at this place or at one that contains it."""
        return any(parts[: len(e.parts)] == e.parts for e in self.errors)

    def touched(self, parts: tuple[Any, ...]) -> bool:
        """Whether a problem was found at this place, at one that contains it, or inside it."""
        return self.above(parts) or any(e.parts[: len(parts)] == parts for e in self.errors)

    def check(self) -> None:
        if self.errors:
            raise ConfigError.listing(self.errors)


@dataclass(frozen=True)
class Discovery:
    """How a `discover: true` endpoint turns the model ids it lists into cases (discovery.py does the listing)."""

    timeout: float
    include: tuple[str, ...]  # globs; empty: every listed model
    exclude: tuple[str, ...]
    types: tuple[tuple[str, str], ...]  # (glob, type), the first match wins
    explicit: frozenset[str]  # ids of the models the file lists itself (enabled or not): they keep their entry
    document: _Document = field(repr=False)
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
    connections: Mapping[str, _Connection] = field(default_factory=dict, repr=False)
    discoveries: Mapping[str, Discovery] = field(default_factory=dict)  # endpoint name -> its discovery, file order

    def resolve(self, cases: Iterable[Case], environ: Mapping[str, str] | None = None) -> tuple[Case, ...]:
        """The given cases, each endpoint resolved from the environment; raise ConfigError listing every problem
        of their endpoints (an unset variable, a URL that is not one)."""
        environ = os.environ if environ is None else environ
        cases = tuple(cases)
        problems = _Problems()
        endpoints: dict[str, Endpoint] = {}
        for name in dict.fromkeys(case.endpoint.name for case in cases if case.failure is None):
            with problems.catch():
                endpoints[name] = self.connections[name].resolve(environ)
        problems.check()
        # A case that fails without a request keeps its endpoint unresolved: it reads no secret.
        return tuple(case if case.failure else replace(case, endpoint=endpoints[case.endpoint.name]) for case in cases)


def secrets(cases: Iterable[Case]) -> tuple[str, ...]:
    """Every secret value that resolved cases carry, for redaction."""
    found: set[str] = set()
    for case in cases:
        if case.endpoint.api_key:
            found.add(case.endpoint.api_key.reveal())
        found.update(value.reveal() for _, value in case.endpoint.headers)
        if case.endpoint.query:
            query = case.endpoint.query.reveal()
            found.update([query, *(value for _, value in parse_qsl(query))])
    return tuple(sorted(s for s in found if s))


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))




def base_url(url: str) -> str:
    """The API root ending in /v1, whether the user wrote the bare host or the OpenAI SDK's .../v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def load(path: Path, environ: Mapping[str, str] | None = None) -> Suite:
    """Read, interpolate, validate and build the cases of an endpoints file (their endpoints' connections wait
    for Suite.resolve); raise ConfigError listing every problem, each naming its place. A file too big, too deep
    or not YAML stops at that first problem."""
    environ = os.environ if environ is None else environ
    document = _Document.read(path)
    data = document.interpolate(environ)
    document.validate(data)
    cases, connections, discoveries = _build(document, data)
    document.problems.check()
    if not cases and not discoveries:
        raise ConfigError(f"{document.path}: no enabled models; every model has enabled: false")
    return Suite(path=path, cases=cases, connections=connections, discoveries=discoveries)


def format_path(parts: tuple[Any, ...] | list[Any]) -> str:
    """endpoints[0].models[1].type"""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that the loader will not build: too deep, too many nodes, a self-referencing alias."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _Strict:
    """A loader that refuses duplicate keys instead of silently keeping the last one, bounds nesting and alias
    expansion while composing (before anything recursive runs), and joins JSON-style surrogate pairs."""

    def __init__(self) -> None:
        self._depth = 0
        self._expanded = 0  # nodes so far, every alias counted as the whole node it stands for
        self._sizes: dict[yaml.Node, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if node not in self._sizes:  # its anchor is still open: the alias is inside the node it names
                raise _Refused("an alias refers to a node that contains it (a recursive structure)", mark)
            self._count(self._sizes[node], mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep (MAX_DEPTH)", mark)
        before = self._expanded
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, mark)
        self._sizes[node] = self._expanded - before
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} YAML nodes, aliases counted as what they expand to (MAX_NODES)", mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:  # an integer of 5,000 digits, a date such as 2024-02-30
            raise _Refused(f"cannot read this value: {str(exc).split(';')[0]}", node.start_mark) from None

    def construct_scalar(self, node: yaml.ScalarNode) -> Any:
        return _join_surrogates(super().construct_scalar(node))

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


class StrictLoader(_Strict, yaml.SafeLoader):
    """PyYAML's own Python parser: the one whose errors and whose reading of every file are the reference."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        _Strict.__init__(self)


class FastStrictLoader(_Strict, yaml.composer.Composer, yaml.cyaml.CParser, yaml.constructor.SafeConstructor,
                        yaml.resolver.Resolver):
    """The same composing and checks over libyaml's parser, three times faster on a large file. libyaml refuses
    some text PyYAML reads (a \\ud83d escape, very deep nesting): any error is read again by StrictLoader, so
    that what is accepted and what each error says stay PyYAML's."""

    def __init__(self, stream: str) -> None:
        yaml.cyaml.CParser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        _Strict.__init__(self)


@dataclass
class _Document:
    """The parsed file plus its YAML node tree, so that every error can name a line."""

    path: Path
    data: Any = field(repr=False)
    root: yaml.Node | None = field(repr=False)
    problems: _Problems = field(default_factory=_Problems, repr=False)

    @classmethod
    def read(cls, path: Path) -> _Document:
        try:
            with path.open("rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the endpoints file: {exc.strerror or exc}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(
                f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB (MAX_FILE_BYTES); an endpoints file is a few KB"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
        try:
            root, data = compose(FastStrictLoader, text)
        except yaml.YAMLError:
            root, data = None, None  # read again below, for PyYAML's verdict and words
        else:
            return cls._checked(path, data, root)
        try:
            root, data = compose(StrictLoader, text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc)
            kind = "" if isinstance(exc, _Refused) else "YAML syntax error: "
            raise ConfigError(f"{where}: {kind}{problem}") from None
        return cls._checked(path, data, root)

    @classmethod
    def _checked(cls, path: Path, data: Any, root: yaml.Node | None) -> _Document:
        if data is None:
            raise ConfigError(f"{path}: the file is empty; expected a mapping with an 'endpoints' list")
        if not isinstance(data, dict):
            kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
            raise ConfigError(f"{path}:1: the top level is {kind}; expected a mapping with an 'endpoints' list")
        return cls(path=path, data=data, root=root)

    def line(self, parts: tuple[Any, ...]) -> int | None:
        """The line of a place in the document: of its key where it is a mapping's field (a block value starts
        on the line below), else of the deepest node that exists."""
        node, mark = self.root, self.root.start_mark if self.root is not None else None
        for part in parts:
            child = None
            if isinstance(node, yaml.MappingNode):
                key, child = next(((k, v) for k, v in node.value if k.value == part), (None, None))
                mark = key.start_mark if key is not None else mark
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
                mark = child.start_mark
            if child is None:
                break
            node = child
        return mark.line + 1 if mark is not None else None

    def error(self, parts: tuple[Any, ...], message: str) -> ConfigError:
        line = self.line(parts)
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return ConfigError(f"{where}: {format_path(parts)}: {message}", line or 0, parts)

    def interpolate(self, environ: Mapping[str, str]) -> Any:
        """Replace ${VAR} in every string value but those that wait for Suite.resolve (see _waits), and refuse
        what no request can carry (see _json_problem); an unset variable is a problem of its field."""

        def walk(value: Any, parts: tuple[Any, ...]) -> Any:
            if isinstance(value, dict):
                return {k: walk(v, parts + (k,)) for k, v in value.items() if text_key(k, parts)}
            if isinstance(value, list):
                return [walk(v, parts + (i,)) for i, v in enumerate(value)]
            if isinstance(value, str) and not _waits(parts):
                with self.problems.catch():
                    value = _expand(self, parts, value, environ)
            if problem := _json_problem(value):
                self.problems.add(self.error(parts, problem))
            return value

        def text_key(name: Any, parts: tuple[Any, ...]) -> bool:
            """A key that is not text is a problem, and left out of what the schema sees."""
            problem = _json_problem(name) if isinstance(name, str) else "is not text; quote it"
            if problem:
                self.problems.add(self.error(parts, f"key {name!r}: {problem}"))
            return not problem

        return walk(self.data, ())

    def validate(self, data: Any) -> None:
        """Record every schema violation, but none at or inside a place already refused (its cause is listed)."""
        schema = load_schema()
        reduced, copies = _one_model_per_shape(data)
        errors = sorted(
            jsonschema.Draft202012Validator(schema).iter_errors(reduced),
            key=lambda e: (list(map(str, e.absolute_path)), e.validator),
        )
        # One line per field: two rules may refuse the same one (a type rule and the stream rule).
        errors = [next(same) for _, same in itertools.groupby(errors, key=lambda e: tuple(e.absolute_path))]
        errors = sorted(
            (moved for error in _leaf_errors(errors) for moved in _moved(error, copies)),
            key=lambda e: list(map(str, e.absolute_path)),
        )
        placed = [place for error in errors for place in _placed(error, schema, data)]
        for parts, message in placed:
            if not self.problems.above(parts):
                self.problems.add(self.error(parts, message))


def compose(loader_class: type[StrictLoader | FastStrictLoader], text: str) -> tuple[yaml.Node | None, Any]:
    """The file's node tree (for line numbers) and the data built from it."""
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def _waits(parts: tuple[Any, ...]) -> bool:
    """Whether a ${VAR} at this place waits until a selected case needs its endpoint (Suite.resolve).

    An endpoint's URL and header values wait: they are where a service's secrets live, and nothing selects on
    them. Every other field is resolved at load: names, ids, monitors and tags make the test ids and markers
    that --only, -k and -m select on, so they must be known before selection; the type picks the schema's
    rules; and the schema and the checks after it need the final text of params, prompts and expectations."""
    match parts:
        case ("endpoints", int(), "url") | ("endpoints", int(), "headers", str()) | ("defaults", "headers", str()):
            return True
    return False


def _expand(document: _Document, parts: tuple[Any, ...], text: str, environ: Mapping[str, str]) -> str:
    """The text with each ${VAR} replaced by its value; an unset variable is an error of its field."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise document.error(parts, f"environment variable {name} is not set (used as ${{{name}}})")
        return environ[name]

    return _VAR.sub(value, text)


def _json_problem(value: Any) -> str | None:
    """Why a YAML scalar cannot travel in a JSON body or a header, or None."""
    if isinstance(value, str):
        lone = _SURROGATE.search(value)
        if lone:
            return (f"a lone UTF-16 surrogate (U+{ord(lone.group()):04X}) is not a character; write the character "
                    "itself or a complete \\uXXXX\\uXXXX pair")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if value is None or isinstance(value, (bool, int, float)):
        return None
    return (f"a YAML {type(value).__name__} is not accepted (only text, numbers, true/false, null, lists and "
            "mappings); quote it if it is text")


def _breaking_char(text: str) -> str | None:
    """The first character that would break a one-line id, report line or header (tab, newline, any
    control character, a line separator), as U+XXXX; None if there is none."""
    return next((f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in _BREAKING), None)


def _header_problem(text: str) -> str | None:
    """Why a header value cannot be sent, or None. The value may be a secret: never part of the answer."""
    if char := _breaking_char(text):
        return f"contains a control character ({char})"
    if not text.isascii():
        return "contains a non-ASCII character; HTTP header values are ASCII"
    return None


def _join_surrogates(text: str) -> str:
    """JSON-style escapes ("\\ud83e\\uddea", as json.dumps writes an emoji) reach Python as two lone surrogates:
    join each valid pair into the character it encodes; a lone one stays (and is refused later, with its place)."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _one_model_per_shape(data: Any) -> tuple[Any, dict[tuple[Any, ...], list[int]]]:
    """The document with each endpoint's models cut to one per shape (a model without its name, when the name is
    text), and for each model kept, the places of every model of its shape. The schema's verdict on a model
    depends on the model alone, and a name only has to be text: a file of 5000 models in a few shapes is checked
    in a fraction of the time (README, Scale), and each error is then reported at every model that has it."""
    copies: dict[tuple[Any, ...], list[int]] = {}
    if not (isinstance(data, dict) and isinstance(data.get("endpoints"), list)):
        return data, copies
    endpoints = []
    for e, endpoint in enumerate(data["endpoints"]):
        if not (isinstance(endpoint, dict) and isinstance(endpoint.get("models"), list)):
            endpoints.append(endpoint)
            continue
        kept: dict[str, int] = {}
        models = []
        for m, model in enumerate(endpoint["models"]):
            shape = _shape(model)
            if shape not in kept:
                kept[shape] = len(models)
                models.append(model)
            copies.setdefault(("endpoints", e, "models", kept[shape]), []).append(m)
        endpoints.append({**endpoint, "models": models})
    return {**data, "endpoints": endpoints}, copies


def _shape(model: Any) -> str:
    """What the schema's verdict on a model depends on: all of it but a name that is non-empty text."""
    if isinstance(model, dict) and isinstance(model.get("name"), str) and model["name"]:
        model = {key: value for key, value in model.items() if key != "name"}
    return json.dumps(model, sort_keys=True, default=repr)


def _moved(
    error: jsonschema.ValidationError, copies: dict[tuple[Any, ...], list[int]]
) -> Iterator[jsonschema.ValidationError]:
    """An error found in the cut document, at each model of the shape it was found in."""
    path = tuple(error.absolute_path)
    if path[:4] not in copies:
        yield error
        return
    for m in copies[path[:4]]:
        moved = copy.copy(error)
        moved.path = moved.relative_path = deque((*path[:3], m, *path[4:]))
        moved.schema_path = moved.relative_schema_path = deque(error.absolute_schema_path)
        moved.parent = None
        yield moved


def _placed(
    error: jsonschema.ValidationError, schema: dict[str, Any], data: Any
) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Each place a schema violation names, with its sentence: an unknown field at its own key, one each."""
    parts = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        accepted = sorted(error.schema.get("properties", {}))
        for name in sorted(set(error.instance) - set(accepted)):
            yield parts + (name,), f"unknown field {name!r}; accepted: {', '.join(accepted)}"
        return
    yield parts, _describe(error, schema, data)


def _leaf_errors(errors: list[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    """For oneOf/anyOf failures, the most specific sub-error says more than 'is not valid under any'."""
    out = []
    for error in errors:
        out.append(jsonschema.exceptions.best_match([error]) if error.context else error)
    return out


def _describe(error: jsonschema.ValidationError, schema: dict[str, Any], data: Any) -> str:
    """One plain sentence for a schema violation, with the accepted values."""
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "not" and list(error.absolute_schema_path)[-4:-2] == ["else", "properties"]:
        return _not_applicable(error, schema, data)
    if kind == "enum":
        return f"{value!r} is not one of: {', '.join(map(str, expected))}"
    if kind == "required":
        missing = [name for name in expected if name not in value]
        return f"missing required field {missing[0]!r}" if missing else error.message
    if kind == "type":
        return f"{value!r} is not of type {expected}"
    if kind == "minItems" and expected == 1:
        return "must not be empty"
    if kind == "pattern":
        shown = _USERINFO.sub(r"\1***@", value)  # a URL that is not one may still hold user:password@
        return f"{shown!r} does not match {expected}"
    return error.message


def _not_applicable(error: jsonschema.ValidationError, schema: dict[str, Any], data: Any) -> str:
    """A field refused by a rule `if: {properties: {<name>: {enum|const}}}, else: {properties: {<field>: {not: {}}}}`:
    the condition under which it applies, and what the entry has instead."""
    condition = _subschema(schema, [*list(error.absolute_schema_path)[:-4], "if"])
    ((name, accepted),) = condition["properties"].items()
    wanted = accepted["enum"] if "enum" in accepted else [accepted["const"]]
    entry = functools.reduce(operator.getitem, list(error.absolute_path)[:-1], data)
    if wanted == [True]:
        return f"needs {name}: true" + (f", not {json.dumps(entry[name])}" if name in entry else "")
    return f"applies only to {name} {' or '.join(map(str, wanted))}, not {entry.get(name)}"


def _subschema(schema: dict[str, Any], path: list[Any]) -> Any:
    """The part of the schema at an error's absolute_schema_path. jsonschema leaves each $ref out of that path,
    so a key that is not there is looked up in the definition the $ref names (#/$defs/... in this schema)."""
    node: Any = schema
    for key in path:
        while isinstance(node, dict) and key not in node and "$ref" in node:
            node = functools.reduce(operator.getitem, node["$ref"].removeprefix("#/").split("/"), schema)
        node = node[key]
    return node


def _build(
    document: _Document, data: dict[str, Any]
) -> tuple[tuple[Case, ...], dict[str, _Connection], dict[str, Discovery]]:
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
    connections: dict[str, _Connection] = {}
    discoveries: dict[str, Discovery] = {}
    seen: dict[str, dict[str, tuple[Any, ...]]] = {"case id": {}, "monitor key": {}}
    for e, raw_endpoint in enumerate(data["endpoints"]):
        where = ("endpoints", e)
        if problems.above(where) or any(problems.touched(where + (f,)) for f in raw_endpoint if f != "models"):
            continue
        with problems.catch():
            _check_name(document, where + ("name",), raw_endpoint["name"])
        connection = _connection(document, raw_endpoint, defaults, where)
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
    document: _Document, where: tuple[Any, ...], endpoint: Endpoint, raw: dict[str, Any], defaults: dict[str, Any]
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


def _check_name(document: _Document, parts: tuple[Any, ...], name: str) -> None:
    if char := _breaking_char(name):
        raise document.error(parts, f"contains {char}, a control character or line break: names become test "
                             "ids, monitor keys and one-line reports")


def _check_unique(
    document: _Document, where: tuple[Any, ...], case: Case, seen: dict[str, dict[str, tuple[Any, ...]]]
) -> None:
    """A case id or monitor key used twice would merge two cases' results."""
    for label, value in (("case id", case.id), ("monitor key", case.monitor)):
        if value in seen[label]:
            raise document.error(
                where, f"duplicate {label} {value!r} (also {format_path(seen[label][value])}); set a distinct "
                + ("'id'" if label == "case id" else "'monitor'")
            )
    seen["case id"][case.id] = seen["monitor key"][case.monitor] = where


@dataclass(frozen=True)
class _Connection:
    """An endpoint's URL, headers and API key as the file writes them, read from the environment only when a
    selected case needs the endpoint (resolve). Written values are held as Secret: a file may hold a key."""

    document: _Document = field(repr=False)
    endpoint: Endpoint  # its name and caps; base_url is empty until resolved when the URL holds a ${VAR}
    url: tuple[tuple[Any, ...], Secret]  # (its place, its text)
    headers: tuple[tuple[tuple[Any, ...], str, Secret], ...]  # (place, name, value), the endpoint's over the defaults'
    api_key_env: tuple[tuple[Any, ...], str] | None  # (its place, the variable's name)

    def resolve(self, environ: Mapping[str, str]) -> Endpoint:
        """The endpoint with its URL, headers and API key; raise ConfigError listing each problem."""
        problems = _Problems()
        resolved: dict[str, Any] = {}
        with problems.catch():
            url = _url(self.document, *self.url, environ)
            resolved.update(base_url=base_url(urlunsplit(url._replace(query=""))), query=Secret(url.query) or None)
        headers = []
        for parts, name, value in self.headers:
            with problems.catch():
                headers.append((name, _header_value(self.document, parts, value, environ)))
        with problems.catch():
            resolved["api_key"] = _api_key(self.document, *self.api_key_env, environ) if self.api_key_env else None
        problems.check()
        return replace(self.endpoint, headers=tuple(headers), **resolved)


def _connection(document: _Document, raw: dict[str, Any], defaults: dict[str, Any], where: tuple[Any, ...]) -> _Connection:
    """An endpoint's connection, its fixed values checked now (they stop every run), those with a ${VAR} when
    resolved (they stop only the runs that select the endpoint)."""
    url = (where + ("url",), Secret(raw["url"]))
    headers = []
    for name, value in {**defaults.get("headers", {}), **raw.get("headers", {})}.items():
        parts = (where if name in raw.get("headers", {}) else ("defaults",)) + ("headers", name)
        headers.append((parts, name, Secret(value)))
        with document.problems.catch():
            if not _HEADER_NAME.fullmatch(name):
                raise document.error(parts, f"{name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)")
    fixed_base = ""  # a URL without ${VAR} is known now: reporters on xdist's controller name its server
    if not _VAR.search(url[1].reveal()):
        with document.problems.catch():
            fixed_base = base_url(urlunsplit(_url(document, *url, {})._replace(query="")))
    for parts, _, value in headers:
        if not _VAR.search(value.reveal()):
            with document.problems.catch():
                _header_value(document, parts, value, {})
    key_env = raw.get("api_key_env", defaults.get("api_key_env"))
    key_parts = where + ("api_key_env",) if "api_key_env" in raw else ("defaults", "api_key_env")
    endpoint = Endpoint(
        name=raw["name"],
        base_url=fixed_base,
        verify_tls=raw.get("verify_tls", defaults.get("verify_tls", True)),
        max_concurrency=raw.get("max_concurrency", defaults.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)),
        probe_header=_probe_header(document, raw, defaults, where),
        probe_metadata=raw.get("probe_metadata", defaults.get("probe_metadata", False)),
        probe_user=raw.get("probe_user", defaults.get("probe_user")),
    )
    return _Connection(document, endpoint, url, tuple(headers), (key_parts, key_env) if key_env else None)


def _probe_header(
    document: _Document, raw: dict[str, Any], defaults: dict[str, Any], where: tuple[Any, ...]
) -> ProbeHeader | None:
    """The endpoint's probe header, else the defaults', else X-Model-Monitor-Probe with the case's monitor key;
    false turns it off."""
    field_path = where + ("probe_header",) if "probe_header" in raw else ("defaults", "probe_header")
    given = raw.get("probe_header", defaults.get("probe_header", {}))
    if given is False:
        return None
    header = ProbeHeader(**given)  # the schema checked the name
    if header.value is not None and (problem := _header_problem(header.value)):
        raise document.error(field_path + ("value",), problem)
    return header


def _url(document: _Document, where: tuple[Any, ...], url: Secret, environ: Mapping[str, str]) -> SplitResult:
    """The endpoint URL, refused here when no request could use it (rather than failing in every case). The text
    is never echoed: its query or a ${VAR} in it may hold a key."""
    text = _expand(document, where, url.reveal(), environ)
    try:
        split = urlsplit(text)
    except ValueError as exc:  # a bracket left open in an IPv6 host
        raise document.error(where, f"not a valid URL: {exc}") from None
    if split.scheme not in ("http", "https"):  # the schema checks a URL without ${VAR}; this, the one it becomes
        raise document.error(where, "not a valid URL: it does not start with http:// or https://")
    if "@" in split.netloc:  # never echo it: the part before @ is a password
        raise document.error(where, "credentials in the URL are not accepted; put the API key in the environment "
                             "variable named by api_key_env, or other credentials in headers")
    try:
        split.port  # parsed lazily: a port that is not a number in 0-65535 raises here
    except ValueError as exc:
        raise document.error(where, f"not a valid URL: {exc}") from None
    if not split.hostname:
        raise document.error(where, "not a valid URL: no host")
    if split.fragment:
        raise document.error(where, "a fragment (#...) is never sent to a server; remove it")
    return split


def _api_key(document: _Document, where: tuple[Any, ...], key_env: str, environ: Mapping[str, str]) -> Secret:
    """The API key from the environment variable named by api_key_env, without surrounding whitespace: a key
    file made with `kubectl create secret --from-file` usually ends with a newline."""
    key = environ.get(key_env, "").strip()
    if not key:
        raise document.error(where, f"environment variable {key_env} (the API key) is not set or empty")
    if problem := _header_problem(key):
        raise document.error(where, f"environment variable {key_env} (the API key) {problem}")
    return Secret(key)


def _header_value(document: _Document, where: tuple[Any, ...], value: Secret, environ: Mapping[str, str]) -> Secret:
    """A header's value, without surrounding whitespace: HTTP itself ignores it (and a ${VAR} read from a key file
    often ends with a newline)."""
    text = _expand(document, where, value.reveal(), environ).strip()
    if problem := _header_problem(text):
        raise document.error(where, problem)
    return Secret(text)


def _case(
    document: _Document,
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


def _check_warnings(document: _Document, where: tuple[Any, ...], raw: dict[str, Any], limits: dict[str, Any]) -> None:
    """A warning threshold above its limit could never warn before the case fails: a config error, named on the
    model (either value may come from defaults)."""
    for warn, limit in (("warn_latency", "max_latency"), ("warn_ttft", "max_ttft")):
        if limits.get(warn) is not None and limits.get(limit) is not None and limits[warn] > limits[limit]:
            origin = {name: "" if name in raw else " (from defaults)" for name in (warn, limit)}
            raise document.error(
                where + (warn,), f"{limits[warn]:g} s{origin[warn]} is above {limit} {limits[limit]:g} s{origin[limit]}: "
                "it would never warn before the case fails"
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
