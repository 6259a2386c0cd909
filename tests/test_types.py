"""The model-type registry and the endpoints schema describe the same types and fields."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import model_monitor.types
from model_monitor.config import SCHEMA_PATH
from model_monitor.types import TYPES

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_every_type_module_is_in_the_schema_and_every_schema_type_has_a_module() -> None:
    assert sorted(SCHEMA["$defs"]["type"]["enum"]) == sorted(TYPES)


def test_every_field_a_type_reads_is_accepted_on_a_model_of_that_type() -> None:
    """A type's `fields` (what its request reads, with defaults) are the fields its schema rule accepts."""
    rules = {
        rule["if"]["properties"]["type"]["const"]: rule["then"]["properties"]
        for rule in SCHEMA["$defs"]["model"]["allOf"]
    }
    for model_type in TYPES.values():
        assert set(model_type.fields) <= set(rules[model_type.name]), model_type.name


def test_a_type_is_found_by_its_module_alone() -> None:
    """The registry lists no names: it is every module of model_monitor/types that defines TYPE."""
    folder = Path(model_monitor.types.__file__).parent
    defining = [p.stem for p in folder.glob("*.py") if re.search(r"^TYPE = ", p.read_text(encoding="utf-8"), re.M)]
    assert {importlib.import_module(f"model_monitor.types.{stem}").TYPE.name for stem in defining} == set(TYPES)
    assert {t.name for t in TYPES.values()} >= {"chat", "completion", "embedding", "rerank", "models"}
