"""The endpoints file as read: its data, its YAML node tree (so that every error names a line), `${VAR}` expansion,
and the problems found so far, collected so that one run reports every fault in the file."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .schema import violations
from .yaml_loader import MAX_FILE_BYTES, SURROGATE, FastStrictLoader, Refused, StrictLoader, compose

__all__ = [
    "MAX_NAME_CHARS",
    "VAR",
    "Document",
    "Problems",
    "breaking_char",
    "format_path",
    "name_problem",
    "variable_values",
]

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Categories that break a one-line id, report or header: C0/C1 controls (tab, newline, NEL...), line and
# paragraph separators.
_BREAKING = ("Cc", "Zl", "Zp")
# The explicit directional marks, embeddings, overrides and isolates (Unicode's Bidi_Control property).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_NAME_CHARS = 200  # a model id is at most about a hundred characters (a Hugging Face org/name)


class Problems:
    """The problems found so far, so that one run reports every fault in the file, and later checks can skip a
    place where one was found (a check on a value the schema refused would only repeat it)."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.errors.extend(error.problems)

    def catch(self) -> _Catch:
        """Record a ConfigError raised inside and carry on with the next check."""
        return _Catch(self)

    def above(self, parts: tuple[Any, ...]) -> bool:
        """Whether a problem was found at this place or at one that contains it."""
        return any(parts[: len(e.parts)] == e.parts for e in self.errors)

    def touched(self, parts: tuple[Any, ...]) -> bool:
        """Whether a problem was found at this place, at one that contains it, or inside it."""
        return self.above(parts) or any(e.parts[: len(parts)] == parts for e in self.errors)

    def check(self) -> None:
        if self.errors:
            raise ConfigError.listing(self.errors)


class _Catch:
    """Problems.catch's `with` block: a class, not a @contextmanager generator, which cost each of the twenty
    thousand values and checks of a file of 5,000 models 2 us."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> bool:
        if isinstance(error, ConfigError):
            self.problems.add(error)
            return True
        return False


@dataclass
class Document:
    """The parsed file plus its YAML node tree, so that every error can name a line."""

    path: Path
    data: Any = field(repr=False)
    root: yaml.Node | None = field(repr=False)
    problems: Problems = field(default_factory=Problems, repr=False)

    @classmethod
    def read(cls, path: Path) -> Document:
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
            kind = "" if isinstance(exc, Refused) else "YAML syntax error: "
            raise ConfigError(f"{where}: {kind}{problem}") from None
        return cls._checked(path, data, root)

    @classmethod
    def _checked(cls, path: Path, data: Any, root: yaml.Node | None) -> Document:
        if data is None:
            raise ConfigError(f"{path}: the file is empty; expected a mapping with an 'endpoints' list")
        if not isinstance(data, dict):
            kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
            raise ConfigError(f"{path}:1: the top level is {kind}; expected a mapping with an 'endpoints' list")
        return cls(path=path, data=data, root=root)

    def settle(self) -> None:
        """The file is loaded: let go of what only the load asked about. Later questions (an endpoint's URL,
        headers or key as a run resolves them, a discovered model's checks) are about an endpoint's own places,
        so each endpoint keeps its nodes but for its models': at 5,000 models, 10 MB of nodes and data a run held
        to its end. A place inside a model now names its endpoint's `models:` line."""
        self.data = None
        endpoints = _field(self.root, "endpoints")
        for entry in endpoints.value if isinstance(endpoints, yaml.SequenceNode) else ():
            models = _field(entry, "models")
            if isinstance(models, yaml.SequenceNode):
                models.value = []

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
        return ConfigError(f"{where}: {format_path(parts)}: {message}", line or 0, parts, detail=message)

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
                    value = self.expand(parts, value, environ)
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
        for parts, message in violations(data):
            if not self.problems.above(parts):
                self.problems.add(self.error(parts, message))

    def expand(self, parts: tuple[Any, ...], text: str, environ: Mapping[str, str]) -> str:
        """The text with each ${VAR} replaced by its value; an unset variable is an error of its field."""
        if "${" not in text:  # most values: no walk for a variable
            return text

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise self.error(parts, f"environment variable {name} is not set (used as ${{{name}}})")
            return environ[name]

        return VAR.sub(value, text)


def _field(node: yaml.Node | None, name: str) -> yaml.Node | None:
    """A mapping node's value for a key, or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for key, value in node.value if key.value == name), None)


def variable_values(text: str, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The values the text's ${VAR}s bring in (those set): where a file writes ${VAR}, the value is its own."""
    return tuple(environ[name] for name in VAR.findall(text) if name in environ)


def format_path(parts: tuple[Any, ...] | list[Any]) -> str:
    """endpoints[0].models[1].type"""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


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


def _json_problem(value: Any) -> str | None:
    """Why a YAML scalar cannot travel in a JSON body or a header, or None."""
    if isinstance(value, str):
        lone = SURROGATE.search(value)
        if lone:
            return (
                f"a lone UTF-16 surrogate (U+{ord(lone.group()):04X}) is not a character; write the character "
                "itself or a complete \\uXXXX\\uXXXX pair"
            )
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if value is None or isinstance(value, (bool, int, float)):
        return None
    return (
        f"a YAML {type(value).__name__} is not accepted (only text, numbers, true/false, null, lists and "
        "mappings); quote it if it is text"
    )


def breaking_char(text: str) -> str | None:
    """The first character that would break a one-line id, report line or header (tab, newline, any
    control character, a line separator), as U+XXXX; None if there is none."""
    return next((f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in _BREAKING), None)


def name_problem(name: str) -> str | None:
    """Why a name cannot become a test id, a monitor key or a one-line report, or None: one rule for the file's
    names and the model ids a server lists."""
    # Most names are printable ASCII, which holds no control, surrogate or bidi character: the walks below would
    # cost a file of thousands of names milliseconds.
    if name.isascii() and name.isprintable():
        return _length_problem(name)
    if char := breaking_char(name):
        return f"contains {char}, a control character or line break"
    if char := next((f"U+{ord(c):04X}" for c in name if "\ud800" <= c <= "\udfff"), None):
        return f"contains {char}, a lone surrogate (half of a character, not text)"
    if char := next((f"U+{ord(c):04X}" for c in name if c in BIDI_CONTROLS), None):
        return f"contains {char}, a bidi control (it reorders what a terminal shows)"
    return _length_problem(name)


def _length_problem(name: str) -> str | None:
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name):,} characters long, more than {MAX_NAME_CHARS} (MAX_NAME_CHARS)"
    return None
