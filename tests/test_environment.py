"""The monitor's own environment fails, not an endpoint: a disk that fills up before JUnit is written, a stdout
that is closed or whose reader goes away, a process out of file descriptors. Every case is still probed, judged
and reported through the channels that work, and the exit code says what happened."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
import yaml

from model_monitor.errors import ErrorClass
from model_monitor.probe.exchange import Clock, classify
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import WORKERS, endpoint, junit_cases, model, mounted

CASES = 30  # a JUnit file of 30 cases is far beyond the tiny disk below
TINY_DISK = "8k"
REPORT_NOT_WRITTEN = 6  # the exit code the README documents: not 1, which says a model failed


def on_a_tiny_disk(folder: Path) -> tuple[str, ...]:
    """Run the monitor where `folder` is a tmpfs of a few KiB: room for the start-up check, not for the report."""
    return mounted(folder, f'mkdir -p "$0" && mount -t tmpfs -o size={TINY_DISK} tmpfs "$0"')


def end_states(receiver: Receiver) -> dict[str, str]:
    """monitor key -> the state of its last ping (complete, fail), from what the receiver got."""
    return {p.path.rsplit("/", 1)[1]: p.query["state"][0] for p in receiver.pings if p.query["state"][0] != "run"}


@WORKERS
def test_a_full_disk_at_the_end_loses_no_ping_result_or_summary(
    server: FakeOpenAI, run_monitor, receiver: Receiver, tmp_path: Path, workers: list[str]
) -> None:
    """JUnit's write fails with ENOSPC after every case passed: every ping is delivered, the results document and
    the summary are written, the summary names the file, and the run exits REPORT_NOT_WRITTEN (it exited 1, with
    1 ping of 60 delivered, no summary and no results)."""
    full = tmp_path / "full"
    results = tmp_path / "results.json"
    models = [model("chat-model", id=f"m{i}") for i in range(CASES)]
    run = run_monitor(
        {"endpoints": [endpoint(server.url, *models)]},
        f"--junitxml={full / 'junit.xml'}",
        f"--results-json={results}",
        f"--cronitor-url={receiver.url}/p/diskkey1234",
        "--telemetry-rate=1000",
        *workers,
        prefix=on_a_tiny_disk(full),
    )
    assert run.ret == REPORT_NOT_WRITTEN, run.output
    assert len(receiver.pings) == 2 * CASES, run.output
    assert end_states(receiver) == {f"svc-m{i}": "complete" for i in range(CASES)}
    document = json.loads(results.read_text(encoding="utf-8"))
    assert document["run"]["exit_status"] == {"code": REPORT_NOT_WRITTEN, "name": "REPORT_NOT_WRITTEN"}
    assert [case["verdict"] for case in document["cases"]] == ["pass"] * CASES
    lines = run.output.splitlines()
    assert f"model-monitor: could not write {full / 'junit.xml'}: No space left on device" in lines
    assert len([line for line in lines if line.startswith("svc/m")]) == CASES, "the summary table, every case"
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output


def command(endpoints: Path, junit: Path, receiver: Receiver) -> list[str]:
    """The model-monitor command as its console script runs it."""
    return [
        sys.executable,
        "-c",
        "import sys; from model_monitor.cli import main; sys.exit(main())",
        f"--endpoints={endpoints}",
        f"--junitxml={junit}",
        f"--cronitor-url={receiver.url}/p/stdoutkey1234",
        "--telemetry-rate=1000",
    ]


@pytest.mark.parametrize("how", ["closed", "reader-gone"])
def test_a_closed_or_broken_stdout_costs_only_the_output(
    server: FakeOpenAI, receiver: Receiver, tmp_path: Path, how: str
) -> None:
    """`model-monitor >&-` and `model-monitor | head -1`: every case is probed, pinged and in JUnit, and the exit
    code is the verdicts' (both exited 1 before a request, with nothing said)."""
    endpoints, junit = tmp_path / "endpoints.yaml", tmp_path / "junit.xml"
    models = [model("chat-model", id=f"m{i}") for i in range(CASES - 1)] + [model("bad+status=500", id="bad")]
    endpoints.write_text(yaml.safe_dump({"endpoints": [endpoint(server.url, *models)]}), encoding="utf-8")
    argv = command(endpoints, junit, receiver)
    if how == "closed":
        process = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *argv], cwd=tmp_path, capture_output=True, timeout=120
        )
        code, said = process.returncode, process.stderr.decode()
        assert "model-monitor: stdout is closed: the run goes on" in said
    else:
        with subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as running:
            assert running.stdout is not None and running.stderr is not None
            first = running.stdout.readline()  # then the reader goes away, as `head -1` does
            running.stdout.close()
            said = running.stderr.read().decode()
            code = running.wait(timeout=120)
        assert first.startswith(b"model-monitor "), first  # the header, the first line a run writes
        assert "model-monitor: stdout was closed by its reader (broken pipe): the run goes on" in said
    assert code == 1, said
    assert len(server.requests) == CASES
    assert len(receiver.pings) == 2 * CASES, said
    assert end_states(receiver) == {**{f"svc-m{i}": "complete" for i in range(CASES - 1)}, "svc-bad": "fail"}
    cases = junit_cases(junit)
    assert len(cases) == CASES and cases["svc/bad"]["model_monitor.class"] == "server_error"
    assert "Traceback" not in said


DESCRIPTORS = 64  # ulimit -n: room for a few dozen sockets once Python, pytest and the plugin have their files
MANY = 300


def test_out_of_file_descriptors_no_case_fails_as_the_endpoints_fault(
    server: FakeOpenAI, run_monitor, receiver: Receiver
) -> None:
    """Under `ulimit -n 64`, 300 cases to an endpoint that allows 100 in flight: the cap on requests in flight is
    clamped to what the process can open, so every case passes and every ping goes out (450 of 500 cases failed
    as `connect`, EMFILE, and would have paged their owners)."""
    models = [model("chat-model", id=f"m{i}") for i in range(MANY)]
    run = run_monitor(
        {"endpoints": [endpoint(server.url, *models, max_concurrency=100)]},
        f"--cronitor-url={receiver.url}/p/fdkey1234",
        "--telemetry-rate=1000",
        prefix=("sh", "-c", f'ulimit -n {DESCRIPTORS} && exec "$@"', "sh"),
    )
    assert run.ret == 0, run.output
    assert {run.error_class(case_id) for case_id in run.cases} == {""}, run.output
    assert len(run.cases) == MANY
    assert len(receiver.pings) == 2 * MANY, run.output
    assert re.search(rf"at most \d+ \(not 100: ulimit -n {DESCRIPTORS}\) requests in flight", run.output), run.output


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.EMFILE, "Too many open files"), "file descriptors (EMFILE: Too many open files)"),
        (OSError(errno.ENFILE, "Too many open files in system"), "file descriptors (ENFILE: Too many open files in"),
        (OSError(errno.ENOMEM, "Cannot allocate memory"), "memory (ENOMEM: Cannot allocate memory)"),
    ],
    ids=["EMFILE", "ENFILE", "ENOMEM"],
)
def test_the_monitors_own_exhaustion_is_its_own_class_not_connect(error: OSError, said: str) -> None:
    """What aiohttp raises when the socket cannot be made, as the engine sees it: class resources, never connect
    (which is transient, retried, and pages the endpoint's owner)."""
    key = SimpleNamespace(host="127.0.0.1", port=80, ssl=False)
    exc = aiohttp.ClientConnectorError(key, error)  # type: ignore[arg-type]  # aiohttp reads only these fields
    found = classify(exc, Clock(start=time.monotonic(), host="127.0.0.1"))
    assert found.error_class == ErrorClass.RESOURCES
    assert not found.error_class.transient
    assert found.message.startswith(f"the monitor ran out of {said}")
    assert found.message.endswith(": the monitor's fault, not the endpoint's")
