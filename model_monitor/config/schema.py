"""Schema validation and its wording: endpoints.schema.json checks the data, and each of jsonschema's errors becomes
one plain sentence at one place (`endpoints[0].models[1].type`, `'x' is not one of: chat, embedding, ...`)."""

from __future__ import annotations

import copy
import functools
import itertools
import json
import operator
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded by the first validation, not by every process that imports the config package
    import jsonschema

__all__ = ["SCHEMA_PATH", "violations"]

SCHEMA_PATH = Path(__file__).with_name("endpoints.schema.json")

_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^/?#@\s]*@", re.IGNORECASE)


def violations(data: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Every schema violation in the data as (its place, one sentence), in the order of their places."""
    import jsonschema

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
    return [place for error in errors for place in _placed(error, schema, data)]


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def _one_model_per_shape(data: Any) -> tuple[Any, dict[tuple[Any, ...], list[tuple[int, int]]]]:
    """The document with the models cut to one per shape (a model without its name, when the name is text) over
    the whole file, and for each model kept, the places (endpoint, model) of every model of its shape. The schema's
    verdict on a model depends on the model alone, and a name only has to be text: a file of 5000 models in a few
    shapes is checked in a fraction of the time (README, Scale), and each error is then reported at every model
    that has it. An endpoint keeps one model at least, so that its list is not found empty."""
    copies: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    if not (isinstance(data, dict) and isinstance(data.get("endpoints"), list)):
        return data, copies
    kept: dict[str, tuple[Any, ...]] = {}  # shape -> the place of the model kept for it
    endpoints = []
    for e, endpoint in enumerate(data["endpoints"]):
        if not (isinstance(endpoint, dict) and isinstance(endpoint.get("models"), list)):
            endpoints.append(endpoint)
            continue
        models: list[Any] = []
        for m, model in enumerate(endpoint["models"]):
            shape = _shape(model)
            place = kept.get(shape)
            if place is None or (m == len(endpoint["models"]) - 1 and not models):
                place = ("endpoints", e, "models", len(models))
                kept.setdefault(shape, place)
                models.append(model)
            copies.setdefault(place, []).append((e, m))
        endpoints.append({**endpoint, "models": models})
    return {**data, "endpoints": endpoints}, copies


def _shape(model: Any) -> str:
    """What the schema's verdict on a model depends on: all of it but the value of a name that is non-empty text
    (that it has one tells it from a model without a name)."""
    if isinstance(model, dict) and isinstance(model.get("name"), str) and model["name"]:
        named = {key: value for key, value in model.items() if key != "name"}
        return "named " + json.dumps(named, sort_keys=True, default=repr)
    return json.dumps(model, sort_keys=True, default=repr)


def _moved(
    error: jsonschema.ValidationError, copies: dict[tuple[Any, ...], list[tuple[int, int]]]
) -> Iterator[jsonschema.ValidationError]:
    """An error found in the cut document, at each model of the shape it was found in."""
    path = tuple(error.absolute_path)
    if path[:4] not in copies:
        yield error
        return
    for e, m in copies[path[:4]]:
        moved = copy.copy(error)
        moved.path = moved.relative_path = deque(("endpoints", e, "models", m, *path[4:]))
        moved.schema_path = moved.relative_schema_path = deque(error.absolute_schema_path)
        moved.parent = None
        yield moved


def _placed(
    error: jsonschema.ValidationError, schema: dict[str, Any], data: Any
) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Each place a schema violation names, with its sentence: an unknown field at its own key, one each."""
    parts = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and list(error.absolute_schema_path)[-2:] == [
        "then",
        "additionalProperties",
    ]:
        yield from _not_of_its_type(error, schema)
        return
    if error.validator == "additionalProperties":
        refusing: Any = error.schema  # jsonschema types it loosely (a bool or unset); here it is the object's schema
        accepted = sorted(refusing.get("properties", {}))
        instance: Any = error.instance
        for name in sorted(set(instance) - set(accepted)):
            yield parts + (name,), f"unknown field {name!r}; accepted: {', '.join(accepted)}"
        return
    yield parts, _describe(error, schema, data)


def _not_of_its_type(
    error: jsonschema.ValidationError, schema: dict[str, Any]
) -> Iterator[tuple[tuple[Any, ...], str]]:
    """The fields a type's rule refused (`if: {properties: {type: {const: X}}}, then: {properties: <the common fields
    and X's>, additionalProperties: false}`, one rule per type): a field of other types names them, any other is
    unknown."""
    rules = _subschema(schema, list(error.absolute_schema_path)[:-3])  # the entry's allOf: every type's rule
    accepted = {rule["if"]["properties"]["type"]["const"]: rule["then"]["properties"] for rule in rules}
    every = sorted({name for fields in accepted.values() for name in fields})
    refusing: Any = error.schema  # jsonschema types it loosely (a bool or unset); here it is the rule's `then`
    instance: Any = error.instance
    for name in sorted(set(instance) - set(refusing["properties"])):
        owners = [kind for kind, fields in accepted.items() if name in fields]
        message = (
            f"applies only to type {' or '.join(owners)}, not {instance['type']}"
            if owners
            else (f"unknown field {name!r}; accepted: {', '.join(every)}")
        )
        yield tuple(error.absolute_path) + (name,), message


def _leaf_errors(errors: list[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    """For oneOf/anyOf failures, the most specific sub-error says more than 'is not valid under any'."""
    from jsonschema.exceptions import best_match

    out = []
    for error in errors:
        out.append(best_match([error]) if error.context else error)
    return out


def _describe(error: jsonschema.ValidationError, schema: dict[str, Any], data: Any) -> str:
    """One plain sentence for a schema violation, with the accepted values."""
    expected: Any = error.validator_value  # jsonschema types them loosely; each branch below knows its validator's
    value: Any = error.instance
    kind = error.validator
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
