"""What the project's tests share: builders for endpoints files, reading a run's JUnit XML, bounded waits, settings
resolved without pytest's config, and a loopback OTLP receiver."""

from __future__ import annotations

import gzip
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from model_monitor import config, settings
from model_monitor.case import Case
from model_monitor.outcome import Outcome
from model_monitor.probe.engine import Engine
from model_monitor.redact import Redactor
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "checks"
# A test that runs the monitor once alone and once under xdist with two workers.
WORKERS = pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["single", "xdist"])


def endpoint(url: str, *models: dict[str, Any], name: str = "svc", **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "models": list(models), **extra}


def model(name: str, type: str = "chat", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type, **extra}


def mounted(folder: Path, mount: str) -> tuple[str, ...]:
    """A command prefix that runs the monitor in a mount namespace of its own, after the shell command `mount`
    (which finds `folder` in "$0") has changed what is mounted there: a read-only bind, a tiny tmpfs."""
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mount} && exec "$@"', str(folder))


def junit_cases(path: Path) -> dict[str, dict[str, str]]:
    """case id -> its model_monitor properties (and the JUnit verdict under 'junit')."""
    cases: dict[str, dict[str, str]] = {}
    for testcase in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in testcase.iter("property")}
        name = testcase.get("name", "")
        case_id = props.get("model_monitor.case") or name[name.find("[") + 1 : -1]
        failed = testcase.find("failure") is not None or testcase.find("error") is not None
        props["junit"] = "failed" if failed else "passed"
        cases[case_id] = props
    return cases


def wait_for_requests(server: FakeOpenAI, count: int, within: float = 30.0) -> None:
    """Until the server has seen `count` requests; fails the test after `within` seconds rather than hang."""
    deadline = time.monotonic() + within
    while len(server.requests) < count:
        assert time.monotonic() < deadline, f"{len(server.requests)} of {count} requests within {within:g} s"
        time.sleep(0.05)


def wait_for_verdicts(receiver: Receiver, *monitors: str, within: float = 30.0) -> None:
    """Until the monitor has reported these cases: their end pings (complete or fail) have reached the receiver.

    What a server has sent, the monitor may not have read yet; a case's end ping goes out only once it is judged."""
    deadline = time.monotonic() + within
    while not set(monitors) <= {p.path.rsplit("/", 1)[1] for p in list(receiver.pings) if p.query["state"][0] != "run"}:
        assert time.monotonic() < deadline, f"no verdict for all of {', '.join(monitors)} within {within:g} s"
        time.sleep(0.05)


STOP_GRACE_S = 10.0  # the default --stop-grace: what a stopped run may take to report
# The run deadline of the deadline test: its healthy cases must be judged before it, also when xdist's workers take
# seconds to start on a loaded machine (6 s was seen to pass before they had sent a request).
DEADLINE_S = 12.0
# Two cases answer at once, two are held by the server far longer than the run lasts.
HELD = [
    model("ok"),
    model("bad+status=500", id="bad"),
    model("held+hang", id="hang", timeout=60),
    model("held+delay=30", id="slow", timeout=60),
]


def cases_of(
    folder: Path, endpoints: list[dict[str, Any]], environ: dict[str, str] | None = None
) -> tuple[tuple[Case, ...], Redactor]:
    """The cases of an endpoints file written in `folder`, loaded and resolved as a run does, and their redactor."""
    path = folder / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": endpoints}, sort_keys=False), encoding="utf-8")
    suite = config.load(path, environ or {})
    redact = Redactor()
    return suite.resolve(suite.cases, redact, environ or {}), redact


def probe_endpoints(
    folder: Path, endpoints: list[dict[str, Any]], environ: dict[str, str] | None = None
) -> dict[str, Outcome]:
    """The probe core in this process, without pytest's plugin: the cases of an endpoints file, loaded, resolved
    and probed by the engine as a run does, each case's outcome by its id."""
    cases, redact = cases_of(folder, endpoints, environ)
    engine = Engine(redact)
    try:
        engine.start(cases)
        return {case.id: engine.outcome(case) for case in cases}
    finally:
        engine.close()


def settings_from(environ: dict[str, str], **flags: str) -> settings.Settings:
    """The settings a run resolves from `environ` and its flags (by dest: cronitor_url=...), without pytest's config."""
    options = SimpleNamespace(only=[], **flags)
    return settings.resolve(SimpleNamespace(option=options, getini=lambda name: ""), environ)


class OtlpReceiver(ThreadingHTTPServer):
    """A loopback OTLP/HTTP metrics receiver: every ExportMetricsServiceRequest it was sent, decoded."""

    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """metric name -> (attributes, histogram point) of every point received."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        for request in self.requests:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        for point in metric.histogram.data_points:
                            attrs = {a.key: _value(a.value) for a in point.attributes}
                            found.setdefault(metric.name, []).append((attrs, point))
        return found


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value"))


class _OtlpHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/metrics":
            self.server.requests.append(ExportMetricsServiceRequest.FromString(body))
        self.send_response(200 if self.path == "/v1/metrics" else 404)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass
