"""One version number, in model_monitor/__init__.py, drives the package, the image tag and the chart.

The release workflow (.github/workflows/release.yml) checks the tag against it with scripts/release-version and
packages the chart at it; these tests keep every other place that names it in step.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import yaml

from model_monitor import __version__

from .helpers import ROOT

RELEASE_VERSION = ROOT / "scripts" / "release-version"
SEMVER = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?")  # Helm requires SemVer 2 for a chart's version


def release_version(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RELEASE_VERSION), *args], capture_output=True, text=True, timeout=30)


def test_version_is_semver() -> None:
    assert SEMVER.fullmatch(__version__), __version__


def test_package_takes_its_version_from_model_monitor() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"], "the version is written once, in model_monitor/__init__.py"
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "model_monitor.__version__"}


def test_chart_version_and_app_version_are_the_project_version() -> None:
    chart = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (__version__, __version__)


def test_chart_default_image_is_what_the_release_pushes() -> None:
    """The chart's default repository is the release's image for the project's owner; its tag is appVersion."""
    values = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())
    release = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    pushed = release["jobs"]["image"]["env"]["IMAGE"].replace("${{ needs.version.outputs.owner }}", "model-monitor")
    assert values["cronJob"]["image"] == {**values["cronJob"]["image"], "repository": pushed, "tag": ""}


def test_release_version_accepts_the_matching_tag() -> None:
    proc = release_version(f"v{__version__}")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{__version__}\n", "")


def test_release_version_refuses_another_tag() -> None:
    proc = release_version("v0.0.0-other")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"release-version: tag v0.0.0-other is not v{__version__}, the version in model_monitor/__init__.py\n"
    )


def test_examples_run_the_released_image_at_the_project_version() -> None:
    for example in ("github-actions.yml", "gitlab-ci.yml"):
        assert f"ghcr.io/model-monitor/model-monitor:{__version__}" in (ROOT / "examples" / example).read_text()


def test_the_release_publishes_wheel_and_sdist_to_pypi_by_trusted_publishing() -> None:
    """PyPI trusts the workflow's OIDC token in the `pypi` environment: that job may mint one and do nothing else,
    no token or password is stored, and it uploads what the dist job built (and checked: init, then validate)."""
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())["jobs"]
    pypi = jobs["pypi"]
    assert pypi["environment"]["name"] == "pypi" and pypi["permissions"] == {"id-token": "write"}
    publish = [step for step in pypi["steps"] if step.get("uses", "").startswith("pypa/gh-action-pypi-publish@")]
    assert len(publish) == 1 and not publish[0].get("with"), "no password or token: trusted publishing"
    assert "dist" in pypi["needs"]
    built = "\n".join(step.get("run", "") for step in jobs["dist"]["steps"])
    assert "python -m build" in built and "model-monitor init" in built and "model-monitor validate" in built
