"""Fixtures for the project's own tests: loopback servers, and the monitor run as a user runs it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import CHECKS, junit_cases

pytest_plugins = ["pytester"]

# The real-model target is opt-in (scripts/real-models): its servers take minutes to build and 2 GB to hold.
collect_ignore = [] if os.environ.get("MODEL_MONITOR_REAL_MODELS") else ["test_real_models.py"]


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A server of the test's own: flaky counters and recorded requests start from nothing."""
    with FakeOpenAI() as fresh:
        yield fresh


@pytest.fixture(scope="module")
def module_runs() -> dict[str, Any]:
    """A module's cache for one monitor run that its tests share (run_monitor itself is per test)."""
    return {}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@dataclass
class MonitorRun:
    """A finished monitor run: pytest's result plus the per-case properties from its JUnit XML."""

    result: pytest.RunResult
    cases: dict[str, dict[str, str]]
    junit: str

    @property
    def ret(self) -> int:
        return int(self.result.ret)

    @property
    def output(self) -> str:
        return self.result.stdout.str() + self.result.stderr.str()

    def reason(self, case_id: str) -> str:
        return self.cases[case_id]["model_monitor.reason"]

    def error_class(self, case_id: str) -> str:
        return self.cases[case_id].get("model_monitor.class", "")


@pytest.fixture
def run_monitor(pytester: pytest.Pytester) -> Callable[..., MonitorRun]:
    """Write an endpoints file and run the monitor on it in a subprocess, exactly as a user would."""

    def run(endpoints: dict[str, Any] | str, *args: str, timeout: float = 120, prefix: tuple[str, ...] = ()) -> MonitorRun:
        """`prefix` runs the monitor under another command, e.g. ("unshare", "-n") for a network of its own."""
        text = endpoints if isinstance(endpoints, str) else yaml.safe_dump(endpoints, sort_keys=False)
        path = pytester.path / "endpoints.yaml"
        path.write_text(text, encoding="utf-8")
        junit = pytester.path / "junit.xml"
        argv = (str(CHECKS), f"--endpoints={path}", f"--junitxml={junit}", "-p", "no:cacheprovider", *args)
        if prefix:
            result = pytester.run(*prefix, sys.executable, "-m", "pytest", *argv, timeout=timeout)
        else:
            result = pytester.runpytest_subprocess(*argv, timeout=timeout)
        if not junit.exists():
            return MonitorRun(result, {}, "")
        return MonitorRun(result, junit_cases(junit), junit.read_text(encoding="utf-8"))

    return run
