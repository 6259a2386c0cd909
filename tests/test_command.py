"""The `model-monitor` command as a user gets it: `pip install` of the checkout (not editable) into a fresh virtual
environment, then the command run from a folder outside the checkout, against the loopback FakeOpenAI server.

The fresh environment takes its dependencies from the running interpreter's (a .pth file), so that nothing comes from
the network; it is built once per session, inside a folder that stands for a user's project.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from model_monitor import settings
from testbed.openai_server import FakeOpenAI

from .helpers import ROOT, endpoint, model

pytestmark = pytest.mark.e2e  # installs the package in a venv and runs the command

ENTRY_POINT = "model_monitor.entry"  # the pytest11 entry point's name: `-p no:model_monitor.entry` turns it off
OURS_OR_PYTESTS = ("PYTEST_", "MODEL_MONITOR_")  # variables of this test run, not of the user's
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".tools", ".pycache", ".pytest_cache", "__pycache__", "*.egg-info", "build", "dist"
)


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the package installed from a copy of the checkout."""

    venv: Path
    project: Path  # the folder that holds the environment, as a user's project holds its .venv
    source: Path  # the copy of the checkout that pip installed from
    site_packages: Path

    @property
    def command(self) -> str:
        return str(self.venv / "bin" / "model-monitor")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, *argv: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command of the environment in `cwd`, with nothing of this test run's own imports or options (and
        `env` added)."""
        return subprocess.run(argv, cwd=cwd, env=self.environ(env), capture_output=True, text=True, timeout=300)

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        ours = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(OURS_OR_PYTESTS)}
        return {**ours, **(env or {})}


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("installed")
    source = base / "checkout"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)  # pip writes build/ into what it installs
    project = base / "project"
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    shared = dict.fromkeys(sysconfig.get_path(name) for name in ("purelib", "platlib"))  # pip, setuptools, dependencies
    (site_packages / "shared-dependencies.pth").write_text("".join(f"{path}\n" for path in shared), encoding="utf-8")
    env = Installed(venv, project, source, site_packages)
    pip = env.run(
        env.python,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--ignore-installed",
        "--quiet",
        str(source),
        cwd=base,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return env


def write_endpoints(path: Path, url: str, *names: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"endpoints": [endpoint(url, *(model(name) for name in names))]}), encoding="utf-8")
    return path


def outcome_counts(output: str) -> dict[str, int]:
    """pytest's last line, e.g. '1 failed, 2 passed in 0.1s' -> {'failed': 1, 'passed': 2}."""
    found = re.findall(r"(\d+) (passed|failed|errors?|skipped)", output.splitlines()[-1])
    return {word: int(count) for count, word in found}


@pytest.mark.parametrize("form", ["space", "equals"])
def test_the_installed_command_runs_from_any_folder(
    installed: Installed, openai_server: FakeOpenAI, tmp_path: Path, form: str
) -> None:
    """The command runs the suite that pip installed (not the checkout), from a folder outside the checkout, with
    the endpoints file outside it too; relative paths (the endpoints file, the JUnit report) are the caller's."""
    write_endpoints(tmp_path / "config" / "staging.yaml", openai_server.url, "chat-model", "embed-model")
    caller = tmp_path / "elsewhere"
    caller.mkdir()
    endpoints = ["--endpoints", "../config/staging.yaml"] if form == "space" else ["--endpoints=../config/staging.yaml"]
    proc = installed.run(installed.command, *endpoints, "--junitxml=report.xml", "-v", cwd=caller)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert outcome_counts(proc.stdout) == {"passed": 2}
    assert f"rootdir: {installed.site_packages / 'model_monitor' / 'suite'}" in output
    assert "model-monitor summary" in output and "Warning" not in output
    assert 'tests="2"' in (caller / "report.xml").read_text(encoding="utf-8")


@pytest.mark.parametrize("how", ["command", "checkout"])
def test_the_suite_runs_without_anyios_pytest_plugin(installed: Installed, tmp_path: Path, how: str) -> None:
    """httpx brings anyio and its pytest plugin; the suite has no use for it, and it cost every process and xdist
    worker ~0.2 s of CPU. Left out by the command and by the checkout's `pytest checks`."""
    path = write_endpoints(tmp_path / "staging.yaml", "http://127.0.0.1:9", "chat-model")
    argv, cwd = (
        ([installed.command], tmp_path)
        if how == "command"
        else ([installed.python, "-m", "pytest", "checks"], installed.source)
    )
    proc = installed.run(*argv, "-p", "no:cacheprovider", f"--endpoints={path}", "--collect-only", "-v", cwd=cwd)
    plugins = next(line for line in proc.stdout.splitlines() if line.startswith("plugins: "))
    assert "xdist" in plugins and "anyio" not in plugins


def test_a_failing_model_exits_1(installed: Installed, openai_server: FakeOpenAI, tmp_path: Path) -> None:
    path = write_endpoints(tmp_path / "staging.yaml", openai_server.url, "chat-model", "x+status=503")
    proc = installed.run(installed.command, "--endpoints", str(path), cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    assert outcome_counts(proc.stdout) == {"failed": 1, "passed": 1}
    assert "server_error: HTTP 503" in proc.stdout


# A degraded pass (one retry) beside a pass; and with a failing model too.
DEGRADED = [model("fine"), model("flaky+flaky=1", id="flaky", retries=1)]
FAILING = [*DEGRADED, model("down+status=503", id="down")]


@pytest.mark.parametrize(
    ("models", "fail_on", "status"),
    [
        pytest.param(models, fail_on, status, id=f"{name}-{fail_on or 'default'}")
        for name, models, statuses in (("degraded", DEGRADED, (0, 0, 1, 0)), ("failing", FAILING, (1, 1, 1, 0)))
        for fail_on, status in zip((None, "failed", "degraded", "never"), statuses, strict=True)
    ],
)
def test_fail_on_decides_what_the_verdicts_make_of_the_exit_code(
    installed: Installed,
    server: FakeOpenAI,
    tmp_path: Path,
    models: list[dict[str, object]],
    fail_on: str | None,
    status: int,
) -> None:
    """--fail-on failed|degraded|never, by flag and by environment variable alike; the verdicts are the same."""
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [endpoint(server.url, *models)]}), encoding="utf-8")
    flag = ("--fail-on", fail_on) if fail_on else ()
    by_flag = installed.run(installed.command, "--endpoints", str(path), *flag, cwd=tmp_path)
    assert by_flag.returncode == status, (by_flag.stdout + by_flag.stderr)[-3000:]
    assert re.search(r"svc/flaky .* DEGRADED", by_flag.stdout), by_flag.stdout[-3000:]
    failed = 1 if len(models) == 3 else 0
    assert outcome_counts(by_flag.stdout) == {"passed": 2, **({"failed": 1} if failed else {})}
    if fail_on:
        server.clear()  # the flaky model fails its first request again
        by_env = installed.run(
            installed.command, "--endpoints", str(path), cwd=tmp_path, env={"MODEL_MONITOR_FAIL_ON": fail_on}
        )
        assert by_env.returncode == status, (by_env.stdout + by_env.stderr)[-3000:]


def test_fail_on_never_still_fails_a_broken_monitor(installed: Installed, server: FakeOpenAI, tmp_path: Path) -> None:
    """never: a usage error (4), a bad --fail-on (4), undelivered telemetry under --telemetry-strict (1) and an
    interrupted run (2) still fail: the monitor itself did not do its job."""
    path = write_endpoints(tmp_path / "staging.yaml", server.url, "chat-model", "x+status=503")
    never = ("--endpoints", str(path), "--fail-on", "never")
    proc = installed.run(installed.command, *never, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    missing = installed.run(
        installed.command, "--endpoints", str(tmp_path / "absent.yaml"), "--fail-on=never", cwd=tmp_path
    )
    assert missing.returncode == 4, missing.stdout + missing.stderr
    bad = installed.run(installed.command, "--endpoints", str(path), "--fail-on", "sometimes", cwd=tmp_path)
    assert bad.returncode == 4
    assert "--fail-on: invalid value 'sometimes': expected one of failed, degraded, never" in bad.stderr
    undelivered = f"--cronitor-url=http://127.0.0.1:{free_port()}/p/cronitorkey0123456789"
    strict = installed.run(installed.command, *never, undelivered, "--telemetry-strict", cwd=tmp_path)
    assert strict.returncode == 1, (strict.stdout + strict.stderr)[-3000:]
    lenient = installed.run(installed.command, *never, undelivered, cwd=tmp_path)
    assert lenient.returncode == 0, (lenient.stdout + lenient.stderr)[-3000:]
    slow = write_endpoints(tmp_path / "slow.yaml", server.url, "slow+delay=30")
    with subprocess.Popen(
        [installed.command, "--endpoints", str(slow), "--fail-on", "never"],
        cwd=tmp_path,
        env=installed.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc_:
        deadline = time.monotonic() + 60
        while not any("slow" in (r.model or "") for r in server.requests) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc_.send_signal(signal.SIGINT)
        output, _ = proc_.communicate(timeout=60)
    assert proc_.returncode == 2, output[-3000:]


def free_port() -> int:
    """A loopback port nothing listens on (telemetry sent there is not delivered)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_shows_our_options_first_with_defaults_and_environment(installed: Installed, tmp_path: Path) -> None:
    """Every option, with its environment variable and default, before pytest's own help (and no endpoints file
    is needed to read it)."""
    proc = installed.run(installed.command, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ours, _, theirs = proc.stdout.partition("pytest's own options follow")
    assert "-k EXPRESSION" in theirs and "-k EXPRESSION" not in ours
    entries = dict(re.findall(r"^  (\S+).*\n +(.*)$", ours, re.MULTILINE))
    assert set(entries) == {option.env if option.env_only else option.flag for option in settings.OPTIONS} | {"--only"}
    for option in settings.OPTIONS:
        text = entries[option.env if option.env_only else option.flag]
        assert "[default: " in text
        assert option.env_only or f"[env {option.env}]" in text
    assert "[default: endpoints.yaml]" in entries["--endpoints"] and "[default: 100]" in entries["--max-concurrency"]


def test_the_checkout_runs_with_the_package_installed(
    installed: Installed, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    """In a checkout, the root conftest.py's pytest_plugins and the entry point name one plugin: pytest registers it
    once (twice would be an error) and `pytest checks` runs the suite as before."""
    path = write_endpoints(tmp_path / "staging.yaml", openai_server.url, "chat-model")
    pytest_checks = (installed.python, "-m", "pytest", "-p", "no:cacheprovider", "checks", f"--endpoints={path}")
    proc = installed.run(*pytest_checks, cwd=installed.source)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert outcome_counts(proc.stdout) == {"passed": 1}
    listed = installed.run(*pytest_checks, "--co", "-q", cwd=installed.source).stdout
    assert "checks/test_endpoints.py::test_endpoint[svc/chat-model]" in listed


USER_TESTS = """\
import sys

def test_mine_passes(request):
    assert request.node.get_closest_marker("timeout") is None
    assert "model_monitor.plugin" not in sys.modules, "the plugin (and its half second of imports) stays unloaded"

def test_mine_fails():
    assert 1 == 2
"""


def test_dormant_next_to_a_users_own_tests(installed: Installed) -> None:
    """A user's project that holds the environment: pytest there shows our options in its help, and otherwise
    changes nothing: the plugin is not even imported, no header or summary, no endpoints file read (theirs is not
    ours), no timeout set, the same verdicts and exit code as with the entry point turned off."""
    (installed.project / "test_mine.py").write_text(USER_TESTS, encoding="utf-8")
    (installed.project / "endpoints.yaml").write_text("not: an endpoints file\n", encoding="utf-8")
    pytest_in_project = (installed.python, "-m", "pytest", "-p", "no:cacheprovider")
    helped = installed.run(*pytest_in_project, "--help", cwd=installed.project)
    assert "--endpoints=ENDPOINTS" in helped.stdout and "MODEL_MONITOR_ENDPOINTS" in helped.stdout
    with_plugin = installed.run(*pytest_in_project, cwd=installed.project)
    without = installed.run(*pytest_in_project, "-p", f"no:{ENTRY_POINT}", cwd=installed.project)
    assert with_plugin.returncode == without.returncode == 1, with_plugin.stdout[-3000:] + with_plugin.stderr
    assert outcome_counts(with_plugin.stdout) == outcome_counts(without.stdout) == {"failed": 1, "passed": 1}
    assert report_lines(with_plugin) == report_lines(without)


def report_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """A run's output without what differs between two runs anyway: durations, and pytest's list of the installed
    plugins (which names the package whether it is turned off or not)."""
    lines = (proc.stdout + proc.stderr).splitlines()
    return [re.sub(r" in [\d.]+s", "", line) for line in lines if not line.startswith("plugins: ")]


def test_the_command_speaks_for_the_monitor(installed: Installed, openai_server: FakeOpenAI, tmp_path: Path) -> None:
    """Off a terminal (a CronJob's log, CI): the monitor's header, each failure once by its case id, the table and
    pytest's count; none of pytest's plumbing (rootdir, plugins, node ids, FAILURES, the short summary)."""
    write_endpoints(tmp_path / "staging.yaml", openai_server.url, "chat-model", "x+status=503")
    proc = installed.run(installed.command, "--endpoints", "staging.yaml", "--junitxml=report.xml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [re.sub(r"\d+\.\d+s", "T", line.rstrip()) for line in proc.stdout.splitlines()]
    fail = "FAIL  svc/x+status=503  server_error: HTTP 503 from POST /v1/chat/completions"
    assert lines[:5] == [
        "model-monitor 2.0.0: 2 cases on 1 endpoint from staging.yaml",
        "telemetry: off (no --cronitor-url / CRONITOR_URL or --healthchecks-url / HEALTHCHECKS_URL)",
        "metrics: off (no --pushgateway-url, no OTEL_EXPORTER_OTLP_ENDPOINT)",
        "reports: junit report.xml",
        lines[4],
    ]
    assert lines[4].startswith(fail)
    assert [line.strip("= ").split()[:3] for line in lines[5:-1] if line.strip()] == [
        ["model-monitor", "summary"],
        ["case", "type", "verdict"],
        ["svc/chat-model", "chat", "PASS"],
        ["svc/x+status=503", "chat", "FAIL"],
        ["this", "run", "used"],
    ]
    assert lines[-1] == "1 failed, 1 passed in T"
    assert proc.stdout.count("HTTP 503") == 2, "the failure's line and its row in the table"
    for plumbing in ("rootdir", "configfile", "plugins:", "site-packages", "test_endpoint", "FAILURES", "short test"):
        assert plumbing not in proc.stdout + proc.stderr
    assert "\r" not in proc.stdout and proc.stderr == ""


def test_minus_v_brings_pytests_own_reporting_back(
    installed: Installed, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    path = write_endpoints(tmp_path / "staging.yaml", openai_server.url, "x+status=503")
    proc = installed.run(installed.command, "--endpoints", str(path), "-v", cwd=tmp_path)
    assert proc.returncode == 1
    assert "test_endpoints.py::test_endpoint[svc/x+status=503] FAILED" in proc.stdout
    assert "FAILURES" in proc.stdout and "short test summary info" in proc.stdout


def test_a_configuration_problem_is_the_first_and_only_thing_said(
    installed: Installed, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "staging.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [endpoint(openai_server.url, model("m"), api_key_env="MM_UNSET")]}))
    sent = len(openai_server.requests)  # the server is shared with other tests
    for workers in ((), ("-n", "2")):
        proc = installed.run(installed.command, "--endpoints", str(path), *workers, cwd=tmp_path)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        # xdist's own status line (on a terminal, redrawn in place) is all that may come first.
        said = [line for line in proc.stdout.splitlines() if line.strip() and line != "bringing up nodes..."]
        assert said == [] and proc.stderr.strip().splitlines() == [
            f"ERROR: endpoints file: {path}:2: endpoints[0].api_key_env: environment variable MM_UNSET (the API "
            "key) is not set or empty"
        ], proc.stdout + proc.stderr
    assert len(openai_server.requests) == sent, "nothing sent"


def test_version_names_the_monitor(installed: Installed, tmp_path: Path) -> None:
    proc = installed.run(installed.command, "--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["model-monitor 2.0.0", f"pytest {pytest.__version__}"]


def test_on_a_terminal_a_long_run_shows_its_progress_in_place(
    installed: Installed, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    """A run longer than console.PROGRESS_AFTER_S, on a terminal (a pseudo-terminal here): one line redrawn with
    a carriage return, counting the cases done, failing and in flight, cleared before the summary."""
    path = write_endpoints(tmp_path / "staging.yaml", openai_server.url, "chat-model", "slow+delay=5", "x+status=503")
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [installed.command, "--endpoints", str(path)],
        cwd=tmp_path,
        env=installed.environ(),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    ) as proc:
        os.close(secondary)
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=60) == 1
    os.close(primary)
    text = seen.decode()
    assert re.search(r"\rmodel-monitor: \d/3 done, \d failing, [01] in flight \(\d+ s\)", text), text
    table = text.index("model-monitor summary")
    assert text.rfind("\r", 0, table) < text.rfind("\n", 0, table), "the progress line is gone before the table"


def test_without_the_otlp_extra_an_otlp_endpoint_is_one_clear_line(installed: Installed, tmp_path: Path) -> None:
    """A base install has no OpenTelemetry SDK (here hidden behind an empty package of its name): asking for OTLP
    metrics is a usage error that says what to install, not an ImportError."""
    hidden = tmp_path / "hidden"
    (hidden / "opentelemetry").mkdir(parents=True)
    (hidden / "opentelemetry" / "__init__.py").write_text("")
    path = write_endpoints(tmp_path / "staging.yaml", "http://127.0.0.1:9", "m")
    proc = installed.run(
        installed.command,
        "--endpoints",
        str(path),
        cwd=tmp_path,
        env={"PYTHONPATH": str(hidden), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).strip() == (
        "ERROR: OTEL_EXPORTER_OTLP_ENDPOINT is set, but the OTLP exporter is not installed: install model-monitor[otlp]"
    )


def test_init_then_validate_in_the_installed_command(installed: Installed, tmp_path: Path) -> None:
    """The starter file ships in the wheel, and validate accepts it as written."""
    created = installed.run(installed.command, "init", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    checked = installed.run(installed.command, "validate", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("endpoints.yaml: valid: 7 cases on 5 endpoints")
