"""Degraded: a case that passed but needed a retry or crossed warn_latency / warn_ttft passes (exit 0) and says so
in the summary, JUnit and the heartbeat message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model_monitor import config
from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import endpoint, model

KEY = "cronitorkey0123456789"


def test_a_retried_or_slow_pass_is_degraded_everywhere_and_the_run_still_passes(
    server: FakeOpenAI, receiver: Receiver, run_monitor
) -> None:
    models = [
        model("slow+delay=0.3", id="slow", warn_latency=0.1, max_latency=30),
        model("ttft+delay=0.3", id="ttft", stream=True, warn_ttft=0.1, max_ttft=30),
        model("flaky+flaky=1", id="flaky", retries=1),
        model("fine"),
    ]
    run = run_monitor({"endpoints": [endpoint(server.url, *models)]}, f"--cronitor-url={receiver.url}/p/{KEY}")
    assert run.ret == 0, run.output
    degraded = {case_id: props.get("model_monitor.degraded") for case_id, props in run.cases.items()}
    assert degraded["svc/fine"] is None
    assert degraded["svc/flaky"] == "1 retry: 503"
    # The class and the reason, not the measured figure: a loaded machine adds to the server's 0.3 s.
    assert re.fullmatch(r"latency \d+\.\d+ s > warn_latency 0.1 s", degraded["svc/slow"]), degraded["svc/slow"]
    assert re.fullmatch(r"ttft \d+\.\d+ s > warn_ttft 0.1 s", degraded["svc/ttft"]), degraded["svc/ttft"]
    assert {props["model_monitor.verdict"] for props in run.cases.values()} == {"pass"}
    run.result.stdout.fnmatch_lines(
        [
            "svc/slow * chat * DEGRADED * latency * s > warn_latency 0.1 s; replied 4 chars*",
            "svc/ttft * chat * DEGRADED * ttft * s > warn_ttft 0.1 s; streamed: replied*",
            "svc/flaky * chat * DEGRADED * passed after 1 retry: 503; replied 4 chars*",
            "svc/fine * chat * PASS * replied 4 chars*",
        ]
    )
    ends = {p.path.rsplit("/", 1)[-1]: p.query for p in receiver.pings if p.query.get("state") != ["run"]}
    assert ends["svc-fine"]["state"] == ["complete"] and ends["svc-fine"]["message"][0].startswith("ok in ")
    for monitor in ("svc-slow", "svc-ttft", "svc-flaky"):
        assert ends[monitor]["state"] == ["complete"], monitor
        assert ends[monitor]["message"][0].startswith("degraded in "), ends[monitor]["message"]
    assert "warn_latency 0.1 s" in ends["svc-slow"]["message"][0]
    assert "passed after 1 retry: 503" in ends["svc-flaky"]["message"][0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "endpoints.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: chat, max_latency: 2, warn_latency: 5}\n",
            "endpoints.yaml:5: endpoints[0].models[0].warn_latency: 5 s is above max_latency 2 s: it would never warn",
        ),
        (
            "defaults: {warn_ttft: 3, stream: true}\nendpoints:\n  - name: a\n    url: http://x\n    models:\n"
            "      - {name: m, type: chat, max_ttft: 1}\n",
            "endpoints[0].models[0].warn_ttft: 3 s (from defaults) is above max_ttft 1 s: it would never warn",
        ),
        (
            "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: chat, warn_ttft: 1}\n",
            "endpoints[0].models[0].warn_ttft: needs stream: true",
        ),
        (
            "endpoints:\n  - name: a\n    url: http://x\n    models:\n      - {name: m, type: embedding, warn_ttft: 1}\n",
            "endpoints[0].models[0].warn_ttft: applies only to type chat or completion or messages or responses, not embedding",
        ),
    ],
    ids=["warn-above-max", "from-defaults", "ttft-without-stream", "ttft-on-embedding"],
)
def test_a_warning_that_could_never_come_first_is_a_config_error(tmp_path: Path, text: str, said: str) -> None:
    with pytest.raises(config.ConfigError) as raised:
        config.load(write(tmp_path, text))
    assert said in str(raised.value)


def test_warnings_come_from_the_model_or_defaults(tmp_path: Path) -> None:
    text = (
        "defaults: {warn_latency: 1, max_latency: 2}\nendpoints:\n  - name: a\n    url: http://x\n    models:\n"
        "      - {name: m, type: chat, stream: true, warn_ttft: 0.5, warn_latency: 2}\n"
    )
    (case,) = config.load(write(tmp_path, text)).cases
    assert (case.warn_latency, case.warn_ttft, case.max_latency) == (2, 0.5, 2)
