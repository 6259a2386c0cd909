"""One model entry of the file becomes one Case: its values picked from the model, its endpoint or the file's
defaults, and the checks the schema cannot make (names that break a line, ids used twice, a warning above its
limit, a regex or JSON Schema in `expect` that is not one)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..case import DEFAULT_TIMEOUT_S, Case, Endpoint, ExpectOptions, StreamOptions, monitor_key
from ..types import TYPES
from ..types.base import owned_params
from .document import Document, format_path, name_problem

__all__ = ["check_name", "check_unique", "model_case", "name_places"]


def model_case(
    document: Document,
    where: tuple[Any, ...],
    endpoint: Endpoint,
    raw_endpoint: dict[str, Any],
    raw: dict[str, Any],
    defaults: dict[str, Any],
) -> Case:
    """The case of one model entry; raise ConfigError, naming the place, when its values do not make one."""
    model_type = TYPES[raw["type"]]  # where the file's name for a type becomes the type
    chosen = {**defaults, **raw_endpoint, **raw}  # one lookup for each value, not three: read for every case

    def pick(name: str, fallback: Any = None) -> Any:
        """The model's value, else its endpoint's, else the file's defaults'."""
        return chosen.get(name, fallback)

    # A type's own fields, from the model, its endpoint or `defaults` (where they apply only to the types that have
    # them; the schema refuses them on a model of another type); the ones none of them sets keep the type's default.
    options = model_type.options(**{name: chosen[name] for name in model_type.fields if name in chosen})
    stream = isinstance(options, StreamOptions) and options.stream
    if isinstance(options, ExpectOptions):
        _check_expect(document, where + ("expect",), options.expect)
    params = {**defaults.get("params", {}), **raw.get("params", {})}
    if owned := owned_params(model_type, raw["name"], options, params):
        raise document.error(
            where + ("params",),
            f"{', '.join(owned)}: set by the case itself, not by params (use its own field, or another model entry)",
        )
    model_id = raw.get("id", raw["name"])
    monitor = monitor_key(raw.get("monitor") or f"{endpoint.name}-{model_id}")
    if not monitor:
        raise document.error(
            where + ("monitor",),
            f"{raw.get('monitor')!r} leaves an empty monitor key: it needs "
            "a letter or digit (a-z, 0-9; others become '-')",
        )
    limits = {name: pick(name) for name in ("max_latency", "warn_latency")}
    if stream:
        limits |= {name: pick(name) for name in ("max_ttft", "warn_ttft")}
    _check_warnings(document, where, raw, limits)
    return Case(
        endpoint=endpoint,
        model=raw["name"],
        model_id=model_id,
        type=model_type,
        monitor=monitor,
        timeout=float(pick("timeout", DEFAULT_TIMEOUT_S)),
        tags=tuple(dict.fromkeys([*defaults.get("tags", []), *raw.get("tags", [])])),
        params=params,
        retries=pick("retries", 0),
        schedule=pick("schedule"),
        max_latency=limits["max_latency"],
        max_ttft=limits.get("max_ttft"),
        min_tokens_per_s=pick("min_tokens_per_s") if stream else None,
        warn_latency=limits["warn_latency"],
        warn_ttft=limits.get("warn_ttft"),
        options=options,
    )


def name_places(where: tuple[Any, ...], model: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """A model's values that become (part of) a test id, a monitor key or a marker, with their places."""
    yield from ((where + (name,), model[name]) for name in ("name", "id", "monitor") if name in model)
    yield from ((where + ("tags", t), tag) for t, tag in enumerate(model.get("tags", [])))


def check_name(document: Document, parts: tuple[Any, ...], name: str) -> None:
    if problem := name_problem(name):
        raise document.error(parts, f"{problem}: names become test ids, monitor keys and one-line reports")


def check_unique(
    document: Document, where: tuple[Any, ...], case: Case, seen: dict[str, dict[str, tuple[Any, ...]]]
) -> None:
    """A case id or monitor key used twice would merge two cases' results."""
    for label, value in (("case id", case.id), ("monitor key", case.monitor)):
        if value in seen[label]:
            raise document.error(
                where,
                f"duplicate {label} {value!r} (also {format_path(seen[label][value])}); set a distinct "
                + ("'id'" if label == "case id" else "'monitor'"),
            )
    seen["case id"][case.id] = seen["monitor key"][case.monitor] = where


def _check_warnings(document: Document, where: tuple[Any, ...], raw: dict[str, Any], limits: dict[str, Any]) -> None:
    """A warning threshold above its limit could never warn before the case fails: a config error, named on the
    model (either value may come from defaults)."""
    for warn, limit in (("warn_latency", "max_latency"), ("warn_ttft", "max_ttft")):
        if limits.get(warn) is not None and limits.get(limit) is not None and limits[warn] > limits[limit]:
            origin = {name: "" if name in raw else " (from defaults)" for name in (warn, limit)}
            raise document.error(
                where + (warn,),
                f"{limits[warn]:g} s{origin[warn]} is above {limit} {limits[limit]:g} s{origin[limit]}: "
                "it would never warn before the case fails",
            )


def _check_expect(document: Document, where: tuple[Any, ...], expect: Mapping[str, Any]) -> None:
    """A regex that does not compile or a schema that is not one is a config error, not a failed check later."""
    if "regex" in expect:
        try:
            re.compile(expect["regex"])
        except re.error as exc:
            raise document.error(where + ("regex",), f"invalid regular expression: {exc}") from None
    if "json_schema" in expect:
        import jsonschema  # loaded by the file's validation already; imported where used, like the other users

        try:
            jsonschema.Draft202012Validator.check_schema(expect["json_schema"])
        except jsonschema.SchemaError as exc:
            raise document.error(where + ("json_schema",), f"invalid JSON Schema: {exc.message}") from None
