"""The endpoints file's schema is generated from the model types: current, with one rule per type that names only
that type, and the same verdicts as the hand-written schema 2.0 shipped."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from model_monitor.config import SCHEMA_PATH
from model_monitor.types import TYPES
from model_monitor.types.schema import SchemaError, endpoints_schema, render

FINAL = endpoints_schema(TYPES)
HAND_WRITTEN = Path(__file__).with_name("endpoints.schema.2.0.json")  # as 2.0 shipped it


def test_the_committed_schema_is_the_generators_output() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(endpoints_schema(TYPES)), (
        "model_monitor/config/endpoints.schema.json is out of date: run scripts/gen-values-schema"
    )


def test_each_type_has_one_rule_that_names_only_itself() -> None:
    model = FINAL["$defs"]["model"]
    rules, common = model["allOf"], {name: {} for name in model["properties"]}
    assert [rule["if"] for rule in rules] == [
        {"properties": {"type": {"const": name}}, "required": ["type"]} for name in TYPES
    ]
    assert [rule["then"] for rule in rules] == [
        {"properties": {**common, **t.schema}, "additionalProperties": False} for t in TYPES.values()
    ]
    assert "additionalProperties" not in model, "a model's fields are closed by the rule of its type"
    # No other place of the schema lists the types: the `type` field's own enum is the one list.
    text = json.dumps({**FINAL, "$defs": {k: v for k, v in FINAL["$defs"].items() if k != "type"}})
    assert '"enum": ["chat"' not in text and "else" not in json.dumps(rules)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_every_field_of_a_type_has_a_description(name: str) -> None:
    assert [field for field, schema in TYPES[name].schema.items() if not schema.get("description")] == []
    assert TYPES[name].in_defaults <= set(TYPES[name].schema)


def test_a_new_type_is_its_module_alone_one_more_rule_and_value_of_type() -> None:
    new = dataclasses.replace(
        TYPES["rerank"], name="classify", schema={"labels": {"description": "x", "type": "integer"}}
    )
    schema = endpoints_schema({**TYPES, "classify": new})
    assert schema["$defs"]["type"]["enum"] == [*TYPES, "classify"]
    assert "classify (POST /v1/rerank)" in schema["$defs"]["type"]["description"]
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(document({"type": "classify", "labels": 3}))
    assert not validator.is_valid(document({"type": "rerank", "labels": 3}))
    assert not validator.is_valid(document({"type": "classify", "rank_check": True}))


def test_a_type_field_cannot_shadow_a_common_one() -> None:
    clash = dataclasses.replace(TYPES["rerank"], schema={"timeout": {"description": "x"}})
    with pytest.raises(SchemaError, match="'timeout' is both"):
        endpoints_schema({**TYPES, "rerank": clash})


def document(model: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    file: dict[str, Any] = {"endpoints": [{"name": "a", "url": "http://x", "models": [{"name": "m", **model}]}]}
    return {"defaults": defaults, **file} if defaults is not None else file


# Each field with a good value and bad ones; every type (and a wrong one, and none) gets each.
VALUES: dict[str, list[Any]] = {
    "stream": [True, False, "yes"],
    "max_ttft": [2, 0],
    "min_tokens_per_s": [5, -1],
    "warn_ttft": [1],
    "expect": [{"contains": "pong"}, {}, {"bogus": 1}],
    "prompt": ["hi", "", 3],
    "max_tokens": [8, 0],
    "json_mode": [True, 1],
    "tool_call": [True],
    "token_param": ["max_completion_tokens", "x"],
    "reasoning_effort": ["low", "max"],
    "require_content": [True],
    "dimensions": [8, 0],
    "encoding_format": ["float", "hex"],
    "input": ["hello", ["a", "b"], [], "", 3],
    "max_output_tokens": [8, 0],
    "rank_check": [True, "y"],
    "language": ["en", ""],
    "voice": ["alloy", ""],
    "response_format": ["wav", "ogg"],
    "size": ["256x256", "big"],
    "bogus": [1],
    "max_latency": [3, 0],
}
# The types 2.0 knew: a type added since has no verdict of 2.0's to agree with.
TYPES_OF_2_0 = json.loads(HAND_WRITTEN.read_text(encoding="utf-8"))["$defs"]["type"]["enum"]
MODEL_TYPES: list[dict[str, Any]] = [{"type": name} for name in TYPES if name in TYPES_OF_2_0] + [{"type": "chatt"}, {}]


def corpus() -> Iterator[dict[str, Any]]:
    for kind, (field, values) in itertools.product(MODEL_TYPES, VALUES.items()):
        for value, stream in itertools.product(values, ({}, {"stream": True}, {"stream": False})):
            model = {**kind, field: value, **stream}
            yield document(model)
            yield document(model, {"stream": True})
    for field, values in VALUES.items():
        for value in values:
            yield document({"type": "chat"}, {field: value})


def test_the_generated_schema_accepts_and_refuses_what_the_hand_written_one_of_2_0_did() -> None:
    """An existing endpoints file keeps working, and a wrong one stays refused: 2.0's hand-written schema (its
    cross-type rules named other types) and the generated one agree on every document of the corpus."""
    hand_written = jsonschema.Draft202012Validator(json.loads(HAND_WRITTEN.read_text(encoding="utf-8")))
    generated = jsonschema.Draft202012Validator(FINAL)
    differ = [doc for doc in corpus() if hand_written.is_valid(doc) != generated.is_valid(doc) and not _gained(doc)]
    assert differ == []
    assert any(_gained(doc) and generated.is_valid(doc) for doc in corpus()), "a gained field is accepted"


# Fields that types of 2.0 have gained since, by type: 2.0 refused them there, the generated schema accepts them.
GAINED = {"require_content": {"completion", "responses"}}


def _gained(doc: dict[str, Any]) -> bool:
    entry = doc["endpoints"][0]["models"][0]
    return any(name in entry and entry.get("type") in types for name, types in GAINED.items())
