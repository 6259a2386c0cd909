"""models: GET /models lists the model (a cheap liveness check that costs no tokens)."""

from __future__ import annotations

from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from .base import Checked, ModelType, Options, listed

__all__ = ["TYPE", "model_ids"]


def model_ids(data: Any) -> list[str]:
    """The model ids a GET /models reply lists (discovery reads the listing the same way)."""
    items = listed(data, "data", "models")
    return [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]


def _check(case: Case, data: Any) -> Checked:
    ids = model_ids(data)
    if case.model not in ids:
        shown = ", ".join(map(str, ids[:5])) + (", …" if len(ids) > 5 else "")
        raise ProbeError(
            ErrorClass.EXPECTATION, f"model {case.model!r} is not listed by GET /models ({len(ids)} listed: {shown})"
        )
    return Checked(f"listed among {len(ids)} models")


TYPE = ModelType("models", "GET", "/models", Options, lambda case: None, _check)
