"""Stopped from outside: SIGTERM, SIGINT, a second signal and the run deadline; and a timeline that is the requests'."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from model_monitor.case import Case
from model_monitor.errors import ErrorClass
from model_monitor.outcome import Outcome
from model_monitor.probe.engine import Engine
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import (
    DEADLINE_S,
    HELD,
    STOP_GRACE_S,
    WORKERS,
    cases_of,
    endpoint,
    junit_cases,
    model,
    wait_for_requests,
    wait_for_verdicts,
)

BULK = 300  # held cases: enough that the stop finds most of them unsent


def gone(pid: int) -> bool:
    """Exited (or a zombie waiting for a parent that is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def ends(receiver: Receiver) -> dict[str, list[str]]:
    """monitor key -> the states its pings carried, in order."""
    states: dict[str, list[str]] = {}
    for ping in receiver.pings:
        states.setdefault(ping.path.rsplit("/", 1)[1], []).append(ping.query["state"][0])
    return states


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@WORKERS
def test_a_signal_stops_the_run_in_order(server: FakeOpenAI, start_monitor, workers: list[str], sig: int) -> None:
    """The signal comes once the two answered cases are reported, while the two held ones are in flight: the
    answered cases keep their verdicts, the two held ones fail as interrupted, every case has its run and its end ping, JUnit is
    written, and the run ends within the stop grace with pytest's exit code for an interrupted run."""
    with Receiver() as receiver:
        run = start_monitor([endpoint(server.url, *HELD)], f"--cronitor-url={receiver.url}/p/stopkey1234", *workers)
        wait_for_requests(server, len(HELD))
        wait_for_verdicts(receiver, "svc-ok", "svc-bad")  # hang and slow held
        workers_pids = run.children()
        run.signal_and_wait(sig, bound=STOP_GRACE_S)  # fails the test past the grace
        states = ends(receiver)
    name = signal.Signals(sig).name
    assert run.process.returncode == 2, run.output
    cases = junit_cases(run.junit)
    assert cases["svc/ok"]["model_monitor.verdict"] == "pass"
    assert cases["svc/bad"]["model_monitor.class"] == "server_error"
    for held in ("svc/hang", "svc/slow"):
        reason = cases[held]["model_monitor.reason"]
        assert cases[held]["model_monitor.class"] == "interrupted", reason
        assert f"interrupted: run interrupted by {name} after " in reason and "; request in flight for " in reason
    assert states == {
        key: ["run", "fail" if key != "svc-ok" else "complete"] for key in ("svc-ok", "svc-bad", "svc-hang", "svc-slow")
    }, "every case: its run, then its end"
    assert f"model-monitor: run interrupted by {name}" in run.output
    assert all(gone(pid) for pid in workers_pids), "no orphaned worker"
    if workers:
        assert len(workers_pids) == 2


@WORKERS
def test_a_second_signal_ends_the_run_at_once(server: FakeOpenAI, start_monitor, workers: list[str]) -> None:
    """With a heartbeat service that never answers, the stopped run would wait for its pings: a second SIGTERM
    ends it, and its workers, at once."""
    with Receiver("hang") as receiver:
        run = start_monitor([endpoint(server.url, *HELD)], f"--cronitor-url={receiver.url}/p/stopkey1234", *workers)
        wait_for_requests(server, len(HELD))
        workers_pids = run.children()
        run.process.send_signal(signal.SIGTERM)
        assert server.wait_idle(timeout=STOP_GRACE_S), "the signal did not end the held requests"
        assert run.process.poll() is None, "the first signal leaves time for the pings"
        run.signal_and_wait(signal.SIGTERM, bound=3.0)
    assert run.process.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 3
    while not all(gone(pid) for pid in workers_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(pid) for pid in workers_pids), "no orphaned worker"


@WORKERS
def test_the_run_deadline_fails_what_is_left_as_timeout_and_reports(
    server: FakeOpenAI, run_monitor, workers: list[str]
) -> None:
    with Receiver() as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(server.url, *HELD)]},
            f"--run-deadline={DEADLINE_S:g}",
            f"--cronitor-url={receiver.url}/p/stopkey1234",
            *workers,
            timeout=DEADLINE_S + STOP_GRACE_S + 10,
        )
        states = ends(receiver)
    assert run.ret == 1, run.output
    assert run.cases["svc/ok"]["model_monitor.verdict"] == "pass"
    for held in ("svc/hang", "svc/slow"):
        assert run.error_class(held) == "timeout"
        assert run.reason(held).startswith(f"timeout: the run deadline of {DEADLINE_S:g} s passed; request "), (
            run.reason(held)
        )
    assert all(states[key] == ["run", "fail"] for key in ("svc-hang", "svc-slow"))
    run.result.stdout.fnmatch_lines([f"model-monitor: the run deadline of {DEADLINE_S:g} s passed: *"])


def test_a_run_deadline_that_cannot_work_is_refused(server: FakeOpenAI, run_monitor) -> None:
    for bad in ("0", "nan", "-5", "soon"):
        run = run_monitor({"endpoints": [endpoint(server.url, model("ok"))]}, f"--run-deadline={bad}")
        assert run.ret == 4
        assert f"--run-deadline: invalid value '{bad}'" in run.output
    assert server.requests == []


CLOCK_S = 0.005  # time.time() read in two processes: the stamps' own resolution is the millisecond
# The server stamps a request's end when its handler resumes after the last write, which can be after the client
# has read that write; it shares this process's interpreter with the receiver, which takes the fast case's pings
# while the slow request is still being answered.
SERVER_LAG_S = 0.02


@WORKERS
def test_pings_and_junit_carry_the_requests_own_times(server: FakeOpenAI, run_monitor, workers: list[str]) -> None:
    """The fast case comes first and is reported while the slow one is in flight; its pings and its JUnit time say
    0.2 s, and each stamp is when the server saw the request begin and end, whichever process sends it."""
    models = [
        model("fast+delay=0.2", id="fast"),
        model("slow+delay=1.2", id="slow"),
        model("down+delay=0.4+status=503", id="down"),
    ]
    with Receiver() as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(server.url, *models)]},
            f"--cronitor-url={receiver.url}/p/stampkey1234",
            "--durations=0",
            *workers,
        )
        pings = {(p.path.rsplit("/", 1)[1], p.query["state"][0]): float(p.query["stamp"][0]) for p in receiver.pings}
    assert run.ret == 1
    times = {
        tc.split('name="test_endpoint[')[1].split("]")[0]: float(tc.split('time="')[1].split('"')[0])
        for tc in run.junit.split("<testcase ")[1:]
    }
    for key, name in (
        ("svc-fast", "fast+delay=0.2"),
        ("svc-slow", "slow+delay=1.2"),
        ("svc-down", "down+delay=0.4+status=503"),
    ):
        seen = server.requests_for(name)[0]
        end = "complete" if key != "svc-down" else "fail"
        # The stamps bracket the server's own view of the request (a few ms apart on a quiet machine, more on a
        # loaded one): sent before the server saw it begin, whole only after the server finished it.
        assert pings[(key, "run")] <= seen.received_at + CLOCK_S, key
        assert pings[(key, end)] >= seen.finished_at - CLOCK_S - SERVER_LAG_S, key
    slow_done = server.requests_for("slow+delay=1.2")[0].finished_at
    assert pings[("svc-fast", "complete")] < slow_done, "stamped at its own reply, not when it was reported"
    assert times["svc/fast"] < times["svc/slow"] - 0.5, "its own request, not the wait for the slow one"
    assert times["svc/slow"] >= 1.2
    durations = [line for line in run.result.outlines if "call" in line and "test_endpoint[" in line]
    assert "svc/slow" in durations[0], "--durations names the slow endpoint first"


def discovering(url: str, *models: dict) -> list[dict]:
    """A discovering endpoint `gw` whose listing the server holds, and an endpoint `svc` the file lists."""
    return [{"name": "gw", "url": url, "discover": True}, endpoint(url, *models)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@WORKERS
def test_a_signal_during_discovery_reports_every_case_as_interrupted(
    start_monitor, workers: list[str], sig: int
) -> None:
    """The listing is held: the handlers are in place before it is sent, so the signal ends it and the run reports
    the discovery case and the file's cases as interrupted, each with its pings, and exits 2 (under xdist too,
    where the controller lists and its workers start stopped)."""
    with FakeOpenAI(listing="hang") as server, Receiver() as receiver:
        run = start_monitor(
            discovering(server.url, model("ok"), model("other")),
            f"--cronitor-url={receiver.url}/p/stopkey1234",
            *workers,
        )
        wait_for_requests(server, 1)
        run.signal_and_wait(sig, bound=STOP_GRACE_S + 20)  # xdist's workers start after the stop
        states = ends(receiver)
        paths = [r.path for r in server.requests]
    name = signal.Signals(sig).name
    assert run.process.returncode == 2, run.output
    cases = junit_cases(run.junit)
    assert set(cases) == {"gw/discovery", "svc/ok", "svc/other"}, run.output
    assert cases["gw/discovery"]["model_monitor.reason"].startswith(f"interrupted: run interrupted by {name} after ")
    assert "; listing GET /models in flight for " in cases["gw/discovery"]["model_monitor.reason"]
    for case_id in ("svc/ok", "svc/other"):
        assert cases[case_id]["model_monitor.reason"].endswith("; request not sent yet"), cases[case_id]
    assert {props["model_monitor.class"] for props in cases.values()} == {"interrupted"}
    assert states == {key: ["run", "fail"] for key in ("gw-discovery", "svc-ok", "svc-other")}
    assert paths == ["/v1/models"], "nothing is probed after the stop"
    assert f"model-monitor: run interrupted by {name}" in run.output


def test_the_run_deadline_bounds_a_held_listing(run_monitor) -> None:
    """The listing's own timeout (60 s) is longer than the run may take: the run deadline ends it."""
    with FakeOpenAI(listing="hang") as server:
        run = run_monitor(
            {"endpoints": [{**discovering(server.url)[0], "discover_timeout": 60}, endpoint(server.url, model("ok"))]},
            "--run-deadline=3",
            timeout=40,
        )
    assert run.ret == 1, run.output
    assert run.error_class("gw/discovery") == "timeout"
    assert run.reason("gw/discovery").startswith("timeout: the run deadline of 3 s passed; listing GET /models in ")
    assert run.reason("svc/ok") == "timeout: the run deadline of 3 s passed; request not sent yet"


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
@WORKERS
def test_sighup_and_sigquit_stop_the_run_as_sigterm_does(
    server: FakeOpenAI, start_monitor, workers: list[str], sig: int
) -> None:
    with Receiver() as receiver:
        run = start_monitor([endpoint(server.url, *HELD)], f"--cronitor-url={receiver.url}/p/stopkey1234", *workers)
        wait_for_requests(server, len(HELD))
        wait_for_verdicts(receiver, "svc-ok", "svc-bad")  # hang and slow held
        workers_pids = run.children()
        run.signal_and_wait(sig, bound=STOP_GRACE_S)
        states = ends(receiver)
    name = signal.Signals(sig).name
    assert run.process.returncode == 2, run.output
    cases = junit_cases(run.junit)
    assert cases["svc/ok"]["model_monitor.verdict"] == "pass"
    for held in ("svc/hang", "svc/slow"):
        assert cases[held]["model_monitor.reason"].startswith(f"interrupted: run interrupted by {name} after ")
    assert all(len(states[key]) == 2 for key in ("svc-ok", "svc-bad", "svc-hang", "svc-slow")), states
    assert all(gone(pid) for pid in workers_pids), "no orphaned worker"


@WORKERS
def test_a_stop_reports_hundreds_of_held_cases_each_once(server: FakeOpenAI, start_monitor, workers: list[str]) -> None:
    """The cases not yet judged when the stop comes are reported at once, without being run: every one of them is
    in JUnit and the summary, with its reason, alone and under xdist."""
    held = [model(f"held{n}+hang", id=f"held{n}", timeout=60) for n in range(BULK)]
    ok = model("ok")
    with Receiver() as receiver:
        pings = (f"--cronitor-url={receiver.url}/p/stopkey1234", "--telemetry-rate=10000")  # 602 pings, at once
        run = start_monitor([endpoint(server.url, ok, *held, max_concurrency=20)], *pings, *workers)
        wait_for_requests(server, 21)  # the endpoint's cap of held requests, and ok
        wait_for_verdicts(receiver, "svc-ok")
        run.signal_and_wait(signal.SIGTERM, bound=STOP_GRACE_S + 10)
    assert run.process.returncode == 2, run.output
    cases = junit_cases(run.junit)
    assert len(cases) == BULK + 1, run.output
    assert cases["svc/ok"]["model_monitor.verdict"] == "pass"
    interrupted = {case_id for case_id, props in cases.items() if props["model_monitor.class"] == "interrupted"}
    assert interrupted == {f"svc/held{n}" for n in range(BULK)}
    sent = {case_id for case_id in interrupted if "; request in flight for " in cases[case_id]["model_monitor.reason"]}
    assert 0 < len(sent) < BULK, "some were sent, the rest were waiting for a slot"
    summary_rows = [line for line in run.output.splitlines() if line.startswith("svc/")]
    assert len(summary_rows) == BULK + 1


def test_a_worker_still_busy_when_the_grace_ends_reports_its_cases_as_interrupted(
    server: FakeOpenAI, start_monitor
) -> None:
    """A worker that cannot stop in time (here: frozen by SIGSTOP) is killed when the grace ends; its cases fail
    as interrupted, as every unjudged case of a stopped run does, not as crashed."""
    run = start_monitor([endpoint(server.url, *HELD)], "-n", "2", "--stop-grace=3")
    wait_for_requests(server, len(HELD))
    frozen, *_ = run.children()
    os.kill(frozen, signal.SIGSTOP)
    run.signal_and_wait(signal.SIGTERM, bound=60)  # xdist starts a replacement for the killed worker, then ends it
    assert run.process.returncode == 2, run.output
    cases = junit_cases(run.junit)
    assert set(cases) == {"svc/ok", "svc/bad", "svc/hang", "svc/slow"}, run.output
    reasons = {case_id: props["model_monitor.reason"] for case_id, props in cases.items()}
    killed = [case_id for case_id, reason in reasons.items() if "was ended at the end of the stop grace" in reason]
    assert killed, run.output
    for case_id in killed:
        assert cases[case_id]["model_monitor.class"] == "interrupted", cases[case_id]
        assert cases[case_id]["model_monitor.reason"].startswith("interrupted: run interrupted by SIGTERM after ")


class StopsAsBuilt:
    """A case type whose body, as the engine builds the `nth` request, stops the engine: where a signal's handler
    can run while start() builds the jobs, or between the building and the sending."""

    def __init__(self, real: Any, engine: Engine, nth: int, built: list[int]) -> None:
        self._real, self._engine, self._nth, self._built = real, engine, nth, built

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def body(self, case: Case) -> Any:
        self._built.append(1)
        if len(self._built) == self._nth:
            self._engine.stop(ErrorClass.INTERRUPTED, "run interrupted by SIGTERM after 0.1 s")
        return self._real.body(case)


@pytest.mark.parametrize(
    ("nth", "cap"), [(2, 100), (5, 100), (2, 1)], ids=["while-building", "before-sending", "as-the-first-waves-go"]
)
def test_a_stop_while_the_probes_are_being_started_sends_nothing_and_leaves_no_case_waiting(
    server: FakeOpenAI, tmp_path: Path, nth: int, cap: int
) -> None:
    """Every case of a run stopped while its probes are being started gets its verdict at once, no request is
    sent, and no probing process is left: the stop ended the prober, and the send that followed would have
    started another one, its requests held by the server, its cases waiting (so it was before the fix)."""
    held = [model(f"held{n}+hang", id=f"held{n}", timeout=60) for n in range(5)]
    cases, redact = cases_of(tmp_path, [endpoint(server.url, *held)])
    engine, built = Engine(redact, max_concurrency=cap), []  # at a cap of 1, the first 2 jobs go before the rest
    cases = tuple(dataclasses.replace(case, type=StopsAsBuilt(case.type, engine, nth, built)) for case in cases)
    try:
        engine.start(cases)
        outcomes: list[Outcome] = []
        judge = threading.Thread(target=lambda: outcomes.extend(engine.outcome(case) for case in cases), daemon=True)
        judge.start()
        judge.join(STOP_GRACE_S)
        assert not judge.is_alive(), "a case still waits for its probe"
        left = probers()
    finally:
        engine.close()
    assert len(built) == nth, "nothing is built after the stop"
    assert [o.error_class for o in outcomes] == ["interrupted"] * len(cases)
    assert all(o.reason.endswith("; request not sent yet") for o in outcomes)
    assert server.requests == [] and left == []


def probers() -> list[int]:
    """This process's children that are probing processes."""
    pids = [int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()]
    return [pid for pid in pids if b"model_monitor.probe.prober" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_cases_a_stop_cannot_report_one_by_one_within_the_grace_are_reported_in_bulk(
    server: FakeOpenAI, start_monitor, tmp_path: Path
) -> None:
    """2,000 held cases and a grace of 0.2 s: reported one by one (0.3 ms each) they would take longer than the
    grace, so the rest go in bulk: each one to the results file, and to JUnit and the terminal as one failure that
    counts them."""
    held = [model(f"held{n}+hang", id=f"held{n}", timeout=60) for n in range(2000)]
    out = tmp_path / "results.json"
    run = start_monitor([endpoint(server.url, *held, max_concurrency=20)], f"--results-json={out}", "--stop-grace=0.2")
    wait_for_requests(server, 20)
    run.signal_and_wait(signal.SIGTERM, bound=STOP_GRACE_S + 10)
    assert run.process.returncode == 2, run.output
    cases = junit_cases(run.junit)
    (in_bulk,) = [case_id for case_id in cases if case_id.endswith(" cases reported in bulk")]
    bulk = int(in_bulk.split()[0])
    assert 0 < bulk < len(held) and len(cases) - 1 + bulk == len(held), "every case, one by one or in the bulk"
    assert cases[in_bulk]["junit"] == "failed"
    document = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(case["id"] for case in document["cases"]) == sorted(f"svc/held{n}" for n in range(len(held)))
    assert {case["class"] for case in document["cases"]} == {"interrupted"}
    assert f"; {bulk} cases were reported in bulk, not one by one, to end within the stop grace: " in run.output
