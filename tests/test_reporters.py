"""The fast tier for the reporters: each one built from settings as a run builds it and driven in this process
through the Reporter protocol (ended, flush, failed, summary_lines) against loopback servers started here; the
terminal table, the results document and the step summary from pytest reports made here. No subprocess, no
network beyond 127.0.0.1, no sleep: flush() returning is the moment everything it sent has arrived."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import jsonschema
import pytest
from _pytest.junitxml import LogXML, _NodeReporter, xml_key
from prometheus_client.parser import text_string_to_metric_families

from model_monitor.case import Case, Endpoint
from model_monitor.errors import ErrorClass
from model_monitor.outcome import Attempt, Outcome
from model_monitor.probe.loop import BackgroundLoop
from model_monitor.redact import Redactor
from model_monitor.reporters import Destinations, Fanout, Reporter, build, junit, results, step_summary, terminal
from model_monitor.reporters.paths import REPORT_NOT_WRITTEN, ReportPaths
from model_monitor.reporters.verdicts import CaseIndex, identity_properties
from model_monitor.types import TYPES
from testbed.receiver import Receiver

from .helpers import OtlpReceiver, settings_from
from .servers import free_port

KEY = "cronitorkey-fast-0123"
HC_KEY = "hcpingkey-fast-4567"
USERINFO_PASSWORD = "userinfo-fast-89ab"
PUSH_PASSWORD = "pushpassword-fast-cdef"
OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
STARTED = 1_700_000_000.0  # Unix time the first case's request started
SVC = Endpoint("svc", "http://127.0.0.1:9/v1")


def a_case(model_id: str, type_: str = "chat", **options: Any) -> Case:
    model_type = TYPES[type_]
    return Case(SVC, model_id, model_id, model_type, f"svc-{model_id}", options=model_type.options(**options))


def failed_once(reason: str, error_class: str, status_code: int, at: float) -> Outcome:
    """A failure after one attempt of 0.05 s, sent `at` seconds after the first case's."""
    return Outcome(
        False,
        reason,
        error_class=error_class,
        duration_s=0.05,
        status_code=status_code,
        attempts=(Attempt(error_class, status_code, 0.05),),
        started_at=STARTED + at,
        ended_at=STARTED + at + 0.05,
    )


# A pass (a stream with its metrics), a failure, and a pass after a retry (degraded), each with its own timeline.
PASS_CASE, FAIL_CASE, DEGRADED_CASE = a_case("ok", stream=True), a_case("bad"), a_case("flaky", "completion")
PASSED = Outcome(
    True,
    "replied 4 chars (finish_reason=stop)",
    duration_s=0.25,
    status_code=200,
    attempts=(Attempt(None, 200, 0.25),),
    metrics={"ttft_s": 0.1, "tokens_per_s": 50.0, "prompt_tokens": 12.0, "completion_tokens": 30.0},
    started_at=STARTED,
    ended_at=STARTED + 0.25,
)
FAILED = failed_once(
    'server_error: HTTP 500 from POST /v1/chat/completions after 0.050 s: {"error": "a | b"}', "server_error", 500, at=1
)
DEGRADED = Outcome(
    True,
    "passed after 1 retry: 503; replied 2 chars",
    duration_s=1.5,
    status_code=200,
    attempts=(Attempt("server_error", 503, 0.1), Attempt(None, 200, 1.4)),
    metrics={"prompt_tokens": 5.0, "completion_tokens": 60.0, "reasoning_tokens": 40.0},
    started_at=STARTED + 2,
    ended_at=STARTED + 3.5,
    degraded=("1 retry: 503",),
)
VERDICTS = [(PASS_CASE, PASSED), (FAIL_CASE, FAILED), (DEGRADED_CASE, DEGRADED)]
USAGE = (
    "this run used 107 tokens: 17 prompt + 90 completion, of which 40 reasoning (OpenAI counts reasoning tokens in "
    "the completion); 1 case(s) reported no usage"
)


@pytest.fixture
def reporters_from(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], list[Reporter]]]:
    """The reporters a run builds from these environment variables, on a background loop of the test's own."""
    for name in OTLP_VARIABLES:  # Destinations reads them from the process's environment
        monkeypatch.delenv(name, raising=False)
    loop = BackgroundLoop()

    def make(environ: dict[str, str]) -> list[Reporter]:
        for name, value in environ.items():
            if name.startswith("OTEL_"):
                monkeypatch.setenv(name, value)
        s = settings_from(environ)
        where = Destinations.from_settings(s)
        return build(where, s, lambda: loop, Redactor((*s.secrets, *where.secrets)), [c for c, _ in VERDICTS])

    yield make
    loop.close()


def end_all(reporter: Reporter, budget: float) -> None:
    """A run's life as the plugin drives it: each verdict, then the bounded flush."""
    for case, outcome in VERDICTS:
        reporter.ended(case, outcome)
    reporter.flush(budget)


def report_of(
    case: Case, outcome: Outcome | None, when: str = "call", longrepr: str | None = None
) -> pytest.TestReport:
    """The report pytest makes of a case's phase: its identity (set at collection) and, from its call, its outcome."""
    failed = longrepr is not None or (outcome is not None and not outcome.passed)
    return pytest.TestReport(
        f"checks/test_models.py::test_model[{case.id}]",
        ("checks/test_models.py", 0, f"test_model[{case.id}]"),
        {},
        "failed" if failed else "passed",
        longrepr if longrepr is not None else outcome.reason if failed and outcome else None,
        when,
        user_properties=[*identity_properties(case), *(outcome.properties() if outcome else [])],
    )


FOUND = [(case, outcome, report_of(case, outcome)) for case, outcome in VERDICTS]


@dataclass
class Screen:
    """pytest's terminal reporter as summaries use it: every line with its markup."""

    lines: list[tuple[str, dict[str, bool]]] = field(default_factory=list)

    def section(self, title: str, **markup: bool) -> None:
        self.lines.append((f"== {title} ==", markup))

    def write_line(self, line: str, **markup: bool) -> None:
        self.lines.append((line, markup))


# --- heartbeats: Cronitor and Healthchecks ---

# monitor key -> (Cronitor's end state, Healthchecks' end path tail, the end's message)
ENDS = {
    "svc-ok": ("complete", "", "ok in 0.250 s: replied 4 chars (finish_reason=stop)"),
    "svc-bad": ("fail", "/fail", FAILED.reason),
    "svc-flaky": ("complete", "", "degraded in 1.500 s: passed after 1 retry: 503; replied 2 chars"),
}


def both_targets(receiver: Receiver) -> dict[str, str]:
    return {
        "CRONITOR_URL": f"{receiver.url}/p/{KEY}",
        "HEALTHCHECKS_URL": f"{receiver.url}/ping/{HC_KEY}",
        "MODEL_MONITOR_TELEMETRY_RATE": "1000",
    }


def test_heartbeats_send_each_verdict_as_a_run_and_an_end_stamped_with_its_request(
    receiver: Receiver, reporters_from: Callable[[dict[str, str]], list[Reporter]]
) -> None:
    (beats,) = reporters_from(both_targets(receiver))
    end_all(beats, budget=10)
    assert not beats.failed
    assert beats.summary_lines() == ["telemetry (cronitor, healthchecks): 12 pings sent"]
    for case, outcome in VERDICTS:
        state, tail, message = ENDS[case.monitor]
        start, end = (p.query for p in receiver.pings_for(f"/p/{KEY}/{case.monitor}"))
        assert (start["state"], start["stamp"]) == (["run"], [f"{outcome.started_at:.3f}"])
        assert (end["state"], end["status_code"]) == ([state], ["0" if outcome.passed else "1"])
        assert (end["message"], end["stamp"], end["series"]) == (
            [message],
            [f"{outcome.ended_at:.3f}"],
            start["series"],
        )
        metrics = [f"{name}:{value:.3f}" for name, value in outcome.metrics.items()]
        assert end["metric"] == [f"duration:{outcome.duration_s:.3f}", *metrics]
        (hc_start,) = receiver.pings_for(f"/ping/{HC_KEY}/{case.monitor}/start")
        (hc_end,) = receiver.pings_for(f"/ping/{HC_KEY}/{case.monitor}{tail}")
        assert (hc_end.method, hc_end.body.decode()) == ("POST", message)
        assert hc_end.query["rid"] == hc_start.query["rid"]


@pytest.mark.parametrize(
    ("mode", "said"),
    [("hang", "not delivered within the 0.5 s deadline (x12)"), ("status=404", "404 from 127.0.0.1 (x12)")],
)
def test_undelivered_heartbeats_fail_and_are_named_without_a_key(
    reporters_from: Callable[[dict[str, str]], list[Reporter]], mode: str, said: str
) -> None:
    """A hanging target is cut off by the budget, a refusing one is not retried; the summary names the targets and
    the cause, never the keys in their URLs nor the userinfo's password."""
    with Receiver(mode) as down:
        environ = both_targets(down)
        environ["CRONITOR_URL"] = environ["CRONITOR_URL"].replace("http://", f"http://monitor:{USERINFO_PASSWORD}@")
        (beats,) = reporters_from(environ)
        end_all(beats, budget=0.5 if mode == "hang" else 10)
    assert beats.failed
    lines = beats.summary_lines()
    assert lines == [f"telemetry (cronitor, healthchecks): 12 of 12 pings failed: {said}"]
    assert [secret for secret in (KEY, HC_KEY, USERINFO_PASSWORD) if secret in lines[0]] == []


def test_a_dry_run_prints_every_ping_with_its_key_hidden(
    reporters_from: Callable[[dict[str, str]], list[Reporter]],
) -> None:
    (beats,) = reporters_from({"CRONITOR_URL": f"http://127.0.0.1:9/p/{KEY}", "MODEL_MONITOR_TELEMETRY_DRY_RUN": "1"})
    end_all(beats, budget=10)
    lines = beats.summary_lines()
    assert lines[0] == "telemetry (dry run, cronitor): 6 pings not sent:"
    assert [line.split("?")[0] for line in lines[1:3]] == ["  GET http://127.0.0.1:9/p/***/svc-ok"] * 2
    assert not beats.failed and all(KEY not in line for line in lines)


def test_a_cronitor_api_key_provisions_the_selected_cases_first(
    receiver: Receiver, reporters_from: Callable[[dict[str, str]], list[Reporter]]
) -> None:
    api_key = "cronitorapikey-fast-321"
    (beats,) = reporters_from(
        {
            "CRONITOR_URL": f"{receiver.url}/p/{KEY}/grp",
            "CRONITOR_API_KEY": api_key,
            "CRONITOR_API_URL": f"{receiver.url}/api",
        }
    )
    beats.flush(10)
    (put,) = receiver.pings_for("/api/monitors")
    assert put.headers["authorization"] == "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
    monitors = json.loads(put.body)["monitors"]
    assert [(m["key"], m["name"], m["group"]) for m in monitors] == [
        ("grp-svc-ok", "svc/ok", "grp"),
        ("grp-svc-bad", "svc/bad", "grp"),
        ("grp-svc-flaky", "svc/flaky", "grp"),
    ]
    assert beats.summary_lines() == ["telemetry (cronitor): 1 pings sent"]


# --- Pushgateway ---


def series_of(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value of an exposition body."""
    families = text_string_to_metric_families(body.decode())
    return {(s.name, frozenset(s.labels.items())): s.value for family in families for s in family.samples}


def labels(case: Case, **extra: str) -> frozenset[tuple[str, str]]:
    return frozenset({"endpoint": "svc", "model": case.model, "type": case.type.name, "case": case.id, **extra}.items())


def test_the_pushgateway_gets_one_put_of_every_series_with_basic_auth(
    receiver: Receiver, reporters_from: Callable[[dict[str, str]], list[Reporter]]
) -> None:
    (pusher,) = reporters_from(
        {
            "MODEL_MONITOR_PUSHGATEWAY_URL": f"{receiver.url}/gw",
            "MODEL_MONITOR_PUSHGATEWAY_USERNAME": "pushuser",
            "MODEL_MONITOR_PUSHGATEWAY_PASSWORD": PUSH_PASSWORD,
            "MODEL_MONITOR_METRICS_INSTANCE": "ci",
        }
    )
    end_all(pusher, budget=10)
    (push,) = receiver.pings
    assert (push.method, push.path) == ("PUT", "/gw/metrics/job/model-monitor/instance/ci")
    assert push.headers["authorization"] == "Basic " + base64.b64encode(f"pushuser:{PUSH_PASSWORD}".encode()).decode()
    series = series_of(push.body)
    for case, outcome in VERDICTS:
        assert series[("model_monitor_probe_success", labels(case))] == float(outcome.passed)
        assert series[("model_monitor_probe_degraded", labels(case))] == float(bool(outcome.degraded))
        assert series[("model_monitor_probe_duration_seconds", labels(case))] == outcome.duration_s
        assert series[("model_monitor_probe_attempts", labels(case))] == len(outcome.attempts)
    errors = {(name, found) for name, found in series if name == "model_monitor_probe_error"}
    assert errors == {("model_monitor_probe_error", labels(FAIL_CASE, **{"class": "server_error"}))}
    assert series[("model_monitor_probe_ttft_seconds", labels(PASS_CASE))] == 0.1
    assert ("model_monitor_probe_ttft_seconds", labels(FAIL_CASE)) not in series
    assert series[("model_monitor_probe_tokens", labels(DEGRADED_CASE, kind="reasoning"))] == 40
    assert not pusher.failed
    lines = pusher.summary_lines()
    assert lines == [f"metrics: 3 cases pushed to {receiver.url}/gw/metrics/job/model-monitor/instance/ci"]
    assert PUSH_PASSWORD not in lines[0]


def test_a_pushgateway_500_is_retried_then_named_without_the_password(
    reporters_from: Callable[[dict[str, str]], list[Reporter]],
) -> None:
    with Receiver("status=500") as down:
        url = down.url.replace("http://", f"http://pushuser:{PUSH_PASSWORD}@") + "/gw"
        (pusher,) = reporters_from({"MODEL_MONITOR_PUSHGATEWAY_URL": url})
        end_all(pusher, budget=10)
        pushes = [(p.method, p.headers["authorization"]) for p in down.pings]
    assert pusher.failed
    basic = "Basic " + base64.b64encode(f"pushuser:{PUSH_PASSWORD}".encode()).decode()
    assert pushes == [("PUT", basic)] * 3, "three attempts, the userinfo sent as Basic auth"
    lines = pusher.summary_lines()
    where = f"{down.url}/gw/metrics/job/model-monitor/instance/default"
    assert lines == [f"metrics: push of 3 cases to {where} failed: 500 from 127.0.0.1"]
    assert PUSH_PASSWORD not in lines[0] and "pushuser" not in lines[0]


def test_the_summary_names_the_group_the_push_went_to_when_the_instance_has_a_slash(
    receiver: Receiver, reporters_from: Callable[[dict[str, str]], list[Reporter]]
) -> None:
    (pusher,) = reporters_from(
        {"MODEL_MONITOR_PUSHGATEWAY_URL": receiver.url, "MODEL_MONITOR_METRICS_INSTANCE": "release-a/shard-0"}
    )
    end_all(pusher, budget=10)
    (push,) = receiver.pings
    assert pusher.summary_lines() == [f"metrics: 3 cases pushed to {receiver.url}{push.path}"]


# --- OTLP ---


def test_otlp_exports_each_verdict_with_the_genai_attributes(
    otlp_receiver: OtlpReceiver, reporters_from: Callable[[dict[str, str]], list[Reporter]]
) -> None:
    (otlp,) = reporters_from({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url})
    end_all(otlp, budget=10)
    assert not otlp.failed
    assert otlp.summary_lines() == ["otlp (OTEL_EXPORTER_OTLP_ENDPOINT): metrics of 3 cases exported"]
    points = otlp_receiver.points()
    durations = {
        attrs["gen_ai.request.model"]: (attrs, point) for attrs, point in points["gen_ai.client.inference.duration"]
    }
    common = {"server.address": "127.0.0.1", "server.port": 9, "model_monitor.endpoint": "svc"}
    assert durations["ok"][0] == {"gen_ai.operation.name": "chat", "gen_ai.request.model": "ok", **common}
    assert durations["bad"][0] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "bad",
        "error.type": "server_error",
        **common,
    }
    assert durations["flaky"][0]["gen_ai.operation.name"] == "text_completion"
    assert {model: (point.count, point.sum) for model, (_, point) in durations.items()} == {
        "ok": (1, 0.25),
        "bad": (1, 0.05),
        "flaky": (1, 1.5),
    }
    ((ttfc_attrs, ttfc),) = points["gen_ai.client.inference.time_to_first_chunk"]
    assert (ttfc_attrs["gen_ai.request.model"], ttfc.sum) == ("ok", 0.1), "only the stream has a first chunk"
    usage = {(a["gen_ai.request.model"], a["gen_ai.token.type"]): p.sum for a, p in points["gen_ai.client.token.usage"]}
    assert usage == {("ok", "input"): 12, ("ok", "output"): 30, ("flaky", "input"): 5, ("flaky", "output"): 60}


def test_an_otlp_endpoint_that_is_down_fails_and_is_named(
    reporters_from: Callable[[dict[str, str]], list[Reporter]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2")
    (otlp,) = reporters_from({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/metrics"})
    end_all(otlp, budget=5)
    assert otlp.failed
    assert otlp.summary_lines() == [
        "otlp (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT): metrics of 3 cases failed: "
        "the OTLP endpoint refused them or could not be reached"
    ]


# --- the plugin's fan-out ---


@dataclass
class Recorder:
    """A reporter that keeps what it is told."""

    flush_last: ClassVar[bool] = False
    told: list[tuple[str, Outcome]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    failed: bool = False

    def ended(self, case: Case, outcome: Outcome) -> None:
        self.told.append((case.id, outcome))

    def flush(self, budget: float) -> None:
        pass

    def summary_lines(self) -> list[str]:
        return self.lines


def test_the_fanout_tells_every_reporter_each_verdict_once() -> None:
    """A call's report is a verdict, so is a failed setup; a passed setup, a teardown and another item are not."""
    first, second = Recorder(), Recorder()
    fanout = Fanout([first, second], CaseIndex({case.id: case for case, _ in VERDICTS}))
    stranger = a_case("not-in-the-file")
    for report in [
        report_of(PASS_CASE, None, "setup"),
        report_of(PASS_CASE, PASSED),
        report_of(PASS_CASE, None, "teardown"),
        report_of(FAIL_CASE, None, "setup", longrepr="E   RuntimeError: fixture broke"),
        report_of(stranger, PASSED),
    ]:
        fanout.pytest_runtest_logreport(report)
    assert first.told == second.told
    assert [case_id for case_id, _ in first.told] == ["svc/ok", "svc/bad"]
    assert first.told[0][1] == PASSED, "the outcome travels whole through the report's properties"
    assert (first.told[1][1].passed, first.told[1][1].reason) == (False, "error: E   RuntimeError: fixture broke")


# --- the terminal summary ---


def test_the_table_has_a_row_per_case_in_aligned_columns() -> None:
    rows = terminal.rows(FOUND)
    assert rows == [
        terminal.Row("svc/ok", "chat", "PASS", "0.250s", "0.100s", "50.0", "12+30", PASSED.reason),
        terminal.Row("svc/bad", "chat", "FAIL", "0.050s", "-", "-", "-", FAILED.reason),
        terminal.Row("svc/flaky", "completion", "DEGRADED", "1.500s", "-", "-", "5+60 (40 r)", DEGRADED.reason),
    ]
    lines = terminal.table(rows)
    assert re.split(r" {2,}", lines[0]) == ["case", "type", "verdict", "duration", "ttft", "tok/s", "tokens", "reason"]
    assert re.split(r" {2,}", lines[3]) == [
        "svc/flaky",
        "completion",
        "DEGRADED",
        "1.500s",
        "-",
        "-",
        "5+60 (40 r)",
        DEGRADED.reason,
    ]
    assert {line.index(row.reason) for line, row in zip(lines[1:], rows, strict=True)} == {lines[0].index("reason")}


def test_a_long_reason_is_cut_in_the_table_and_the_usage_line_adds_up() -> None:
    long = Outcome(False, "timeout: " + "x" * 300, error_class="timeout")
    (row,) = terminal.rows([(FAIL_CASE, long, report_of(FAIL_CASE, long))])
    assert row.reason == long.reason[:119] + "…"
    assert terminal.usage_line([PASSED, FAILED, DEGRADED]) == USAGE
    assert terminal.usage_line([FAILED]) is None


def test_the_summary_draws_the_table_the_stop_and_each_reporters_lines() -> None:
    screen = Screen()
    healthy, broken = Recorder(lines=["metrics: 3 cases pushed"]), Recorder(lines=["otlp: failed"], failed=True)
    stopped = (ErrorClass.TIMEOUT, "the run deadline of 3 s passed")
    terminal.summary(screen, FOUND, stopped, [healthy, broken], (None, 0))
    said = [line for line, _ in screen.lines]
    assert said[0] == "== model-monitor summary =="
    assert said[1:5] == terminal.table(terminal.rows(FOUND))
    assert said[5:] == [
        USAGE,
        "model-monitor: the run deadline of 3 s passed: the cases not judged by then failed as timeout, the others "
        "kept their verdicts",
        "metrics: 3 cases pushed",
        "otlp: failed",
    ]
    markup = [m for _, m in screen.lines[6:]]
    assert markup == [{"red": True, "bold": True}, {"yellow": False, "bold": False}, {"yellow": True, "bold": True}]


# --- the results document and the step summary ---

VALIDATOR = jsonschema.Draft202012Validator(json.loads(results.SCHEMA_PATH.read_text(encoding="utf-8")))
# A server's words with a newline, a | and HTML in them, in a case whose id holds a | too.
ODD_CASE = a_case("a|b")
ODD = failed_once("bad_response: HTTP 200 with <html>\nSign in | here", "bad_response", 200, at=4)
KILLED_CASE, LEFT_OUT = a_case("killed"), a_case("left-out")


def results_for(
    tmp_path: Path, paths: ReportPaths, stopped: tuple[ErrorClass, str] | None, exits: int = 1
) -> results.Results:
    """The results plugin after a run of five cases (one killed by pytest-timeout) and one deselected, as pytest's
    hooks feed it: collection, then each case's setup, call and teardown reports; written at the end of a run that
    exits 1, which it turns into `exits`."""
    ran = [*VERDICTS, (ODD_CASE, ODD)]
    cases = [case for case, _ in ran] + [KILLED_CASE, LEFT_OUT]
    config = SimpleNamespace(option=SimpleNamespace(only=[], keyword="not left-out", markexpr=""))
    suite = SimpleNamespace(cases=cases, path=tmp_path / "endpoints.yaml")
    stopper = SimpleNamespace(started=STARTED, reason=stopped)
    plugin = results.Results(config, paths, suite, CaseIndex({c.id: c for c in cases}), stopper)
    plugin.pytest_collection_finish(SimpleNamespace(items=[None] * 5))
    killed = report_of(KILLED_CASE, None, longrepr="Failed: Timeout (>1.0s) from pytest-timeout.")
    for report in [
        *(
            report
            for case, outcome in ran
            for report in (report_of(case, None, "setup"), report_of(case, outcome), report_of(case, None, "teardown"))
        ),
        report_of(KILLED_CASE, None, "setup"),
        killed,
    ]:
        plugin.pytest_runtest_logreport(report)
    assert plugin.write(1) == exits
    return plugin


def test_the_results_document_holds_every_case_and_validates(tmp_path: Path) -> None:
    out, summary = tmp_path / "reports" / "results.json", tmp_path / "summary.md"
    plugin = results_for(tmp_path, ReportPaths(out, None), stopped=None)
    document = json.loads(out.read_text(encoding="utf-8"))
    VALIDATOR.validate(document)
    assert not summary.exists()
    cases = {case["id"]: case for case in document["cases"]}
    assert list(cases) == ["svc/ok", "svc/bad", "svc/flaky", "svc/a|b", "svc/killed"], "file order, what ran"
    for case, outcome in VERDICTS:
        assert cases[case.id] == results.case_entry(case, outcome)
    assert {k: cases["svc/flaky"][k] for k in ("verdict", "degraded", "class", "duration_s", "attempts")} == {
        "verdict": "pass",
        "degraded": ["1 retry: 503"],
        "class": None,
        "duration_s": 1.5,
        "attempts": [
            {"class": "server_error", "status_code": 503, "duration_s": 0.1},
            {"class": None, "status_code": 200, "duration_s": 1.4},
        ],
    }
    assert cases["svc/a|b"]["reason"] == ODD.reason, "the document keeps the server's words as they were"
    killed = cases["svc/killed"]
    assert (killed["verdict"], killed["class"], killed["attempts"]) == ("fail", "timeout", [])
    assert killed["reason"] == "timeout: Failed: Timeout (>1.0s) from pytest-timeout."
    run = document["run"]
    assert run["selection"] == {
        "endpoints_file": str(tmp_path / "endpoints.yaml"),
        "only": [],
        "keyword": "not left-out",
        "markers": None,
        "cases_in_file": 6,
        "selected": 5,
        "deselected": 1,
    }
    assert (run["exit_status"], run["stopped"], run["started_at_unix"]) == (
        {"code": 1, "name": "TESTS_FAILED"},
        None,
        STARTED,
    )
    assert run["tokens"] == {"prompt": 17, "completion": 90, "reasoning": 40, "cases_without_usage": 3}
    screen = Screen()
    plugin.pytest_terminal_summary(screen)
    assert screen.lines == [(f"model-monitor: wrote the results to {out}", {"red": False, "bold": False})]


def test_the_step_summary_is_appended_failing_cases_first_each_in_one_cell(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    results_for(tmp_path, ReportPaths(None, summary), stopped=(ErrorClass.TIMEOUT, "the run deadline of 3 s passed"))
    text = summary.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[:2] == ["earlier step", "### Model Monitor: FAIL"]
    assert lines[3].startswith("2 passed (1 degraded), 3 failed, 1 deselected; exit 1 (TESTS_FAILED) after ")
    assert "Tokens: 107 (17 prompt + 90 completion, of which 40 reasoning)" in lines
    assert "Stopped: the run deadline of 3 s passed" in lines
    rows = [line for line in lines if line.startswith("| svc/")]
    assert [row.split(" | ")[2] for row in rows] == ["FAIL", "FAIL", "FAIL", "PASS", "DEGRADED"]
    assert rows[1] == (
        "| svc/a\\|b | chat | FAIL | bad_response | 0.050s | - "
        "| bad_response: HTTP 200 with &lt;html&gt; Sign in \\| here |"
    )
    assert rows[3] == "| svc/ok | chat | PASS |  | 0.250s | 0.100s | replied 4 chars (finish_reason=stop) |"
    assert text.endswith(" |\n\n")


def test_the_step_summary_markdown_alone_escapes_a_cell() -> None:
    """The pure function: a `|` and a newline in a reason stay inside their cell."""
    document = {
        "run": {
            "exit_status": {"code": 0, "name": "OK"},
            "started_at_unix": 0,
            "ended_at_unix": 1.5,
            "stopped": None,
            "tokens": None,
            "selection": {"deselected": 0, "endpoints_file": "e.yaml"},
        },
        "cases": [results.case_entry(PASS_CASE, Outcome(True, "one | two\nthree", duration_s=0.5))],
    }
    text = step_summary.markdown(document)
    assert text.splitlines()[:3] == [
        "### Model Monitor: PASS",
        "",
        "1 passed (0 degraded), 0 failed, 0 deselected; exit 0 (OK) after 1.5 s; e.yaml",
    ]
    assert "| svc/ok | chat | PASS |  | 0.500s | - | one \\| two three |" in text.splitlines()


def test_a_report_that_cannot_be_written_is_said_not_raised(tmp_path: Path) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    plugin = results_for(tmp_path, ReportPaths(folder, None), stopped=None, exits=REPORT_NOT_WRITTEN)
    screen = Screen()
    plugin.pytest_terminal_summary(screen)
    assert screen.lines == [(f"model-monitor: could not write {folder}: Is a directory", {"red": True, "bold": True})]
    assert list(tmp_path.iterdir()) == [folder], "no temporary file left beside it"


def test_a_step_summary_on_a_full_disk_exits_with_its_own_code_and_the_document_says_so(tmp_path: Path) -> None:
    """/dev/full refuses every write with ENOSPC, as a full disk does: the document is still written, with the code
    the run exits with (REPORT_NOT_WRITTEN, not the verdicts' 1), and the summary names the file."""
    out = tmp_path / "results.json"
    plugin = results_for(tmp_path, ReportPaths(out, Path("/dev/full")), stopped=None, exits=REPORT_NOT_WRITTEN)
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["run"]["exit_status"] == {"code": REPORT_NOT_WRITTEN, "name": "REPORT_NOT_WRITTEN"}
    screen = Screen()
    plugin.pytest_terminal_summary(screen)
    assert screen.lines == [
        ("model-monitor: could not write /dev/full: No space left on device", {"red": True, "bold": True}),
        (f"model-monitor: wrote the results to {out}", {"red": False, "bold": False}),
    ]


# --- JUnit held as text ---


def junit_reports() -> list[pytest.TestReport]:
    """Reports as xdist interleaves them: a pass with properties to escape, a failure whose teardown also failed, a
    skip, and a case whose teardown never came (an interrupted run)."""

    def report(name: str, when: str, outcome: str = "passed", longrepr: Any = None, **kw: Any) -> pytest.TestReport:
        nodeid = f"checks/test_endpoints.py::test_endpoint[svc/{name}]"
        location = ("checks/test_endpoints.py", 11, f"test_endpoint[svc/{name}]")
        return pytest.TestReport(nodeid, location, {}, outcome, longrepr, when, duration=0.25, **kw)  # type: ignore[arg-type]

    odd = [("model_monitor.reason", "HTTP 500: <b>\"&'\n\x07é模型"), ("model_monitor.duration_s", 0.123456)]
    return [
        report("a", "setup"),
        report("b", "setup"),
        report("b", "call", "failed", "Traceback\n  <here> & there\n\tE   failed"),
        report("a", "call", user_properties=odd),
        report("b", "teardown", "failed", "teardown <failed>", user_properties=odd),
        report("c", "setup", "skipped", ("checks/test_endpoints.py", 12, "Skipped: not today")),
        report("a", "teardown", user_properties=odd),
        report("c", "teardown"),
        report("d", "setup"),
        report("d", "call", user_properties=odd),
    ]


def test_junit_held_as_text_writes_pytests_own_bytes(tmp_path: Path) -> None:
    """Each finished testcase held as its text, the document is written byte for byte as pytest's writer writes it."""
    written = {}
    for held in (False, True):
        config = SimpleNamespace(stash=pytest.Stash())
        xml = config.stash[xml_key] = LogXML(str(tmp_path / f"{held}.xml"), None)
        xml.add_global_property("run", "<one>")
        plugin = junit.HeldAsText(config)  # type: ignore[arg-type]
        xml.pytest_sessionstart()
        for report in junit_reports():
            xml.pytest_runtest_logreport(report)
            if held:
                plugin.pytest_runtest_logreport(report)
        if held:  # pytest's tree kept for the one testcase not finished (d's teardown never came) alone
            assert [t for t in xml.node_reporters_ordered if isinstance(t, _NodeReporter)] == [
                xml.node_reporters_ordered[-1]
            ]
        with junit.written_from_text(config) if held else contextlib.nullcontext():  # type: ignore[arg-type]
            xml.pytest_sessionfinish()
        # Only the suite's start and time differ: the two ran a moment apart.
        suite_times = r' time="[0-9.]+" timestamp="[^"]+"'
        written[held] = re.sub(suite_times, "", (tmp_path / f"{held}.xml").read_text(), count=1)
    assert written[True] == written[False]
    assert written[True].count("<testcase ") == 5  # b's failed call and failed teardown are two


# --- one wall-clock deadline for every export; a redirect is no delivery ---


@pytest.mark.parametrize("variable", ["MODEL_MONITOR_PUSHGATEWAY_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_an_export_to_a_dripping_receiver_ends_at_its_budget(
    reporters_from: Callable[[dict[str, str]], list[Reporter]], variable: str
) -> None:
    """One byte every 3 s never trips a per-read timeout: the budget bounds the whole export, which fails named."""
    with Receiver("drip=3") as dripping:
        (reporter,) = reporters_from({variable: dripping.url})
        end_all(reporter, budget=2)
        assert reporter.failed
        assert "no reply within 2 s" in reporter.summary_lines()[0], reporter.summary_lines()


@pytest.mark.parametrize("variable", ["MODEL_MONITOR_PUSHGATEWAY_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_a_redirect_is_not_an_export(reporters_from: Callable[[dict[str, str]], list[Reporter]], variable: str) -> None:
    """A 307 (a moved endpoint, a proxy's login) is a failure, also where the OTLP SDK counts 3xx as exported."""
    with Receiver("redirect") as moved:
        (reporter,) = reporters_from({variable: moved.url})
        end_all(reporter, budget=5)
        assert reporter.failed, reporter.summary_lines()
        assert [ping.query for ping in moved.pings] == [{}], "sent once, the redirect not followed"
