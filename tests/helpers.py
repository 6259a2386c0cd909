"""Small builders for endpoints files in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "checks"


def endpoint(url: str, *models: dict[str, Any], name: str = "svc", **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "models": list(models), **extra}


def model(name: str, type: str = "chat", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type, **extra}
