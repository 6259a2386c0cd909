"""The monitor's own environment fails, not an endpoint: a disk that fills up before JUnit is written, a stdout
that is closed or whose reader goes away, a process out of file descriptors. Every case is still probed, judged
and reported through the channels that work, and the exit code says what happened."""

from __future__ import annotations

import errno
import re
import time
from types import SimpleNamespace

import aiohttp
import pytest

from model_monitor.errors import ErrorClass
from model_monitor.probe.exchange import Clock, classify
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import endpoint, model

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
