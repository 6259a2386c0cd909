"""The stop row: N cases that a server holds (it never answers; 50 endpoints discover N/50 models each), SIGTERM
once the requests are under way, and the time from the signal to the exit, against --stop-grace; with the pings a
Cronitor stand-in received meanwhile."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from model_monitor.case import RUN_MAX_CONCURRENCY
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .rows import ROOT, checks_command, child_env, loadavg

SIZES = (5000, 50000)
ENDPOINTS = 50
STOP_GRACE_S = 10.0  # the default, and what the chart's terminationGracePeriodSeconds (15 s) is set above
HELD_WAIT_S = 600.0  # at most this long for the requests to be under way before the signal


@dataclass(frozen=True)
class StopRow:
    size: int
    signal_to_exit_s: float | None  # None: still running after the grace and a margin, killed
    returncode: int | None
    held: int  # requests the server held when the signal came
    pings: int  # pings the Cronitor stand-in received
    reported: int  # cases with a JUnit entry of their own
    in_bulk: int  # cases the JUnit entry of a bulk report counts
    load: str


def run(work: Path, sizes: tuple[int, ...] = SIZES) -> list[StopRow]:
    """Each size against a FakeOpenAI and a Receiver in this process (they only wait while the monitor runs)."""
    work.mkdir(parents=True, exist_ok=True)
    with FakeOpenAI() as server, Receiver() as receiver:
        return [_one(work / f"n{size}", size, server, receiver) for size in sizes]


def _one(work: Path, size: int, server: FakeOpenAI, receiver: Receiver) -> StopRow:
    work.mkdir(parents=True, exist_ok=True)
    server.clear()
    receiver.clear()
    # Discovered, as a gateway's models are: a file listing 50,000 models passes the loader's YAML node cap.
    server.models = tuple(f"held{n}+hang" for n in range(-(-size // ENDPOINTS)))
    endpoints = [{"name": f"e{e}", "url": server.url, "discover": True} for e in range(ENDPOINTS)]
    path, junit = work / "endpoints.yaml", work / "junit.xml"
    path.write_text(yaml.safe_dump({"defaults": {"timeout": 600}, "endpoints": endpoints}), encoding="utf-8")
    command = checks_command(
        path,
        f"--junitxml={junit}",
        "-q",
        f"--stop-grace={STOP_GRACE_S:g}",
        f"--cronitor-url={receiver.url}/p/benchstop1234",
    )
    load = loadavg()
    with (work / "out.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
        held = _wait_held(server, min(size, RUN_MAX_CONCURRENCY), process)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S * 10)
            took: float | None = time.monotonic() - sent
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            took = None
    text = junit.read_text(encoding="utf-8") if junit.exists() else ""
    bulk = [int(n) for n in re.findall(r"\[(\d+) cases reported in bulk\]", text)]
    own = text.count("<testcase ") - len(bulk)
    return StopRow(size, took, process.returncode, held, len(receiver.pings), own, sum(bulk), load)


def _wait_held(server: FakeOpenAI, count: int, process: subprocess.Popen[bytes]) -> int:
    """Until the server holds `count` requests (the cap's worth), the monitor exits, or HELD_WAIT_S pass."""
    deadline = time.monotonic() + HELD_WAIT_S
    while _probes(server) < count and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the first case is waiting for the others
    return _probes(server)


def _probes(server: FakeOpenAI) -> int:
    """Requests other than the listings."""
    return sum(r.path != "/v1/models" for r in list(server.requests))


def describe(rows: list[StopRow]) -> list[str]:
    lines = [
        f"stop: N cases held by the server ({ENDPOINTS} endpoints, global cap {RUN_MAX_CONCURRENCY} in flight), "
        f"SIGTERM once they are under way, --stop-grace {STOP_GRACE_S:g} s, pings to a local Cronitor stand-in"
    ]
    for row in rows:
        took = "still running, killed" if row.signal_to_exit_s is None else f"{row.signal_to_exit_s:.2f} s"
        lines.append(
            f"  N={row.size}: signal to exit {took} (exit {row.returncode}), {row.reported}/{row.size} cases in "
            f"JUnit one by one and {row.in_bulk} in its bulk entry, {row.pings} pings received, {row.held} requests "
            f"held at the signal (load {row.load})"
        )
    return lines
