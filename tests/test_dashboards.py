"""The chart's alerts and Grafana dashboard, proven with the real tools (Debian's prometheus, prometheus-pushgateway
and promtool; scripts/install-tools installs them, and a missing tool is a failure, not a skip).

- The PrometheusRule that `helm template` renders passes `promtool check rules`, and `promtool test rules` runs
  tests/prometheus/rules_test.yaml against it: at least one unit test per alert.
- A real Pushgateway and a real Prometheus (scraping it every second, honor_labels) run on loopback; a real monitor
  run against FakeOpenAI pushes to it as the chart's CronJob does, and every dashboard panel's query and every alert
  expression returns, through Prometheus' HTTP API, the series that the run's results say it must.
- Helm renders and lints the chart with the metrics options on and off. kubernetes-validate knows only the core
  API, not the PrometheusRule CRD, so its shape is checked against PROMETHEUS_RULE_SHAPE below.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from testbed.openai_server import FakeOpenAI

from .chart_tools import CHART, HELMS, RELEASE, env_of, kinds, load_values, pod_specs, run, tool, values_args
from .helpers import endpoint, model
from .servers import LoopbackServer, free_port, loopback_server

pytestmark = pytest.mark.e2e  # runs helm, promtool, Prometheus and the Pushgateway

RULES_TEST = Path(__file__).resolve().parent / "prometheus" / "rules_test.yaml"
METRICS_ON = ["metrics-rules.yaml"]
METRICS_OFF = ["readme-endpoints.yaml"]
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
JOB = "model-monitor"
INSTANCE = RELEASE  # the chart's MODEL_MONITOR_METRICS_INSTANCE in mode all
ALERTS = (
    "ModelMonitorModelFailing",
    "ModelMonitorModelDegraded",
    "ModelMonitorTTFTOverSLO",
    "ModelMonitorNoRun",
    "ModelMonitorAbsent",
)
WAIT_S = 60  # bound on every wait for Prometheus to show a pushed series (it scrapes every second)
# Instant queries ask about a time up to 2 run intervals after the push: Prometheus must still see its samples.
LOOKBACK_DELTA = "30m"

# The CRD's shape, as far as the chart writes it (kubernetes-validate has no schema for monitoring.coreos.com).
PROMETHEUS_RULE_SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr", "labels", "annotations"],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"},
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


# --- one real monitor run, and what its series must show -----------------------------------------------------------

# The endpoints file of the run, against FakeOpenAI (its fault tokens are in the model names): a passing stream
# (ttft, tokens/s, prompt/completion/reasoning tokens), a stream slower to its first token than the default 5 s
# TTFT SLO, a pass after a 503 and a retry (degraded), a failure (HTTP 500: server_error) and an embedding.
RUN_MODELS = {
    "gw": [
        model("dash-stream+reasoning+token_delay=0.05", id="chat-fast", stream=True),
        model("dash-slow+delay=6", id="chat-slow", stream=True),
        model("dash-flaky+flaky=1", id="chat-flaky", retries=1),
        model("dash-down+status=500", id="chat-down"),
    ],
    "search": [model("dash-embed", type="embedding")],
}


@dataclass(frozen=True)
class PushedCase:
    """One case of the run, as its results and JUnit properties tell it."""

    endpoint: str
    model: str
    success: bool
    degraded: bool
    ttft_s: float | None
    tokens_per_second: float | None
    token_kinds: frozenset[str]
    error_class: str | None

    @classmethod
    def of(cls, entry: dict[str, Any], junit: dict[str, str]) -> PushedCase:
        """From the case's --results-json entry and its JUnit properties (which say whether it was degraded)."""
        metrics = entry["metrics"]
        return cls(
            entry["endpoint"],
            entry["model"],
            success=entry["verdict"] == "pass",
            degraded="model_monitor.degraded" in junit,
            ttft_s=metrics.get("ttft_s"),
            tokens_per_second=metrics.get("tokens_per_s"),
            token_kinds=frozenset(
                kind for kind in ("prompt", "completion", "reasoning") if f"{kind}_tokens" in metrics
            ),
            error_class=entry["class"],
        )


@dataclass
class PushedRun:
    """The run's cases, and the times around its push."""

    cases: tuple[PushedCase, ...]
    before_push: float  # a time Prometheus has no pushed series for
    pushed_at: float  # the run's model_monitor_last_run_timestamp_seconds, as Prometheus has it

    def matching(self, predicate: Callable[[PushedCase], bool]) -> set[tuple[str, ...]]:
        """(endpoint, model) of the run's cases that match."""
        return {(case.endpoint, case.model) for case in self.cases if predicate(case)}


# The labels that tell each panel's series apart.
PANEL_KEYS: dict[str, tuple[str, ...]] = {
    "Success per model": ("endpoint", "model"),
    "Degraded": ("endpoint", "model"),
    "Time to first token": ("endpoint", "model"),
    "Latency": ("endpoint", "model"),
    "Tokens per second": ("endpoint", "model"),
    "Tokens used per run": ("endpoint", "model", "kind"),
    "Errors by class": ("class",),
    "Attempts": ("endpoint", "model"),
    "Last run age": ("instance",),
}


def expected_panels(run: PushedRun) -> dict[str, set[tuple[str, ...]]]:
    """What each panel shows for the run: the values of its PANEL_KEYS labels."""
    every = run.matching(lambda c: True)
    return {
        "Success per model": every,
        "Degraded": every,
        "Time to first token": run.matching(lambda c: c.ttft_s is not None),
        "Latency": every,
        "Tokens per second": run.matching(lambda c: c.tokens_per_second is not None),
        "Tokens used per run": {(c.endpoint, c.model, kind) for c in run.cases for kind in c.token_kinds},
        "Errors by class": {(c.error_class,) for c in run.cases if c.error_class},
        "Attempts": every,
        "Last run age": {(INSTANCE,)},
    }


def expected_variables(run: PushedRun) -> dict[str, set[str]]:
    """What each dashboard variable offers for the run."""
    return {
        "instance": {INSTANCE},
        "endpoint": {c.endpoint for c in run.cases},
        "model": {c.model for c in run.cases},
    }


# --- helpers ------------------------------------------------------------------------------------------------------


def render(helm: str, files: list[str]) -> list[dict[str, Any]]:
    proc = run([tool(helm), "template", RELEASE, str(CHART), *values_args(files)])
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def prometheus_rule() -> dict[str, Any]:
    (rule,) = kinds(render("helm4", METRICS_ON), "PrometheusRule")
    return rule


def rule_values() -> dict[str, Any]:
    return load_values(METRICS_ON)["metrics"]["prometheusRule"]


def write_rules(directory: Path) -> Path:
    """The rendered PrometheusRule's spec (its groups) as a Prometheus rule file."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"], sort_keys=False))
    return path


def alert_exprs() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for group in prometheus_rule()["spec"]["groups"] for rule in group["rules"]}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def substitute(expr: str, variables: dict[str, str]) -> str:
    """A panel's query as Grafana sends it, every variable set to `variables` (All: its allValue)."""
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], expr)
    assert "$" not in out, out
    return out


def all_values() -> dict[str, str]:
    return {v["name"]: v["allValue"] for v in dashboard()["templating"]["list"] if v["type"] == "query"}


# --- promtool ------------------------------------------------------------------------------------------------------


def test_promtool_checks_the_rendered_rules(tmp_path: Path) -> None:
    proc = run([tool("promtool"), "check", "rules", str(write_rules(tmp_path))])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_promtool_unit_tests_pass_and_cover_every_alert(tmp_path: Path) -> None:
    write_rules(tmp_path)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    proc = run([tool("promtool"), "test", "rules", str(tmp_path / RULES_TEST.name)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {t["alertname"] for test in tests for t in test["alert_rule_test"] if t["exp_alerts"]}
    assert set(alert_exprs()) == set(ALERTS) == fired


def test_the_rules_template_does_no_arithmetic() -> None:
    """Every duration and number of the alerts is a value as written (no logic in templates)."""
    template = (CHART / "files" / "prometheus-rules.yaml").read_text(encoding="utf-8")
    assert not re.search(r"{{[^}]*\b(mul|div|add|sub|mod|add1|max|min)\b", template)


def test_the_default_no_run_duration_is_the_same_in_seconds() -> None:
    """noRunFor (the `for:` of ModelMonitorAbsent) and noRunSeconds (ModelMonitorNoRun's threshold) are one length."""
    defaults = load_values([])["metrics"]["prometheusRule"]
    minutes = re.fullmatch(r"(\d+)m", defaults["noRunFor"])
    assert minutes and int(minutes.group(1)) * 60 == defaults["noRunSeconds"]


def test_unit_tests_assume_the_default_thresholds() -> None:
    """rules_test.yaml's timings are those of the chart's defaults: a change of default must update it."""
    defaults = load_values([])["metrics"]["prometheusRule"]
    assert {k: v for k, v in defaults.items() if k not in ("enabled", "namespace", "labels")} == {
        "failingFor": "10m",
        "noRunFor": "10m",
        "noRunSeconds": 600,
        "degradedFor": "15m",
        "ttftSloSeconds": 5,
        "ttftFor": "15m",
        "severity": "critical",
        "warningSeverity": "warning",
    }
    assert {k: v for k, v in rule_values().items() if k not in ("enabled", "namespace", "labels")} == {
        k: v for k, v in defaults.items() if k not in ("enabled", "namespace", "labels")
    }


# --- a real Pushgateway scraped by a real Prometheus ----------------------------------------------------------------


@dataclass
class Stack:
    """A real Pushgateway and the real Prometheus that scrapes it."""

    pushgateway: LoopbackServer
    prometheus: LoopbackServer

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.prometheus.url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=10
        )
        assert response.status_code == 200, f"{expr}: HTTP {response.status_code} {response.text}"
        return response.json()["data"]["result"]

    def series(self, match: str) -> list[dict[str, str]]:
        response = httpx.get(f"{self.prometheus.url}/api/v1/series", params={"match[]": match}, timeout=10)
        assert response.status_code == 200, f"{match}: HTTP {response.status_code} {response.text}"
        return response.json()["data"]


def wait_for(probe: Callable[[], list[Any]], what: str) -> list[Any]:
    """probe() once it returns something, polled for at most WAIT_S seconds."""
    deadline = time.monotonic() + WAIT_S
    while not (found := probe()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert found, f"{what}: nothing within {WAIT_S} s"
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("prometheus")
    gateway_port, prometheus_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}],
            }
        ],
    }
    (work / "prom.yml").write_text(yaml.safe_dump(config))
    gateway_cmd = [
        tool("prometheus-pushgateway"),
        f"--web.listen-address=127.0.0.1:{gateway_port}",
        "--persistence.file=",
    ]  # nothing left from an earlier run
    prometheus_cmd = [
        tool("prometheus"),
        f"--config.file={work / 'prom.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        f"--query.lookback-delta={LOOKBACK_DELTA}",
    ]
    with (
        loopback_server(
            "pushgateway", gateway_cmd, port=gateway_port, ready_path="/-/ready", log=work / "pushgateway.log"
        ) as pushgateway,
        loopback_server(
            "prometheus", prometheus_cmd, port=prometheus_port, ready_path="/-/ready", log=work / "prometheus.log"
        ) as prometheus,
    ):
        yield Stack(pushgateway, prometheus)


@pytest.fixture
def pushed(
    stack: Stack,
    openai_server: FakeOpenAI,
    run_monitor: Callable[..., Any],
    module_runs: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> PushedRun:
    """One monitor run of RUN_MODELS, pushing to the stack's Pushgateway as the chart's CronJob does (the URL and the
    instance from the environment), once Prometheus has scraped it; made once for the module."""
    if "pushed" not in module_runs:
        monkeypatch.setenv("MODEL_MONITOR_PUSHGATEWAY_URL", stack.pushgateway.url)
        monkeypatch.setenv("MODEL_MONITOR_METRICS_INSTANCE", INSTANCE)
        results = tmp_path_factory.mktemp("run") / "results.json"
        before_push = time.time()
        run = run_monitor(
            {"endpoints": [endpoint(openai_server.url, *models, name=name) for name, models in RUN_MODELS.items()]},
            f"--results-json={results}",
        )
        assert run.ret == 1, run.output  # the failing case fails the run; the degraded one passes
        assert (
            f"metrics: {len(run.cases)} cases pushed to {stack.pushgateway.url}/metrics/job/{JOB}/instance/{INSTANCE}"
            in run.output
        ), run.output
        entries = json.loads(results.read_text(encoding="utf-8"))["cases"]
        (found,) = wait_for(
            lambda: stack.query(
                f'model_monitor_last_run_timestamp_seconds{{job="{JOB}", instance="{INSTANCE}"}}', time.time()
            ),
            "the run's model_monitor_last_run_timestamp_seconds in Prometheus",
        )
        module_runs["pushed"] = PushedRun(
            tuple(PushedCase.of(e, run.cases[e["id"]]) for e in entries), before_push, float(found["value"][1])
        )
    return module_runs["pushed"]


def test_the_run_has_every_kind_of_case_the_expectations_need(pushed: PushedRun) -> None:
    """Else an expectation derived from the run could be empty and prove nothing."""
    slo = rule_values()["ttftSloSeconds"]
    assert [
        c
        for c in pushed.cases
        if c.success and c.tokens_per_second and c.token_kinds >= {"prompt", "completion", "reasoning"}
    ]
    assert [c for c in pushed.cases if c.ttft_s is not None and c.ttft_s > slo]
    assert [c for c in pushed.cases if c.ttft_s is not None and c.ttft_s <= slo]
    assert [c for c in pushed.cases if c.success and c.degraded]
    assert [c for c in pushed.cases if not c.success and c.error_class]
    assert [c for c in pushed.cases if c.endpoint == "search" and c.token_kinds == {"prompt"}]


def labelled(result: list[dict[str, Any]], keys: tuple[str, ...]) -> set[tuple[str, ...]]:
    return {tuple(item["metric"].get(key, "") for key in keys) for item in result}


@pytest.mark.parametrize("title", PANEL_KEYS)
def test_every_panel_query_returns_the_runs_series(stack: Stack, pushed: PushedRun, title: str) -> None:
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == title]
    for target in panel["targets"]:
        expr = substitute(target["expr"], all_values())
        result = wait_for(lambda expr=expr: stack.query(expr, time.time()), f"panel {title!r}: {expr}")
        assert labelled(result, PANEL_KEYS[title]) == expected_panels(pushed)[title], expr


def test_every_panel_is_checked() -> None:
    assert sorted(p["title"] for p in dashboard()["panels"]) == sorted(PANEL_KEYS)


@pytest.mark.parametrize("name", ["instance", "endpoint", "model"])
def test_every_dashboard_variable_offers_the_runs_values(stack: Stack, pushed: PushedRun, name: str) -> None:
    """label_values(<selector>, <label>), as Grafana's Prometheus data source answers it: through /api/v1/series."""
    (variable,) = [v for v in dashboard()["templating"]["list"] if v["name"] == name]
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
    assert match, variable["query"]
    selector = substitute(match.group(1), all_values())
    found = wait_for(lambda: stack.series(selector), f"variable {name}: {selector}")
    assert {series[match.group(2)] for series in found} == expected_variables(pushed)[name]


def test_every_dashboard_variable_is_checked() -> None:
    names = {v["name"] for v in dashboard()["templating"]["list"] if v["type"] == "query"}
    assert names == {"instance", "endpoint", "model"}


def alert_expectations(run: PushedRun) -> dict[str, tuple[float, tuple[str, ...], set[tuple[str, ...]]]]:
    """Per alert: when to ask (Unix time), the labels that tell its series apart, what it must return then."""
    late = run.pushed_at + rule_values()["noRunSeconds"] + 60  # no run since the push
    slo = rule_values()["ttftSloSeconds"]
    return {
        "ModelMonitorModelFailing": (time.time(), ("endpoint", "model"), run.matching(lambda c: not c.success)),
        "ModelMonitorModelDegraded": (time.time(), ("endpoint", "model"), run.matching(lambda c: c.degraded)),
        "ModelMonitorTTFTOverSLO": (
            time.time(),
            ("endpoint", "model"),
            run.matching(lambda c: c.ttft_s is not None and c.ttft_s > slo),
        ),
        "ModelMonitorNoRun": (late, ("job", "instance"), {(JOB, INSTANCE)}),
        "ModelMonitorAbsent": (run.before_push, ("job",), {(JOB,)}),
    }


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_expression_returns_the_expected_series(stack: Stack, pushed: PushedRun, alert: str) -> None:
    at, keys, expected = alert_expectations(pushed)[alert]
    expr = alert_exprs()[alert]
    result = wait_for(lambda: stack.query(expr, at), f"{alert}: {expr}")
    assert labelled(result, keys) == expected
    assert all(item["metric"].get("instance") in (None, INSTANCE) for item in result)


@pytest.mark.parametrize("alert", ALERTS)
def test_no_alert_expression_holds_at_the_other_times(stack: Stack, pushed: PushedRun, alert: str) -> None:
    """Right after the run only the model alerts hold; noRunSeconds later only NoRun; before it only Absent."""
    times = {
        "now": time.time(),
        "late": alert_expectations(pushed)["ModelMonitorNoRun"][0],
        "before": pushed.before_push,
    }
    holds_at = {"ModelMonitorNoRun": "late", "ModelMonitorAbsent": "before"}.get(alert, "now")
    for name, at in times.items():
        if name != holds_at:
            assert stack.query(alert_exprs()[alert], at) == [], f"{alert} at {name}"


# --- helm: on and off, and the shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("files", [METRICS_OFF, METRICS_ON], ids=["off", "on"])
def test_lint_strict_with_metrics_on_and_off(helm: str, files: list[str]) -> None:
    proc = run([tool(helm), "lint", "--strict", str(CHART), *values_args(files)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("helm", HELMS)
def test_metrics_are_off_by_default(helm: str) -> None:
    docs = render(helm, METRICS_OFF)
    assert not kinds(docs, "PrometheusRule")
    assert not [cm for cm in kinds(docs, "ConfigMap") if cm["metadata"]["name"].endswith("-dashboard")]
    for spec in pod_specs(docs):
        env = env_of(spec["containers"][0])
        assert "MODEL_MONITOR_PUSHGATEWAY_URL" not in env and "MODEL_MONITOR_METRICS_INSTANCE" not in env


@pytest.mark.parametrize("helm", HELMS)
def test_prometheus_rule_has_the_crds_shape(helm: str) -> None:
    (rule,) = kinds(render(helm, METRICS_ON), "PrometheusRule")
    jsonschema.Draft202012Validator(PROMETHEUS_RULE_SHAPE).validate(rule)
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


@pytest.mark.parametrize("helm", HELMS)
def test_dashboard_configmap_is_the_dashboard_file_for_the_sidecar(helm: str) -> None:
    (config_map,) = [cm for cm in kinds(render(helm, METRICS_ON), "ConfigMap") if "model-monitor.json" in cm["data"]]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Models"}
    assert json.loads(config_map["data"]["model-monitor.json"]) == dashboard()


def test_dashboard_takes_its_data_source_as_a_variable() -> None:
    board = dashboard()
    (source,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    uses = [p["datasource"] for p in board["panels"]] + [t["datasource"] for p in board["panels"] for t in p["targets"]]
    assert uses and all(use == {"type": "prometheus", "uid": f"${{{source['name']}}}"} for use in uses)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (METRICS_ON, {RELEASE: {"value": "http://prometheus-pushgateway.monitoring:9091"}}),
        (
            ["metrics-dashboard.yaml"],
            {
                f"{RELEASE}/gw": {"valueFrom": {"secretKeyRef": {"name": "pushgateway", "key": "url"}}},
                f"{RELEASE}/search": {"valueFrom": {"secretKeyRef": {"name": "pushgateway", "key": "url"}}},
            },
        ),
    ],
    ids=["value-mode-all", "secret-per-endpoint"],
)
def test_each_cronjob_pushes_to_the_url_under_its_own_instance(files: list[str], expected: dict[str, Any]) -> None:
    """A push replaces its group: split CronJobs must not share one, or each would delete the other's series."""
    pushes = {}
    for cronjob in kinds(render("helm4", files), "CronJob"):
        env = env_of(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
        url = {k: v for k, v in env["MODEL_MONITOR_PUSHGATEWAY_URL"].items() if k != "name"}
        pushes[env["MODEL_MONITOR_METRICS_INSTANCE"]["value"]] = url
    assert pushes == expected


# --- helm test leaves no group behind -----------------------------------------------------------------------------

HELM_TEST_RELEASE = "helmtest"  # a release of its own: the module's run pushed as RELEASE


def pod_environ(container: dict[str, Any], pushgateway: str, index: int | None) -> dict[str, str]:
    """A rendered container's environment as the pod gets it (its literal values), the in-cluster Pushgateway URL
    replaced by the stack's and $(JOB_COMPLETION_INDEX) expanded for an Indexed Job's pod."""
    environ = {name: item["value"] for name, item in env_of(container).items() if "value" in item}
    if "MODEL_MONITOR_PUSHGATEWAY_URL" in environ:
        environ["MODEL_MONITOR_PUSHGATEWAY_URL"] = pushgateway
    if index is not None:
        environ = {name: value.replace("$(JOB_COMPLETION_INDEX)", str(index)) for name, value in environ.items()}
    return environ


def test_helm_test_leaves_no_group_an_alert_can_see(
    stack: Stack, openai_server: FakeOpenAI, run_monitor: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sharded install: the helm test pod runs first, then the CronJob's two shards, each with the environment the
    chart renders, against a real Pushgateway scraped by a real Prometheus. Only the shards' groups reach Prometheus
    (a later run replaces each), so the rendered ModelMonitorNoRun can only ever see those: none is left to fire
    forever for the test pod."""
    proc = run(
        [
            tool("helm4"),
            "template",
            HELM_TEST_RELEASE,
            str(CHART),
            *values_args(METRICS_ON),
            "--set",
            "cronJob.shards=2",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    docs = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    (test_pod,) = kinds(docs, "Pod")
    (cronjob,) = kinds(docs, "CronJob")
    job_container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    pods = [(pod_environ(test_pod["spec"]["containers"][0], stack.pushgateway.url, None), 0)]
    pods += [(pod_environ(job_container, stack.pushgateway.url, index), 0) for index in range(2)]
    endpoints = {"endpoints": [endpoint(openai_server.url, *(model(f"ht-{i}") for i in range(6)))]}
    for environ, status in pods:
        with monkeypatch.context() as env:
            for name in ("MODEL_MONITOR_PUSHGATEWAY_URL", "MODEL_MONITOR_METRICS_INSTANCE", "MODEL_MONITOR_SHARD"):
                env.delenv(name, raising=False)
            for name, value in environ.items():
                if name != "MODEL_MONITOR_ENDPOINTS":  # the run's own file, by flag
                    env.setenv(name, value)
            done = run_monitor(endpoints)
        assert done.ret == status, done.output
    shards = {f"{HELM_TEST_RELEASE}/shard-{index}" for index in range(2)}
    selector = f'model_monitor_last_run_timestamp_seconds{{job="{JOB}", instance=~"{HELM_TEST_RELEASE}(/.*)?"}}'
    wait_for(
        lambda: [1] if {s["instance"] for s in stack.series(selector)} == shards else [],
        "both shards' last-run series in Prometheus",
    )
    seen = time.time()  # two more scrapes: the test pod's push, the first of the three, would long have been seen
    wait_for(
        lambda: [
            s for s in stack.query('timestamp(up{job="pushgateway"})', time.time()) if float(s["value"][1]) > seen + 2
        ],
        "two more scrapes of the Pushgateway",
    )
    assert {s["instance"] for s in stack.series(selector)} == shards
    (rule,) = kinds(docs, "PrometheusRule")
    no_run = next(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "ModelMonitorNoRun")
    late = time.time() + rule_values()["noRunSeconds"] + 60
    assert {item["metric"]["instance"] for item in stack.query(no_run, late)} == shards, "a next run clears each"
