"""Heartbeats: exact pings per case to a real receiver on 127.0.0.1, bounded delivery, and no key in the open."""

from __future__ import annotations

import base64
import json
import sys
import uuid
from types import SimpleNamespace

import pytest

from model_monitor import settings
from model_monitor.case import Case, Endpoint
from model_monitor.outcome import Outcome
from model_monitor.probe.loop import BackgroundLoop
from model_monitor.redact import Redactor, Secret
from model_monitor.reporters.heartbeats import (
    Cronitor,
    Healthchecks,
    Ping,
    TelemetryConfigError,
    cut_message,
    describe,
    provisioning,
    targets_from,
)
from model_monitor.reporters.heartbeats.delivery import Delivery
from model_monitor.types import TYPES
from testbed.openai_server import FakeOpenAI
from testbed.receiver import RETRY_AFTER_S, Receiver

from .helpers import WORKERS, endpoint, model

KEY = "cronitorkey0123456789"
HC_KEY = "hcpingkey0123456789"


def a_case(model_id: str = "meta-llama/Llama-3.1-8B-Instruct") -> Case:
    from model_monitor.case import monitor_key

    return Case(Endpoint("gw", "http://x/v1"), model_id, model_id, TYPES["chat"], monitor_key(f"gw-{model_id}"))


# --- URL forms and ping contents (pure logic) ---


@pytest.mark.parametrize(
    ("url", "expected_path"),
    [
        (f"https://cronitor.link/p/{KEY}", f"/p/{KEY}/gw-meta-llama-llama-3-1-8b-instruct"),
        (f"https://cronitor.link/p/{KEY}/team-a", f"/p/{KEY}/team-a-gw-meta-llama-llama-3-1-8b-instruct"),
        (f"https://cronitor.link/ping/{KEY}", f"/ping/{KEY}/gw-meta-llama-llama-3-1-8b-instruct"),
        (f"https://eu.cronitor.link/p/{KEY}", f"/p/{KEY}/gw-meta-llama-llama-3-1-8b-instruct"),
        (f"https://proxy.internal/hb/{KEY}/{{monitor}}/ping", f"/hb/{KEY}/gw-meta-llama-llama-3-1-8b-instruct/ping"),
    ],
)
def test_cronitor_url_forms(url: str, expected_path: str) -> None:
    ping = Cronitor.from_url(Secret(url)).start(a_case(), "s1", Outcome(True, "ok"))
    assert ping.url.reveal().split("?")[0].endswith(expected_path)
    assert KEY not in ping.shown and "***" in ping.shown


@pytest.mark.parametrize(
    "url",
    [
        f"https://cronitor.link/{KEY}",
        f"https://cronitor.link/p/{KEY}/a/b",
        f"ftp://cronitor.link/p/{KEY}",
        f"https://cronitor.link:99999/p/{KEY}",
        f"https://[::1/p/{KEY}",
        f"https://cronitor.link/p/{KEY}/%21%21",
        f"https://h/p/{KEY}/x?m={{monitor}}",
    ],
)
def test_a_malformed_cronitor_url_is_refused_in_one_line_without_printing_it(url: str) -> None:
    with pytest.raises(TelemetryConfigError) as raised:
        targets_from(Secret(url), None, None, False)
    message = str(raised.value)
    assert message.startswith("--cronitor-url (CRONITOR_URL): ") and "\n" not in message
    assert KEY not in message


def test_healthchecks_url_forms() -> None:
    hosted = Healthchecks.from_url(Secret(f"https://hc-ping.com/{HC_KEY}"), create=True).start(
        a_case(), "rid-1", Outcome(True, "ok")
    )
    assert (
        hosted.url.reveal()
        == f"https://hc-ping.com/{HC_KEY}/gw-meta-llama-llama-3-1-8b-instruct/start?rid=rid-1&create=1"
    )
    own = Healthchecks.from_url(Secret(f"https://hc.internal/ping/{HC_KEY}")).end(
        a_case(), "rid-1", Outcome(False, "timeout: slow")
    )
    assert own.url.reveal() == f"https://hc.internal/ping/{HC_KEY}/gw-meta-llama-llama-3-1-8b-instruct/fail?rid=rid-1"
    assert own.body == b"timeout: slow" and HC_KEY not in own.shown
    with pytest.raises(TelemetryConfigError, match="--healthchecks-url"):
        targets_from(None, None, Secret(f"https://hc-ping.com/a/b/{HC_KEY}"), False)


def cronitor_start(url: str) -> tuple[Cronitor, Ping]:
    target = Cronitor.from_url(Secret(url))
    return target, target.start(a_case(), "s1", Outcome(True, "ok"))


@pytest.mark.parametrize(
    ("url", "sent", "shown"),
    [
        (  # a template's own query is kept, its values hidden; ours follow
            f"https://h/x/{KEY}/{{monitor}}?token=tok-abc123",
            f"https://h/x/{KEY}/gw-meta-llama-llama-3-1-8b-instruct?token=tok-abc123&state=run&series=s1&",
            "https://h/x/***/{monitor}?token=***",
        ),
        (  # a fragment is never sent; a parameter we set replaces the template's
            f"https://h/x/{KEY}/{{monitor}}?state=bogus&team=a#frag",
            f"https://h/x/{KEY}/gw-meta-llama-llama-3-1-8b-instruct?team=a&state=run&series=s1&",
            "https://h/x/***/{monitor}?state=***&team=***",
        ),
        (  # userinfo never appears: it travels as Basic auth
            f"https://user:pa55-word@h/p/{KEY}",
            f"https://h/p/{KEY}/gw-meta-llama-llama-3-1-8b-instruct?state=run&series=s1&",
            "https://h/p/***/{monitor}",
        ),
    ],
)
def test_a_url_is_parsed_once_and_printed_without_userinfo_or_query_values(url: str, sent: str, shown: str) -> None:
    target, ping = cronitor_start(url)
    assert ping.url.reveal().startswith(sent)
    assert describe([target], False) == f"telemetry: cronitor {shown}"
    for printed in (ping.shown, describe([target], False), repr(target), repr(ping)):
        for secret in (KEY, "tok-abc123", "pa55-word", "user", "team=a", "frag"):
            assert secret not in printed


def test_userinfo_becomes_basic_auth_held_as_a_secret() -> None:
    target, ping = cronitor_start(f"https://user:pa55%40word@h/p/{KEY}")
    assert ping.auth is not None and ping.auth.reveal() == "Basic " + base64.b64encode(b"user:pa55@word").decode()
    assert "pa55" not in repr(ping) and "user" not in ping.url.reveal()
    assert ping.auth.reveal() in target.secrets


@pytest.mark.parametrize("group", ["My%20Group", "My Group", "my-group", "my%2Dgroup"])
def test_a_group_is_decoded_once_and_made_a_stable_monitor_key(group: str) -> None:
    target, ping = cronitor_start(f"https://cronitor.link/p/{KEY}/{group}")
    assert target.group == "my-group"
    assert (
        ping.url.reveal().split("?")[0] == f"https://cronitor.link/p/{KEY}/my-group-gw-meta-llama-llama-3-1-8b-instruct"
    )


def test_secrets_are_held_as_secret_from_settings_to_pings() -> None:
    api_key = "cronitorapikey987654321"
    fake = SimpleNamespace(
        option=SimpleNamespace(cronitor_url=f"https://u:pw-1234@h/p/{KEY}?token=tok-abc123", only=[]),
        getini=lambda name: "",
    )
    resolved = settings.resolve(
        fake, environ={"HEALTHCHECKS_URL": f"https://hc-ping.com/{HC_KEY}", "CRONITOR_API_KEY": api_key}
    )
    assert isinstance(resolved.cronitor_url, Secret) and isinstance(resolved.cronitor_api_key, Secret)
    assert set(resolved.secrets) == {fake.option.cronitor_url, f"https://hc-ping.com/{HC_KEY}", api_key}
    targets = targets_from(resolved.cronitor_url, None, resolved.healthchecks_url, False)
    pings = [t.start(a_case(), "s1", Outcome(True, "ok")) for t in targets] + [
        provisioning("https://api", resolved.cronitor_api_key, targets[0], [a_case()], None)
    ]
    loop = BackgroundLoop()
    try:
        delivery = Delivery(loop, Redactor(resolved.secrets), resolved.telemetry_rate, resolved.telemetry_deadline)
        printed = repr([resolved, targets, pings, delivery, vars(delivery)])
        delivery.flush(1)
    finally:
        loop.close()
    for secret in (KEY, HC_KEY, api_key, "tok-abc123", "pw-1234", base64.b64encode(f"{api_key}:".encode()).decode()):
        assert secret not in printed
    assert printed.count("Secret('***')") >= 8


def test_messages_keep_the_tail_of_an_error() -> None:
    long = "server_error: " + "x" * 3000 + " the cause"
    cut = cut_message(long)
    assert len(cut) == 1000 and cut.endswith(" the cause") and cut.startswith("…")


def test_messages_show_what_would_act_on_a_terminal_escaped() -> None:
    """A ping's message is read on Cronitor's page and in terminals: a bidi override, an escape sequence or a NUL
    from a server's words shows as its code, not as what it does."""
    said = "server_error: admin\u202egnp.exe \x1b[2Jcleared\x00"
    assert cut_message(said) == "server_error: admin\\u202egnp.exe \\u001b[2Jcleared\\u0000"


# --- end to end against the receiver ---


def cronitor_pings(receiver: Receiver) -> dict[str, list[dict[str, list[str]]]]:
    """monitor key -> the query of each ping it got, in arrival order."""
    out: dict[str, list[dict[str, list[str]]]] = {}
    for ping in receiver.pings:
        out.setdefault(ping.path.rsplit("/", 1)[1], []).append(ping.query)
    return out


@WORKERS
def test_each_case_sends_run_then_complete_or_fail_exactly_once(
    openai_server: FakeOpenAI, receiver: Receiver, run_monitor, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    monkeypatch.setenv("CRONITOR_URL", f"{receiver.url}/p/{KEY}/grp")
    monkeypatch.setenv("CRONITOR_ENV", "staging")
    models = [
        model("tm-ok", monitor="My Chat"),
        model("tm-embed", "embedding"),
        model("tm-bad+status=500", id="bad"),
        model("tm-skip"),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, "-k", "not tm-skip", *workers)
    assert run.ret == 1
    pings = cronitor_pings(receiver)
    assert set(pings) == {"grp-my-chat", "grp-svc-tm-embed", "grp-svc-bad"}, "deselected cases send nothing"
    for key, case_id in [
        ("grp-my-chat", "svc/tm-ok"),
        ("grp-svc-tm-embed", "svc/tm-embed"),
        ("grp-svc-bad", "svc/bad"),
    ]:
        start, end = pings[key]
        assert start["state"] == ["run"]
        assert end["series"] == start["series"] and uuid.UUID(start["series"][0])
        for query in (start, end):
            assert query["env"] == ["staging"] and query["host"][0] and float(query["stamp"][0]) > 1.7e9
        props = run.cases[case_id]
        metrics = [
            f"{k.removeprefix('model_monitor.metric.')}:{float(v):.3f}"
            for k, v in props.items()
            if k.startswith("model_monitor.metric.")
        ]
        assert end["metric"] == [f"duration:{float(props['model_monitor.duration_s']):.3f}", *metrics], (
            "token usage too"
        )
        if props["model_monitor.verdict"] == "pass":
            assert end["state"] == ["complete"] and end["status_code"] == ["0"]
            assert end["message"][0].startswith("ok in ")
        else:
            assert end["state"] == ["fail"] and end["status_code"] == ["1"]
            assert end["message"] == [props["model_monitor.reason"]]
            assert end["message"][0].startswith("server_error: HTTP 500 from POST /v1/chat/completions")
    run.result.stdout.fnmatch_lines(["telemetry (cronitor): 6 pings sent"])


def test_healthchecks_pings_pair_start_and_end_by_rid(
    openai_server: FakeOpenAI, receiver: Receiver, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHCHECKS_URL", f"{receiver.url}/ping/{HC_KEY}")
    models = [model("hc-ok"), model("hc-bad+status=503", id="bad")]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, "--healthchecks-create")
    assert run.ret == 1
    by_path = {p.path: p for p in receiver.pings}
    assert set(by_path) == {
        f"/ping/{HC_KEY}/svc-hc-ok/start",
        f"/ping/{HC_KEY}/svc-hc-ok",
        f"/ping/{HC_KEY}/svc-bad/start",
        f"/ping/{HC_KEY}/svc-bad/fail",
    }
    fail = by_path[f"/ping/{HC_KEY}/svc-bad/fail"]
    assert fail.query["rid"] == by_path[f"/ping/{HC_KEY}/svc-bad/start"].query["rid"]
    assert fail.query["create"] == ["1"] and fail.method == "POST"
    assert fail.body.decode() == run.reason("svc/bad")


def test_dry_run_prints_pings_with_the_key_hidden_and_sends_nothing(
    openai_server: FakeOpenAI, receiver: Receiver, run_monitor
) -> None:
    url = f"{receiver.url}/p/{KEY}"
    run = run_monitor(
        {"endpoints": [endpoint(openai_server.url, model("dry"))]}, "--cronitor-url", url, "--telemetry-dry-run"
    )
    assert run.ret == 0
    assert receiver.pings == []
    run.result.stdout.fnmatch_lines(
        [
            "telemetry: cronitor http://127.0.0.1:*/p/***/{monitor} (dry run*",
            "telemetry (dry run, cronitor): 2 pings not sent:",
            "  GET */p/***/svc-dry?state=run&series=*",
        ]
    )
    assert KEY not in run.output


def test_a_case_killed_by_pytest_timeout_still_sends_fail(
    openai_server: FakeOpenAI, receiver: Receiver, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRONITOR_URL", f"{receiver.url}/p/{KEY}")
    run = run_monitor(
        {"endpoints": [endpoint(openai_server.url, model("killed+hang", id="killed", timeout=60))]}, "--timeout=1"
    )
    assert run.ret == 1
    states = [p.query["state"][0] for p in receiver.pings]
    assert states == ["run", "fail"]
    assert receiver.pings[1].query["message"][0].startswith("timeout: ")


def test_provisioning_creates_every_monitor_once(
    openai_server: FakeOpenAI, receiver: Receiver, run_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_key = "cronitorapikey987654321"
    monkeypatch.setenv("CRONITOR_URL", f"{receiver.url}/p/{KEY}/grp")
    monkeypatch.setenv("CRONITOR_API_KEY", api_key)
    monkeypatch.setenv("CRONITOR_API_URL", f"{receiver.url}/api")
    monkeypatch.setenv("CRONITOR_SCHEDULE", "*/5 * * * *")
    models = [model("pv-a", timeout=12.5), model("pv-b", "embedding", schedule="0 * * * *")]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, "-n", "2")
    assert run.ret == 0, run.output
    puts = receiver.pings_for("/api/monitors")
    assert len(puts) == 1
    assert puts[0].headers["authorization"] == "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
    monitors = json.loads(puts[0].body)["monitors"]
    assert monitors == [
        {
            "type": "job",
            "key": "grp-svc-pv-a",
            "name": "svc/pv-a",
            "assertions": ["metric.duration < 13 seconds"],
            "schedule": "*/5 * * * *",
            "group": "grp",
        },
        {
            "type": "job",
            "key": "grp-svc-pv-b",
            "name": "svc/pv-b",
            "assertions": ["metric.duration < 30 seconds"],
            "schedule": "*/5 * * * *",
            "group": "grp",
        },
    ]
    assert api_key not in run.output


# --- outages: the run ends within its bound, with the same verdicts, and says what failed ---

# A case's run and end pings go out together, one after the other: against 503s each takes its 3 attempts, so the
# deadline must leave room for both (2 x about 2 s of backoff); against a hanging receiver it is what ends them.
OUTAGES = [
    ("status=503", 10, "503 from 127.0.0.1"),
    ("hang", 2, "not delivered within the 2 s deadline"),
    ("slow=5", 2, "not delivered within the 2 s deadline"),
    ("status=404", 10, "404 from 127.0.0.1"),
]


@pytest.mark.parametrize(("mode", "deadline", "said"), OUTAGES, ids=[m for m, _, _ in OUTAGES])
def test_a_telemetry_outage_never_changes_verdicts_and_is_named(
    openai_server: FakeOpenAI, run_monitor, mode: str, deadline: int, said: str
) -> None:
    models = [model("out-ok"), model("out-bad+status=500", id="bad")]
    with Receiver(mode) as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(openai_server.url, *models)]},
            f"--cronitor-url={receiver.url}/p/{KEY}",
            f"--telemetry-deadline={deadline}",
            timeout=60,
        )
    assert run.ret == 1
    assert {k: v["model_monitor.verdict"] for k, v in run.cases.items()} == {"svc/out-ok": "pass", "svc/bad": "fail"}
    run.result.stdout.fnmatch_lines([f"telemetry (cronitor): 4 of 4 pings failed: {said}*"])
    assert KEY not in run.output


def test_a_refused_target_fails_pings_not_the_run(openai_server: FakeOpenAI, run_monitor) -> None:
    run = run_monitor(
        {"endpoints": [endpoint(openai_server.url, model("refused-ok"))]}, f"--cronitor-url=http://127.0.0.1:9/p/{KEY}"
    )
    assert run.ret == 0
    run.result.stdout.fnmatch_lines(["telemetry (cronitor): 2 of 2 pings failed: ConnectError from 127.0.0.1*"])
    assert KEY not in run.output


def test_a_flaky_target_gets_every_ping_after_retries(openai_server: FakeOpenAI, run_monitor) -> None:
    with Receiver("fail_first=2") as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(openai_server.url, model("flaky-target"))]},
            f"--cronitor-url={receiver.url}/p/{KEY}",
        )
        states = sorted(p.query["state"][0] for p in receiver.pings)
    assert run.ret == 0
    assert states == ["complete", "run", "run", "run"], "the run ping was retried until delivered"
    run.result.stdout.fnmatch_lines(["telemetry (cronitor): 2 pings sent"])


# --- paced delivery: heartbeat services rate-limit ---

RATE = 10
PACED_CASES = 10  # 20 pings


def test_pings_are_spread_at_the_telemetry_rate(openai_server: FakeOpenAI, receiver: Receiver, run_monitor) -> None:
    """Every case's verdict is ready at once; the pings still go out at most RATE a second. Receiving them later
    than paced is allowed (a loaded machine), earlier is not: the span is at least (n - 1) / RATE."""
    models = [model(f"paced-{i}") for i in range(PACED_CASES)]
    run = run_monitor(
        {"endpoints": [endpoint(openai_server.url, *models)]},
        f"--cronitor-url={receiver.url}/p/{KEY}",
        f"--telemetry-rate={RATE}",
    )
    assert run.ret == 0, run.output
    arrived = sorted(p.time for p in receiver.pings)
    assert len(arrived) == 2 * PACED_CASES
    # The first ping may arrive late by its own latency (its connection's set-up); 0.5 s is ample, and unpaced
    # the 20 pings arrive within a few tens of milliseconds.
    assert arrived[-1] - arrived[0] >= (len(arrived) - 1) / RATE - 0.5


def test_a_429_is_honoured_and_the_ping_arrives(openai_server: FakeOpenAI, run_monitor) -> None:
    with Receiver("limit_first=1") as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(openai_server.url, model("limited"))]}, f"--cronitor-url={receiver.url}/p/{KEY}"
        )
        pings = list(receiver.pings)
    assert run.ret == 0, run.output
    assert [p.query["state"][0] for p in pings] == ["run", "run", "complete"], "the limited ping was retried"
    assert pings[1].time - pings[0].time >= RETRY_AFTER_S - 0.01, "not before the Retry-After the 429 asked"
    run.result.stdout.fnmatch_lines(["telemetry (cronitor): 2 pings sent"])


@pytest.mark.parametrize(("deadline", "said"), [(3, True), (30, False)])
def test_the_header_says_how_long_paced_delivery_takes_when_it_nears_the_deadline(
    openai_server: FakeOpenAI, receiver: Receiver, run_monitor, deadline: int, said: bool
) -> None:
    models = [model(f"paced-{i}") for i in range(PACED_CASES)]
    run = run_monitor(
        {"endpoints": [endpoint(openai_server.url, *models)]},
        "--collect-only",
        f"--cronitor-url={receiver.url}/p/{KEY}",
        f"--telemetry-rate={RATE}",
        f"--telemetry-deadline={deadline}",
    )
    assert run.ret == 0, run.output
    line = f"telemetry: 20 pings at {RATE}/s take about 2 s; --telemetry-deadline is {deadline} s"
    assert (line in run.result.stdout.lines) is said, run.output


def test_strict_mode_fails_the_run_on_undelivered_pings(openai_server: FakeOpenAI, run_monitor) -> None:
    with Receiver("status=503") as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(openai_server.url, model("strict-ok"))]},
            f"--cronitor-url={receiver.url}/p/{KEY}",
            "--telemetry-strict",
        )
    assert run.ret == 1
    assert run.cases["svc/strict-ok"]["model_monitor.verdict"] == "pass"


# --- hostile replies: a ping reads a few KB of raw reply at most, whatever the receiver sends ---

# Runs a command and prints its peak RSS (KiB, Linux) on stderr: the monitor's own, not this test process's.
PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


@pytest.mark.parametrize("mode", ["huge", "gzipbomb"])
def test_a_hostile_reply_costs_no_memory_and_the_pings_still_count(
    openai_server: FakeOpenAI, run_monitor, mode: str
) -> None:
    with Receiver(mode) as receiver:
        run = run_monitor(
            {"endpoints": [endpoint(openai_server.url, model("hostile-reply"))]},
            f"--cronitor-url={receiver.url}/p/{KEY}",
            prefix=(sys.executable, "-c", PEAK_RSS),
        )
        states = [p.query["state"][0] for p in receiver.pings]
    assert run.ret == 0, run.output
    assert states == ["run", "complete"], "each ping delivered once: no retry"
    run.result.stdout.fnmatch_lines(["telemetry (cronitor): 2 pings sent"])
    peak_kib = int(run.result.stderr.str().rsplit("peak-rss-kib", 1)[1].split()[0])
    print(
        f"monitor peak RSS with a {mode} ping reply: {peak_kib // 1024} MiB"
    )  # the figure quoted in the closing note (-rA)
    assert peak_kib < 200 * 1024, f"the monitor peaked at {peak_kib // 1024} MiB"  # 61 MiB; unfixed: 386 and 3141


# --- a crash in the telemetry path, printed with every local, shows no secret ---

CRASH_PLUGIN = """
import model_monitor.probe.engine as engine
import model_monitor.reporters.heartbeats as telemetry
import model_monitor.reporters.heartbeats.targets as targets


def boom(*args, **kwargs):
    raise RuntimeError("injected telemetry bug")


SITES = {
    "case": (engine.Engine, "outcome"),  # inside a case: its traceback holds the plugin's Monitor, settings and targets
    "end": (targets, "end_message"),  # building a ping, on the loop: counted as undelivered, with its cause
    "provisioning": (telemetry, "provisioning"),  # at start-up
}
owner, name = SITES[CRASH_SITE]
setattr(owner, name, boom)
"""
USERINFO_PASSWORD = "userinfo-pw-8c1d"
URL_TOKEN = "url-token-4e7a"


@WORKERS
@pytest.mark.parametrize("site", ["case", "end", "provisioning"])
def test_a_crash_in_telemetry_under_showlocals_prints_no_secret(
    openai_server: FakeOpenAI,
    receiver: Receiver,
    run_monitor,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    site: str,
    workers: list[str],
) -> None:
    api_key = "cronitorapikey987654321"
    pytester.makepyfile(crash_telemetry=CRASH_PLUGIN.replace("CRASH_SITE", repr(site)))
    monkeypatch.setenv(
        "CRONITOR_URL", f"http://monitor:{USERINFO_PASSWORD}@127.0.0.1:{receiver.port}/p/{KEY}/grp?token={URL_TOKEN}"
    )
    monkeypatch.setenv("HEALTHCHECKS_URL", f"{receiver.url}/ping/{HC_KEY}")
    monkeypatch.setenv("CRONITOR_API_KEY", api_key)
    monkeypatch.setenv("CRONITOR_API_URL", f"{receiver.url}/api")
    run = run_monitor(
        {"endpoints": [endpoint(openai_server.url, model("crash-ok"), model("crash-bad+status=500"))]},
        "-p",
        "crash_telemetry",
        "--showlocals",
        "--fulltrace",
        "-vv",
        *workers,  # -vv: whole reprs; fulltrace: an INTERNALERROR's locals too
    )
    output = run.output
    assert "RuntimeError: injected telemetry bug" in output, output
    auth = (
        base64.b64encode(f"{api_key}:".encode()).decode(),
        base64.b64encode(f"monitor:{USERINFO_PASSWORD}".encode()).decode(),
    )
    for secret in (KEY, HC_KEY, api_key, USERINFO_PASSWORD, URL_TOKEN, *auth):
        assert secret not in output and secret not in run.junit
    if site == "end":
        assert "telemetry (cronitor, healthchecks): 8 of 9 pings failed: RuntimeError: injected telemetry bug" in output
    else:
        assert "Secret('***')" in output, "the locals holding secrets were printed, masked"


def test_a_template_with_userinfo_query_and_fragment_keeps_our_params_and_prints_no_secret(
    openai_server: FakeOpenAI, receiver: Receiver, run_monitor
) -> None:
    url = f"http://monitor:{USERINFO_PASSWORD}@127.0.0.1:{receiver.port}/hb/{KEY}/{{monitor}}?token={URL_TOKEN}&state=x#frag"
    run = run_monitor({"endpoints": [endpoint(openai_server.url, model("tpl-ok"))]}, f"--cronitor-url={url}")
    assert run.ret == 0, run.output
    run.result.stdout.fnmatch_lines(["telemetry: cronitor http://127.0.0.1:*/hb/***/{monitor}?token=***&state=***"])
    assert [p.path for p in receiver.pings] == [f"/hb/{KEY}/svc-tpl-ok"] * 2
    assert [p.query["state"] for p in receiver.pings] == [["run"], ["complete"]]
    assert all(p.query["token"] == [URL_TOKEN] for p in receiver.pings)
    basic = "Basic " + base64.b64encode(f"monitor:{USERINFO_PASSWORD}".encode()).decode()
    assert all(p.headers["authorization"] == basic for p in receiver.pings), "userinfo is sent as Basic auth"
    for secret in (KEY, USERINFO_PASSWORD, URL_TOKEN):
        assert secret not in run.output and secret not in run.junit


def test_a_percent_encoded_group_is_decoded_once(openai_server: FakeOpenAI, receiver: Receiver, run_monitor) -> None:
    run = run_monitor(
        {"endpoints": [endpoint(openai_server.url, model("grp-ok"))]},
        f"--cronitor-url={receiver.url}/p/{KEY}/My%20Group",
    )
    assert run.ret == 0, run.output
    assert [p.path for p in receiver.pings] == [f"/p/{KEY}/my-group-svc-grp-ok"] * 2
