"""Model types: one module each (its fields and defaults, its request, its check), found through one registry.

Adding a type is adding a module here and its name below; nothing else asks `if type == ...`."""

from __future__ import annotations

from . import chat, completion, embedding, models, rerank
from .base import Checked, ModelType

__all__ = ["TYPES", "Checked", "ModelType"]

TYPES: dict[str, ModelType] = {t.name: t for t in (chat.TYPE, completion.TYPE, embedding.TYPE, rerank.TYPE, models.TYPE)}
