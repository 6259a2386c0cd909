"""The ways to check N cases, each run as its own process tree and measured the same way.

Every row yields, per case, the duration the client reported; the server's record of that same request (matched
by the case's unique model name) gives the truth, and their difference is the row's timing error.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import curl
from .procs import Measured, measure
from .suite import Suite
from .target import Target

ROOT = Path(__file__).resolve().parents[1]
PROPERTY = "model_monitor."
# A streamed case's phases: the client's metric for each (JUnit property, floor.json key), the server's record.
PHASES = {"headers": ("metric.ttfb_s", "headers_s"), "first token": ("metric.ttft_s", "first_event_s")}
# Our variables and the proxy variables are the user's, not the benchmark's: a child must not inherit them.
_DROP_ENV = ("MODEL_MONITOR_", "CRONITOR_", "HEALTHCHECKS_", "PYTEST_ADDOPTS")
_PROXY_ENV = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


@dataclass
class Row:
    """One way of checking the suite, as measured once."""

    key: str
    size: int
    wall_s: float | None = None
    peak_rss_bytes: int | None = None
    processes: int = 0
    passed: int = 0
    reported: dict[str, float] = field(default_factory=dict)  # case id -> client's duration
    truth: dict[str, float] = field(default_factory=dict)  # case id -> server's duration
    # streamed cases: phase -> case id -> seconds since send (client) or since receiving (server)
    reported_phases: dict[str, dict[str, float]] = field(default_factory=dict)
    truth_phases: dict[str, dict[str, float]] = field(default_factory=dict)
    requests: int = 0  # requests the server saw
    in_flight: int = 0  # most requests the server was answering at once
    in_flight_endpoint: int = 0  # the same, for the busiest endpoint
    load: str = ""
    note: str = ""
    skipped: str | None = None
    estimate_s: float | None = None
    returncode: int | None = None

    @property
    def errors(self) -> list[float]:
        return [self.reported[c] - self.truth[c] for c in self.reported if c in self.truth]

    def phase_errors(self) -> dict[str, list[float]]:
        """Per phase of the streamed cases (headers, first token, last byte): reported minus the server's."""
        out = {}
        for phase in PHASES:
            reported, truth = self.reported_phases.get(phase, {}), self.truth_phases.get(phase, {})
            out[phase] = [reported[c] - truth[c] for c in reported if c in truth]
        streamed = self.truth_phases.get("headers", {})
        both = [c for c in streamed if c in self.reported and c in self.truth]
        out["last byte"] = [self.reported[c] - self.truth[c] for c in both]
        return out


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_DROP_ENV) and k.lower() not in _PROXY_ENV}


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def checks_command(endpoints: Path, *extra: str) -> list[str]:
    """The monitor on an endpoints file, as a checkout runs it."""
    return [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "checks"),
        f"--endpoints={endpoints}",
        "-p",
        "no:cacheprovider",
        *extra,
    ]


def pytest_command(suite: Suite, junit: Path | None, *extra: str) -> list[str]:
    command = checks_command(suite.endpoints_file, "-q")
    if junit is not None:
        command.append(f"--junitxml={junit}")
    return command + list(extra)


def junit_durations(path: Path, phases: dict[str, dict[str, float]] | None = None) -> tuple[dict[str, float], int]:
    """case id -> reported duration_s, and how many cases passed, from the monitor's JUnit XML; each streamed
    case's phases into `phases`."""
    durations, passed = {}, 0
    if not path.exists():
        return durations, passed
    for testcase in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name", "").removeprefix(PROPERTY): p.get("value") for p in testcase.iter("property")}
        case = props.get("case")
        if case is None:
            continue
        if props.get("duration_s") not in (None, ""):
            durations[case] = float(props["duration_s"])
        for phase, (metric, _) in PHASES.items():
            if phases is not None and props.get(metric) not in (None, ""):
                phases.setdefault(phase, {})[case] = float(props[metric])
        passed += props.get("verdict") == "pass"
    return durations, passed


def server_truth(target: Target, suite: Suite, row: Row) -> None:
    """Attach the server's duration of each case's request; note any case that sent other than one request."""
    by_model: dict[str, list[float]] = {}
    phases_of: dict[str, dict[str, float]] = {}
    records = target.records()
    for record in records:
        if record.model is not None and record.duration is not None:
            by_model.setdefault(record.model, []).append(record.duration)
            marks = {"headers": record.headers_s, "first token": record.first_event_s}
            phases_of[record.model] = {phase: at for phase, at in marks.items() if at is not None}
    row.requests = len(records)
    endpoint_of = {r.model: r.endpoint for r in suite.requests}
    spans = [(r.received, r.received + r.duration, endpoint_of.get(r.model or "")) for r in records if r.duration]
    row.in_flight = peak_overlap([(start, end) for start, end, _ in spans])
    row.in_flight_endpoint = max(
        (peak_overlap([(start, end) for start, end, e in spans if e == name]) for name in set(endpoint_of.values())),
        default=0,
    )
    silent = extra = 0
    for request in suite.requests:
        durations = by_model.get(request.model, [])
        if durations:
            row.truth[request.case] = durations[-1]  # the attempt whose duration was reported
            for phase, at in phases_of.get(request.model, {}).items():
                row.truth_phases.setdefault(phase, {})[request.case] = at
        silent += not durations
        extra += max(0, len(durations) - 1)
    if silent or extra:
        row.note = "; ".join(
            filter(
                None,
                (row.note, silent and f"{silent} cases sent no request", extra and f"{extra} extra requests (retries)"),
            )
        )


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (an end at the same instant as a start closes first)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def _run(
    key: str, suite: Suite, target: Target, work: Path, command: list[str], collect: Callable[[Row, Measured], None]
) -> Row:
    row = Row(key, suite.size, load=loadavg())
    target.clear()
    measured = measure(command, cwd=ROOT, logs=work / f"{key}", env=child_env())
    row.wall_s, row.peak_rss_bytes, row.processes = measured.wall_s, measured.peak_rss_bytes, measured.peak_processes
    row.returncode = measured.returncode
    collect(row, measured)
    server_truth(target, suite, row)
    return row


def monitor(key: str, suite: Suite, target: Target, work: Path, *extra: str) -> Row:
    """Our run: the monitor exactly as a user runs it, with JUnit XML for the reported durations."""
    junit = work / f"{key}.xml"
    junit.unlink(missing_ok=True)

    def collect(row: Row, measured: Measured) -> None:
        row.reported, row.passed = junit_durations(junit, row.reported_phases)

    return _run(key, suite, target, work, pytest_command(suite, junit, *extra), collect)


def floor(suite: Suite, target: Target, work: Path, max_concurrency: int) -> Row:
    out = work / "floor.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "bench.floor",
        str(suite.manifest_file),
        str(out),
        "--max-concurrency",
        str(max_concurrency),
    ]

    def collect(row: Row, measured: Measured) -> None:
        if out.exists():
            results = json.loads(out.read_text(encoding="utf-8"))
            row.reported = {r["case"]: r["duration"] for r in results}
            row.passed = sum(bool(r["ok"]) for r in results)
            for phase, (_, key) in PHASES.items():
                row.reported_phases[phase] = {r["case"]: r[key] for r in results if r.get(key) is not None}

    return _run("floor", suite, target, work, command, collect)


def curl_pods(suite: Suite, target: Target, work: Path) -> Row:
    launcher = curl.write_launcher(suite.requests, work / "curl")

    def collect(row: Row, measured: Measured) -> None:
        parsed = curl.parse(measured.stdout)
        row.reported = {case: duration for case, (_, duration) in parsed.items()}
        row.passed = sum(200 <= status < 300 for status, _ in parsed.values())

    return _run("curl", suite, target, work, ["sh", str(launcher)], collect)


def collect_only(suite: Suite, work: Path) -> Measured:
    """`--collect-only`: loading and validating the file and making the cases, no request."""
    return measure(pytest_command(suite, None, "--collect-only"), cwd=ROOT, logs=work / "collect", env=child_env())


def shards(suite: Suite, target: Target, work: Path, count: int) -> Row:
    """`count` runs of ours, `--shard i/count`, started together as an Indexed Job starts its pods.

    One `sh` starts them all and waits for every one, so the row's wall time is the slowest shard's and its peak
    RSS is the whole group's, sampled at once.
    """
    junits = [work / f"shard{i}.xml" for i in range(count)]
    starts = []
    for i, junit in enumerate(junits):
        junit.unlink(missing_ok=True)
        command = pytest_command(suite, junit, "--shard", f"{i}/{count}")
        starts.append(f"{shlex.join(command)} > {shlex.quote(str(work / f'shard{i}.log'))} 2>&1 & p{i}=$!")
    # The group fails when any shard fails, as the Job does.
    waits = " ".join(f"wait $p{i} || rc=1;" for i in range(count))
    script = "\n".join((*starts, f"rc=0; {waits} exit $rc"))

    def collect(row: Row, measured: Measured) -> None:
        for junit in junits:
            reported, passed = junit_durations(junit, row.reported_phases)
            row.reported.update(reported)
            row.passed += passed

    return _run("shards", suite, target, work, ["sh", "-c", script], collect)
