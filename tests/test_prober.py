"""The probing process: whether it crashes, sends garbage or loses its parent, every case ends with one clear line,
the run never hangs, and no prober outlives its run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from model_monitor.case import Case
from model_monitor.outcome import Outcome
from model_monitor.probe import process
from model_monitor.probe.engine import Engine
from testbed.openai_server import FakeOpenAI

from .helpers import ROOT, cases_of, endpoint, model, wait_for_requests

HELD = [model("ok"), model("held+hang", id="hang", timeout=60), model("held+delay=30", id="slow", timeout=60)]
EXIT_WITHIN_S = 10.0


def probed(cases: tuple[Case, ...], redact: Any) -> list[Outcome]:
    """Every case probed and judged by one engine, in order, as a run does."""
    engine = Engine(redact)
    try:
        engine.start(cases)
        return [engine.outcome(case) for case in cases]
    finally:
        engine.close()


def _gone(pid: int) -> bool:
    """Exited (or a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


@pytest.mark.timeout(60)
def test_a_killed_prober_fails_every_unjudged_case_with_one_line(tmp_path: Path, server: FakeOpenAI) -> None:
    cases, redact = cases_of(tmp_path, [endpoint(server.url, *HELD)])
    engine = Engine(redact)
    try:
        engine.start(cases)
        wait_for_requests(server, len(HELD))
        ok = engine.outcome(cases[0])
        assert engine._prober.pid is not None
        os.kill(engine._prober.pid, signal.SIGKILL)
        held = [engine.outcome(case) for case in cases[1:]]
    finally:
        engine.close()
    assert ok.passed, ok.reason
    for outcome in held:
        assert outcome.error_class == "crashed", outcome.reason
        assert outcome.reason == (
            "crashed: the probing process exited (killed by SIGKILL) before this case's reply was read"
        )


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("garbage", "crashed: the probing process sent a frame of 4294967295 + 4294967295 bytes"),
        ("misshapen", "crashed: the probing process sent a reply frame of the wrong shape for this case"),
        ("overflow", "crashed: the probing process sent a reply frame of the wrong shape for this case"),
        ("nan", "crashed: the probing process sent a reply frame of the wrong shape for this case"),
    ],
)
def test_what_the_prober_sends_is_outside_data(
    tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, mode: str, reason: str
) -> None:
    """Garbage ends the prober and fails every case; a misshapen reply fails its own case. Neither raises here."""
    monkeypatch.setattr(process, "PROBER", "tests.fake_prober")
    monkeypatch.setenv("FAKE_PROBER", mode)
    outcomes = probed(*cases_of(tmp_path, [endpoint(server.url, *HELD)]))
    assert [o.error_class for o in outcomes] == ["crashed"] * len(HELD), [o.reason for o in outcomes]
    assert all(o.reason.startswith(reason) for o in outcomes), [o.reason for o in outcomes]


@pytest.mark.timeout(60)
def test_cases_sent_after_the_prober_died_on_its_own_are_answered(
    tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prober that ended on its own before the cases came (here: at once) is replaced for them; this one dies
    too, and they fail saying so, rather than wait for good on the dead one."""
    monkeypatch.setattr(process, "PROBER", "tests.fake_prober")
    monkeypatch.setenv("FAKE_PROBER", "dies")
    cases, redact = cases_of(tmp_path, [endpoint(server.url, *HELD)])
    engine = Engine(redact)
    try:
        engine.launch()
        first = engine._prober._process
        assert first is not None and first.wait(30) == 3
        engine.start(cases)
        outcomes: list[Outcome] = []
        judge = threading.Thread(target=lambda: outcomes.extend(engine.outcome(case) for case in cases), daemon=True)
        judge.start()
        judge.join(30)
        assert not judge.is_alive(), "a case still waits for the dead prober"
    finally:
        engine.close()
    assert [o.error_class for o in outcomes] == ["crashed"] * len(HELD), [o.reason for o in outcomes]


PARENT = """
import json, sys, time
from pathlib import Path
from tests.helpers import cases_of
from model_monitor.probe.engine import Engine

cases, redact = cases_of(Path(sys.argv[1]), json.loads(sys.argv[2]))
engine = Engine(redact)
engine.start(cases)
print(engine._prober.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_the_prober_dies_with_its_parent(tmp_path: Path, server: FakeOpenAI) -> None:
    """A parent killed outright (no chance to close anything) takes its prober with it, held requests and all."""
    endpoints = json.dumps([endpoint(server.url, *HELD)])
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), endpoints], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        prober = int(parent.stdout.readline())
        wait_for_requests(server, len(HELD))
        assert not _gone(prober)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + EXIT_WITHIN_S
        while not _gone(prober) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(prober), "the prober outlived its parent"
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.timeout(60)
def test_the_prober_ends_once_every_case_is_answered_and_a_later_case_starts_another(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    """Its memory is of no use once the prefetched cases are answered; a case asked for later still gets probed."""
    cases, redact = cases_of(tmp_path, [endpoint(server.url, model("first"), model("later"))])
    engine = Engine(redact)
    try:
        engine.start(cases[:1])
        first = engine.outcome(cases[0])
        prober = engine._prober.pid
        assert prober is not None
        deadline = time.monotonic() + EXIT_WITHIN_S
        while not _gone(prober) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(prober), "the prober outlived its last case"
        later = engine.outcome(cases[1])
    finally:
        engine.close()
    assert first.passed and later.passed, (first.reason, later.reason)
    assert engine._prober.pid != prober


def test_a_prober_that_cannot_start_fails_the_cases_with_one_line(
    tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No interpreter to start (or no memory, no descriptors): the cases fail saying so, the run does not crash."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    cases, redact = cases_of(tmp_path, [endpoint(server.url, model("ok"))])
    engine = Engine(redact)
    try:
        engine.launch()
        engine.start(cases)
        outcome = engine.outcome(cases[0])
    finally:
        engine.close()
    assert outcome.reason == (
        "crashed: the probing process could not start (No such file or directory) before this case's reply was read"
    )
    assert len(server.requests) == 0


@pytest.mark.timeout(60)
def test_the_probing_process_starts_while_the_endpoints_file_is_read(start_monitor) -> None:
    """Its start (an interpreter and aiohttp, about 0.4 s) runs beside the file's loading and the models' listing,
    not after them before the first request; a run stopped before any case is sent leaves it running no longer."""
    with FakeOpenAI(listing="hang") as server:
        run = start_monitor([{"name": "gw", "url": server.url, "discover": True}, endpoint(server.url, model("ok"))])
        wait_for_requests(server, 1)  # the held listing: the run is still reading its endpoints file
        early = [
            pid for pid in run.children() if b"model_monitor.probe.prober" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        run.signal_and_wait(signal.SIGTERM, bound=EXIT_WITHIN_S)
    assert len(early) == 1, run.output
    deadline = time.monotonic() + EXIT_WITHIN_S
    while not _gone(early[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(early[0])


class WaitsForARequest:
    """A case type whose body, as the engine builds it, waits (5 s at most) for the server to have seen a request."""

    def __init__(self, real: Any, server: FakeOpenAI, seen: list[bool]) -> None:
        self._real, self._server, self._seen = real, server, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def body(self, case: Case) -> Any:
        deadline = time.monotonic() + 5
        while not self._server.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        self._seen.append(bool(self._server.requests))
        return self._real.body(case)


@pytest.mark.timeout(60)
def test_the_first_waves_are_sent_while_the_rest_are_built(tmp_path: Path, server: FakeOpenAI) -> None:
    """At a cap of 1, the first two jobs go to the prober (and out) before the fifth is built: at 5,000 cases
    the building and reading of the rest no longer come before the first request."""
    cases, redact = cases_of(tmp_path, [endpoint(server.url, *(model(f"wave{n}") for n in range(5)))])
    seen: list[bool] = []
    cases = (*cases[:-1], dataclasses.replace(cases[-1], type=WaitsForARequest(cases[-1].type, server, seen)))
    engine = Engine(redact, max_concurrency=1)
    try:
        engine.start(cases)
        outcomes = [engine.outcome(case) for case in cases]
    finally:
        engine.close()
    assert seen == [True]
    assert all(outcome.passed for outcome in outcomes), [outcome.reason for outcome in outcomes]


def test_jobs_read_keep_each_text_and_header_once() -> None:
    """The prober holds every job until its case is answered: what jobs repeat (an endpoint's URL, key and headers)
    is held once, not once per job as JSON decodes it, and each job still reads back as it was sent."""
    from model_monitor.probe.wire import HEAD, Job

    def job(number: int, length: str) -> Job:
        headers = (("Authorization", "Bearer sk-1"), ("Content-Type", "application/json"), ("Content-Length", length))
        return Job(number, "POST", "http://h/v1/chat/completions", headers, b"{}", 5.0, 1, 12.0, "ep", "http://h/v1",
                   20, True, None)  # fmt: skip

    def read(sent: Job, seen: dict) -> Job:
        data = sent.frame()
        size, _ = HEAD.unpack(data[: HEAD.size])
        return Job.of(json.loads(data[HEAD.size : HEAD.size + size]), data[HEAD.size + size :], seen)

    seen: dict = {}
    first, second, third = read(job(0, "2"), seen), read(job(1, "2"), seen), read(job(2, "3"), seen)
    assert (first, second, third) == (job(0, "2"), job(1, "2"), job(2, "3"))
    assert second.url is first.url and second.endpoint is first.endpoint and second.headers is first.headers
    assert third.headers[0] is first.headers[0] and third.headers[2] is not first.headers[2]


def test_the_prober_makes_room_for_its_connections_before_its_threads_start() -> None:
    """Linux grows a descriptor table shared by threads only after an RCU grace period (10-20 ms with every
    request's clock running): the prober makes its room while it has one thread, so no socket it opens waits."""
    import re
    import resource

    prober = process.spawn(100)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = Path(f"/proc/{prober.pid}/status").read_text()
            if int(re.search(r"Threads:\s+(\d+)", status)[1]) > 1:  # its writer thread: serving has begun
                break
            time.sleep(0.02)
        else:
            pytest.fail("the prober did not start serving within 30 s")
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = process.DESCRIPTOR_ROOM if soft == resource.RLIM_INFINITY else min(process.DESCRIPTOR_ROOM, soft)
        assert int(re.search(r"FDSize:\s+(\d+)", status)[1]) >= wanted
    finally:
        process.end_spare(prober)


@pytest.mark.timeout(60)
def test_a_wait_interrupted_as_its_answer_came_starts_no_prober(tmp_path: Path, server: FakeOpenAI) -> None:
    """pytest-timeout or Ctrl-C can interrupt a case's wait just as its answer is filed: there is no request left
    to cancel, and after the run's last answer no probing process is started to be told so."""
    cases, redact = cases_of(tmp_path, [endpoint(server.url, model("ok"))])
    engine = Engine(redact)
    try:
        engine.start(cases)
        deadline = time.monotonic() + 30
        while engine.first_answered({cases[0].id}) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        finished = engine._prober.pid
        engine._cancel(cases[0])  # what outcome() does when its wait is interrupted
        assert engine._prober.pid == finished
        assert not engine.pending(cases[0])
    finally:
        engine.close()


@pytest.mark.timeout(120)
def test_many_endpoints_fit_a_small_open_file_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each endpoint's pool keeps up to its max_concurrency connections: 30 endpoints of 10 models could hold 300,
    more than a prober under `ulimit -n 256` may open (macOS's default; many containers' is 1024). Pools with
    nothing under way are closed when the connections they may hold would pass the limit, so every case passes
    instead of failing as `resources` (the monitor's fault) when the descriptors run out."""
    import functools
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    monkeypatch.setattr(
        subprocess,
        "Popen",
        functools.partial(subprocess.Popen, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))),
    )
    with FakeOpenAI() as server:
        endpoints = [
            endpoint(server.url, *(model(f"m{e}-{i}+delay=0.2") for i in range(10)), name=f"ep{e}") for e in range(30)
        ]
        outcomes = probed(*cases_of(tmp_path, endpoints))
    failed = [o.reason for o in outcomes if not o.passed]
    assert not failed, f"{len(failed)} of {len(outcomes)} failed, first: {failed[0]}"
