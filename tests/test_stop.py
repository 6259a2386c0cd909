"""Stopped from outside: SIGTERM, SIGINT, a second signal and the run deadline; and a timeline that is the requests'."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import (
    DEADLINE_S,
    HELD,
    STOP_GRACE_S,
    WORKERS,
    endpoint,
    junit_cases,
    model,
    wait_for_answers,
    wait_for_requests,
)


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
    """The signal comes while the first case waits for the prefetched probes (the drain): the two answered cases
    keep their verdicts, the two held ones fail as interrupted, every case has its run and its end ping, JUnit is
    written, and the run ends within the stop grace with pytest's exit code for an interrupted run."""
    with Receiver() as receiver:
        run = start_monitor([endpoint(server.url, *HELD)], f"--cronitor-url={receiver.url}/p/stopkey1234", *workers)
        wait_for_requests(server, len(HELD))
        wait_for_answers(server, 2)  # ok and bad answered, hang and slow held
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


@WORKERS
def test_pings_and_junit_carry_the_requests_own_times(server: FakeOpenAI, run_monitor, workers: list[str]) -> None:
    """The fast case comes first and waits for the slow one's probe; its pings and its JUnit time still say 0.2 s,
    and each stamp is when the server saw the request begin and end, whichever process sends it."""
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
        # A few ms apart on a quiet machine (README, Reliability); the bound leaves room for a loaded one.
        assert pings[(key, "run")] == pytest.approx(seen.received_at, abs=0.05), key
        assert pings[(key, end)] == pytest.approx(seen.finished_at, abs=0.05), key
    assert times["svc/fast"] < times["svc/slow"] - 0.5, "its own request, not the wait for the slow one"
    assert times["svc/slow"] >= 1.2
    durations = [line for line in run.result.outlines if "call" in line and "test_endpoint[" in line]
    assert "svc/slow" in durations[0], "--durations names the slow endpoint first"
