"""Fixtures for the project's own tests: loopback servers, and the monitor run as a user runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_monitor.outcome import Outcome
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import CHECKS, OtlpReceiver, junit_cases, probe_endpoints

pytest_plugins = ["pytester"]

# The real-model target is opt-in (scripts/real-models): its servers take minutes to build and 2 GB to hold.
collect_ignore = [] if os.environ.get("MODEL_MONITOR_REAL_MODELS") else ["test_real_models.py"]


E2E_FIXTURES = {"pytester", "start_monitor"}  # the fixtures that start the monitor as a process


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tier is every test that runs the monitor in a subprocess (through pytester) or, marked in its
    module, another program (helm, podman, the installed command); the rest is the fast tier, `-m "not e2e"`."""
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


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


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A loopback OTLP/HTTP metrics receiver of the test's own."""
    server = OtlpReceiver()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


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

    def assert_fault(self, case_id: str, error_class: str, piece: str) -> None:
        """The case failed with this class, its reason one line that says `piece`."""
        reason = self.reason(case_id)
        assert self.error_class(case_id) == error_class, reason
        assert piece in reason and "\n" not in reason, reason


@pytest.fixture
def run_monitor(pytester: pytest.Pytester) -> Callable[..., MonitorRun]:
    """Write an endpoints file and run the monitor on it in a subprocess, exactly as a user would."""

    def run(
        endpoints: dict[str, Any] | str, *args: str, timeout: float = 120, prefix: tuple[str, ...] = ()
    ) -> MonitorRun:
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


@dataclass
class Started:
    """A monitor run in the background, as a CronJob's pod or a CI job runs it."""

    process: subprocess.Popen[bytes]
    junit: Path
    log: Path

    def children(self) -> list[int]:
        """xdist's workers: the processes this run started."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(pid) for pid in (task / "children").read_text().split()]
        return pids

    def signal_and_wait(self, sig: int, bound: float) -> float:
        """Send `sig`, wait at most `bound` seconds for the exit, and say how long it took."""
        sent = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"still running {bound:g} s after {signal.Signals(sig).name}:\n{self.output}")
        return time.monotonic() - sent

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def start_monitor(tmp_path: Path) -> Iterator:
    started: list[Started] = []

    def start(endpoints: list[dict], *args: str) -> Started:
        path = tmp_path / "endpoints.yaml"
        path.write_text(yaml.safe_dump({"endpoints": endpoints}, sort_keys=False), encoding="utf-8")
        junit, log = tmp_path / "junit.xml", tmp_path / "monitor.log"
        argv = [
            sys.executable,
            "-m",
            "pytest",
            str(CHECKS),
            f"--endpoints={path}",
            f"--junitxml={junit}",
            "-p",
            "no:cacheprovider",
            *args,
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        started.append(Started(process, junit, log))
        return started[-1]

    yield start
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


@pytest.fixture
def probe(tmp_path: Path) -> Callable[..., dict[str, Outcome]]:
    """probe_endpoints in the test's own folder."""
    return lambda endpoints, environ=None: probe_endpoints(tmp_path, endpoints, environ)
