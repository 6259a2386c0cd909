"""The CI-gate kit: --results-json (validated against the schema it ships with), GitHub's step summary, and report
paths that cannot be written refused at start-up, before any request."""

from __future__ import annotations

import json
import os
import signal
import time
import tomllib
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from model_monitor.errors import ErrorClass
from model_monitor.reporters import results, step_summary
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import HELD, ROOT, WORKERS, endpoint, model, mounted, wait_for_requests, wait_for_verdicts

VALIDATOR = jsonschema.Draft202012Validator(json.loads(results.SCHEMA_PATH.read_text(encoding="utf-8")))
# A pass, a failure after a retry, a pass after a retry (degraded), a stream with its metrics, a case killed by
# pytest-timeout, one left out by -k.
MIXED = [
    model("ok"),
    model("flaky+flaky=1", id="flaky", retries=1),
    model("bad+status=503", id="bad", retries=1),
    model("ok-stream", stream=True),
    model("killed+hang", id="killed", timeout=60),
    model("left-out", id="left-out"),
]


def valid(path: Path) -> dict[str, Any]:
    """The document at `path`, after checking it against the schema; and no temporary file left beside it."""
    document = json.loads(path.read_text(encoding="utf-8"))
    VALIDATOR.validate(document)
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == [], "the temporary file is gone"
    return document


def by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {case["id"]: case for case in document["cases"]}


@WORKERS
def test_the_results_document_holds_the_run_and_every_case(
    server: FakeOpenAI, run_monitor, pytester: pytest.Pytester, tmp_path: Path, workers: list[str]
) -> None:
    out = tmp_path / "reports" / "results.json"  # a folder that does not exist yet is made, as pytest makes JUnit's
    before = time.time()
    run = run_monitor(
        {"endpoints": [endpoint(server.url, *MIXED)]},
        f"--results-json={out}",
        # Room for the flaky case, a worker's first under -n: its probing process's start, then a retry's backoff
        # (2 s was seen to end it on a loaded machine).
        "--timeout=5",
        "-k",
        "not left-out",
        *workers,
    )
    assert run.ret == 1, run.output
    document = valid(out)
    rundata, cases = document["run"], by_id(document)
    assert document["schema_version"] == 2
    assert list(cases) == ["svc/ok", "svc/flaky", "svc/bad", "svc/ok-stream", "svc/killed"], (
        "file order, selection only"
    )
    assert rundata["selection"] == {
        "endpoints_file": str(pytester.path / "endpoints.yaml"),
        "only": [],
        "keyword": "not left-out",
        "markers": None,
        "cases_in_file": 6,
        "selected": 5,
        "deselected": 1,
    }
    assert rundata["exit_status"] == {"code": 1, "name": "TESTS_FAILED"}
    assert rundata["stopped"] is None
    assert before <= rundata["started_at_unix"] <= rundata["ended_at_unix"] <= time.time()
    for name in ("started_at", "ended_at"):
        assert datetime.fromisoformat(rundata[name]).timestamp() == pytest.approx(rundata[f"{name}_unix"], abs=0.002)
    ok = cases["svc/ok"]
    assert {
        k: ok[k] for k in ("id", "endpoint", "model", "type", "monitor", "verdict", "degraded", "class", "reason")
    } == {
        "id": "svc/ok",
        "endpoint": "svc",
        "model": "ok",
        "type": "chat",
        "monitor": "svc-ok",
        "verdict": "pass",
        "degraded": [],
        "class": None,
        "reason": "replied 4 chars (finish_reason=stop)",
    }
    assert set(ok["metrics"]) == {"ttfb_s", "prompt_tokens", "completion_tokens"}, "the server's usage and headers"
    flaky = cases["svc/flaky"]
    assert (flaky["verdict"], flaky["class"], len(flaky["attempts"])) == ("pass", None, 2)
    assert flaky["degraded"] and "retry" in flaky["degraded"][0], flaky["degraded"]
    reported = [c["metrics"] for c in cases.values() if "prompt_tokens" in c["metrics"]]
    assert rundata["tokens"] == {
        "prompt": sum(int(m["prompt_tokens"]) for m in reported),
        "completion": sum(int(m["completion_tokens"]) for m in reported),
        "reasoning": 0,
        "cases_without_usage": len(cases) - len(reported),
    }
    assert [(a["class"], a["status_code"]) for a in ok["attempts"]] == [(None, 200)]
    assert ok["duration_s"] == pytest.approx(ok["attempts"][0]["duration_s"], abs=0.002)
    bad = cases["svc/bad"]
    assert (bad["verdict"], bad["class"]) == ("fail", "server_error")
    assert [(a["class"], a["status_code"]) for a in bad["attempts"]] == [("server_error", 503)] * 2
    assert bad["duration_s"] == pytest.approx(bad["attempts"][-1]["duration_s"], abs=0.002), "the last attempt's"
    assert bad["elapsed_s"] >= sum(a["duration_s"] for a in bad["attempts"]) - 0.002, "every attempt, and the wait"
    assert bad["reason"] == run.reason("svc/bad"), "the reason JUnit and the summary give"
    assert cases["svc/ok-stream"]["metrics"]["ttft_s"] > 0
    killed = cases["svc/killed"]
    assert (killed["verdict"], killed["class"], killed["attempts"]) == ("fail", "timeout", [])
    assert "Timeout" in killed["reason"]
    run.result.stdout.fnmatch_lines([f"model-monitor: wrote the results to {out}"])


def test_a_retried_case_has_one_duration_in_every_output(
    server: FakeOpenAI, receiver: Receiver, run_monitor, tmp_path: Path
) -> None:
    """duration is the last attempt's request everywhere (table, JSON, JUnit, step summary, ping metric); the
    total over the attempts and the wait between them is elapsed_s, and only that."""
    out, summary = tmp_path / "results.json", tmp_path / "summary.md"
    run = run_monitor(
        {"endpoints": [endpoint(server.url, model("bad+status=503+delay=0.2", id="bad", retries=1))]},
        f"--results-json={out}",
        f"--step-summary={summary}",
        f"--cronitor-url={receiver.url}/p/cronitorkey0123456789",
    )
    assert run.ret == 1, run.output
    case = by_id(valid(out))["svc/bad"]
    shown = f"{case['duration_s']:.3f}"
    assert case["duration_s"] == pytest.approx(case["attempts"][-1]["duration_s"], abs=0.002)
    assert case["elapsed_s"] > case["duration_s"] + case["attempts"][0]["duration_s"] - 0.002
    junit = ET.fromstring(run.junit).find(".//testcase")
    assert junit is not None and float(junit.get("time", "")) == pytest.approx(case["duration_s"], abs=0.002)
    assert float(run.cases["svc/bad"]["model_monitor.duration_s"]) == pytest.approx(case["duration_s"], abs=0.002)
    run.result.stdout.fnmatch_lines([f"svc/bad * chat * FAIL * {shown}s *"])
    assert f" {shown}s " in summary.read_text(encoding="utf-8")
    (fail,) = [p for p in receiver.pings if p.query.get("state") == ["fail"]]
    assert fail.query["metric"] == [f"duration:{shown}"]


@WORKERS
def test_a_run_stopped_by_sigterm_writes_its_results(
    server: FakeOpenAI, receiver: Receiver, start_monitor, tmp_path: Path, workers: list[str]
) -> None:
    out = tmp_path / "results.json"
    pings = f"--cronitor-url={receiver.url}/p/stopkey1234"
    run = start_monitor([endpoint(server.url, *HELD)], f"--results-json={out}", pings, *workers)
    wait_for_requests(server, len(HELD))
    wait_for_verdicts(receiver, "svc-ok", "svc-bad")  # hang and slow held
    run.signal_and_wait(signal.SIGTERM, bound=15)
    assert run.process.returncode == 2, run.output
    document = valid(out)
    assert document["run"]["exit_status"] == {"code": 2, "name": "INTERRUPTED"}
    assert document["run"]["stopped"]["class"] == "interrupted"
    assert document["run"]["stopped"]["reason"].startswith("run interrupted by SIGTERM after ")
    assert {case["id"]: case["class"] for case in document["cases"]} == {
        "svc/ok": None,
        "svc/bad": "server_error",
        "svc/hang": "interrupted",
        "svc/slow": "interrupted",
    }


def test_a_run_ended_by_its_deadline_writes_its_results(server: FakeOpenAI, run_monitor, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = run_monitor({"endpoints": [endpoint(server.url, *HELD)]}, f"--results-json={out}", "--run-deadline=3")
    assert run.ret == 1, run.output
    document = valid(out)
    assert document["run"]["stopped"] == {"class": "timeout", "reason": "the run deadline of 3 s passed"}
    assert [case["class"] for case in document["cases"]] == [None, "server_error", "timeout", "timeout"]


def test_the_step_summary_is_appended_failing_cases_first(
    server: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """GitHub gives each step the same file: what was there stays. Past MAX_ROWS the table says how many it left out;
    a `|` in a case id and a server's `<` stay inside their cell."""
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    passing = [model("ok", id=f"ok-{n:03}") for n in range(step_summary.MAX_ROWS + 1)]
    failing = [model("bad+status=503", id="a|b"), model("login+html", id="login")]
    degraded = model("flaky+flaky=1", id="flaky", retries=1)
    run = run_monitor({"endpoints": [endpoint(server.url, degraded, *passing, *failing)]})
    assert run.ret == 1, run.output
    text = summary.read_text(encoding="utf-8")
    head, _, table = text.partition("| case | type | verdict | class | duration | ttft | reason |\n| --- |")
    assert head.startswith("earlier step\n### Model Monitor: FAIL\n")
    assert "202 passed (1 degraded), 2 failed, 0 deselected; exit 1 (TESTS_FAILED) after " in head
    assert "\nTokens: " in head, "the run's token total"
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == step_summary.MAX_ROWS
    assert rows[0].startswith("| svc/a\\|b | chat | FAIL | server_error | ") and rows[0].count(" | ") == 6
    assert rows[1].startswith("| svc/login | chat | FAIL | bad_response | ")
    assert "HTML page 'Sign in'" in rows[1] and "<" not in rows[1]
    assert rows[2].startswith("| svc/flaky | chat | DEGRADED |  | ")
    assert rows[3].startswith("| svc/ok-000 | chat | PASS |  | ")
    assert text.endswith("\n... and 4 more\n\n")
    run.result.stdout.fnmatch_lines([f"model-monitor: appended the step summary to {summary}"])


def test_the_step_summary_flag_writes_it_where_the_variable_does_not_reach(
    server: FakeOpenAI, run_monitor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In a container GITHUB_STEP_SUMMARY is not passed on by default: --step-summary names the (mounted) file."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    summary = tmp_path / "mounted" / "summary.md"
    run = run_monitor({"endpoints": [endpoint(server.url, model("ok"))]}, f"--step-summary={summary}")
    assert run.ret == 0, run.output
    assert summary.read_text(encoding="utf-8").startswith("### Model Monitor: PASS\n")


def test_a_table_cell_stays_one_cell() -> None:
    """Unit level: a newline cannot reach a cell from a real run (reasons are one line), but the cell holds anyway."""
    text = step_summary.markdown(
        {
            "run": {
                "exit_status": {"code": 0, "name": "OK"},
                "started_at_unix": 0,
                "ended_at_unix": 1,
                "stopped": None,
                "tokens": None,
                "selection": {"deselected": 0, "endpoints_file": "e.yaml"},
            },
            "cases": [
                {
                    "id": "svc/m",
                    "type": "chat",
                    "verdict": "pass",
                    "degraded": [],
                    "class": None,
                    "duration_s": 0.5,
                    "metrics": {"ttft_s": 0.25},
                    "reason": "two\nlines | and <b>" + "x" * 400,
                }
            ],
        }
    )
    [row] = [line for line in text.splitlines() if line.startswith("| svc/m ")]
    assert row.startswith("| svc/m | chat | PASS |  | 0.500s | 0.250s | two lines \\| and &lt;b&gt;xxx")
    assert row.endswith("x… |") and len(row) < 400


def read_only(folder: Path) -> tuple[str, ...]:
    """Run the monitor where `folder` is a read-only mount, as a bind mount without write access in a container."""
    return mounted(folder, 'mount -o bind,ro "$0" "$0"')


def without_root_powers() -> tuple[str, ...]:
    """Run the monitor bound by file permissions: root ignores them, unless it drops CAP_DAC_OVERRIDE."""
    return ("setpriv", "--bounding-set=-dac_override", "--") if os.geteuid() == 0 else ()


@pytest.mark.parametrize(
    ("option", "make", "why", "workers"),
    [
        ("--results-json", lambda tmp: tmp, "it is a folder", []),
        (
            "--results-json",
            lambda tmp: (tmp / "f").write_text("") or tmp / "f" / "sub" / "r.json",
            "{tmp}/f is a file, not a folder",
            [],
        ),
        ("--junitxml", lambda tmp: tmp.chmod(0o555) or tmp / "junit.xml", "permission denied in {tmp}", []),
        ("--junitxml", lambda tmp: tmp.chmod(0o555) or tmp / "junit.xml", "permission denied in {tmp}", ["-n", "2"]),
        ("--junitxml", lambda tmp: tmp / "new" / "junit.xml", "read-only file system in {tmp}", []),
        ("GITHUB_STEP_SUMMARY", lambda tmp: tmp / "summary.md", "read-only file system in {tmp}", []),
    ],
    ids=[
        "json-folder",
        "json-under-a-file",
        "junit-permission",
        "junit-permission-xdist",
        "junit-read-only-mount",
        "step-summary-read-only-mount",
    ],
)
def test_a_report_path_that_cannot_be_written_is_a_usage_error_before_any_request(
    server: FakeOpenAI,
    run_monitor,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    option: str,
    make: Any,
    why: str,
    workers: list[str],
) -> None:
    """Exit 4 and one line naming the option, the path and why, before any request; the check leaves nothing behind.
    (Until now an unwritable --junitxml crashed pytest at the end, and the run exited 1 as if a model had failed.)"""
    folder = tmp_path / "reports"
    folder.mkdir()
    path = make(folder)
    before = sorted(folder.iterdir())
    prefix = read_only(folder) if "read-only" in why else without_root_powers() if "permission" in why else ()
    if option == "GITHUB_STEP_SUMMARY":
        monkeypatch.setenv(option, str(path))
        args: list[str] = []
    else:
        args = [f"{option}={path}"]
    run = run_monitor({"endpoints": [endpoint(server.url, model("ok"))]}, *args, *workers, prefix=prefix)
    folder.chmod(0o755)
    label = {
        "--results-json": "--results-json (MODEL_MONITOR_RESULTS_JSON)",
        "GITHUB_STEP_SUMMARY": "--step-summary (GITHUB_STEP_SUMMARY)",
    }.get(option, option)
    assert run.ret == 4, run.output
    assert f"ERROR: {label}: cannot write {path}: {why.format(tmp=folder)}" in run.output.splitlines()
    assert server.requests == []
    assert sorted(folder.iterdir()) == before


def test_no_secret_reaches_the_results_or_the_step_summary(
    run_monitor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The key (quoted back by the server), a header secret and a key in the URL's query stay out of both files."""
    key, header, query = "sk-results-canary-4d1e", "hdr-results-canary-8b2f", "code-results-canary-6c3a"
    monkeypatch.setenv("ENDPOINT_KEY", key)
    monkeypatch.setenv("HEADER_SECRET", header)
    summary, out = tmp_path / "summary.md", tmp_path / "results.json"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with FakeOpenAI(api_key=key) as server:
        models = [model("ok"), model("quotes-the-key+echoauth"), model("broken+status=503")]
        run = run_monitor(
            {
                "endpoints": [
                    endpoint(
                        f"{server.url}/v1?code={query}",
                        *models,
                        api_key_env="ENDPOINT_KEY",
                        headers={"X-Secret": "${HEADER_SECRET}"},
                    )
                ]
            },
            f"--results-json={out}",
        )
    assert run.ret == 1, run.output
    document = valid(out)
    assert "Incorrect API key provided: ***" in by_id(document)["svc/quotes-the-key+echoauth"]["reason"]
    for where, text in (
        ("results", out.read_text(encoding="utf-8")),
        ("step summary", summary.read_text(encoding="utf-8")),
    ):
        for secret in (key, header, query):
            assert secret not in text, f"{secret} leaked into the {where}"


def test_the_schema_ships_with_the_package_and_knows_every_error_class() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert results.SCHEMA_PATH.name in pyproject["tool"]["setuptools"]["package-data"]["model_monitor.reporters"]
    schema = VALIDATOR.schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["$defs"]["error_class"]["enum"]) == {None, *(c.value for c in ErrorClass)}
    jsonschema.Draft202012Validator.check_schema(schema)
