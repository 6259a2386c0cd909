"""Model types: one module each (its fields and defaults, its request, its check), found through one registry.

Every module of this package that defines TYPE is a model type: adding one is adding a module (with the JSON Schema
of its fields, `ModelType.schema`), then running scripts/gen-values-schema (schema.py writes the `type` list and a
rule per type); nothing else asks `if type == ...`."""

from __future__ import annotations

import importlib
import pkgutil

from .base import Checked, ModelType

__all__ = ["TYPES", "Checked", "ModelType"]


def _discover() -> dict[str, ModelType]:
    """name -> type, in name order (a stable order for messages that list types)."""
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    found = [module.TYPE for module in modules if isinstance(getattr(module, "TYPE", None), ModelType)]
    return {model_type.name: model_type for model_type in sorted(found, key=lambda t: t.name)}


TYPES: dict[str, ModelType] = _discover()
