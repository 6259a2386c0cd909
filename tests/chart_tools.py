"""The real tools the chart and dashboard tests drive: Helm 3 and 4, checkov, and the values sets they render."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import ROOT

CHART = ROOT / "chart"
VALUES_DIR = Path(__file__).resolve().parent / "chart_values"
TOOLS_BIN = ROOT / ".tools" / "bin"
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
HELMS = ("helm3", "helm4")
RELEASE = "mm"


def tool(name: str) -> str:
    """Path of a required tool; fails (not skips) when scripts/install-tools has not been run."""
    candidates = [TOOLS_BIN / name, CHECKOV if name == "checkov" else None, Path(sys.executable).parent / name]
    for path in candidates:
        if path is not None and path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} not found: run scripts/install-tools (and install the project's test extras)")


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def values_args(files: list[str]) -> list[str]:
    return [arg for name in files for arg in ("-f", str(VALUES_DIR / name))]


def load_values(files: list[str]) -> dict[str, Any]:
    """The user-supplied values, merged like Helm does (maps merge, everything else is replaced)."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    merged: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for name in files:
        merged = merge(merged, yaml.safe_load((VALUES_DIR / name).read_text()) or {})
    return merged


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = [cj["spec"]["jobTemplate"]["spec"]["template"]["spec"] for cj in kinds(docs, "CronJob")]
    return specs + [pod["spec"] for pod in kinds(docs, "Pod")]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}
