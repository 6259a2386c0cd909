"""The Helm chart, proven with the real tools: Helm 3.17 and 4.1, kubernetes-validate, checkov.

Every values file set in MATRIX is linted (--strict) and rendered by both Helm versions, and the rendered manifests
are checked: both Helms agree, the API objects are valid for Kubernetes 1.29 and 1.33 (kubernetes-validate
--strict), every pod passes the Pod Security Standard "restricted", and the chosen checkov checks pass. Every file in
tests/chart_values/bad/ must fail `helm template` and `helm install` with the field its `# expect:` line names.

Run scripts/install-tools first: a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from model_monitor import config, shard
from model_monitor.redact import Redactor

from .chart_tools import (
    CHART,
    HELMS,
    RELEASE,
    VALUES_DIR,
    env_of,
    kinds,
    load_values,
    pod_specs,
    run,
    tool,
    values_args,
)
from .helpers import ROOT

pytestmark = pytest.mark.e2e  # runs helm, kubernetes-validate and checkov

HELM_VERSIONS = {"helm3": "v3.17.", "helm4": "v4.1."}
KUBE_VERSIONS = ("1.29.0", "1.33.0")
CRONJOB_NAME_MAX = 52  # Kubernetes appends 11 characters to name each Job of a CronJob
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENDPOINTS_FILE = "/etc/model-monitor/endpoints.yaml"
# What a run-deadline margin must leave for the pod's start beyond the stop grace: scheduling, a cached image,
# Python's start-up and collection. activeDeadlineSeconds counts them, the monitor's run deadline does not.
POD_START_SECONDS = 15
SUITE_COMMAND = ["model-monitor"]

# Values file sets rendered by both Helms: [files] (combined with -f, in order).
MATRIX: dict[str, list[str]] = {
    "readme-secret": ["readme-endpoints.yaml", "readme-telemetry-secret.yaml"],
    "readme-value": ["readme-endpoints.yaml", "readme-telemetry-value.yaml", "readme-schedule.yaml"],
    "original-full": ["original-full.yaml"],
    "original-defaults": ["original-defaults.yaml"],
    "telemetry-value": ["telemetry-value.yaml"],
    "telemetry-valuefrom": ["telemetry-valuefrom.yaml"],
    "no-telemetry": ["no-telemetry.yaml"],
    "api-keys": ["api-keys.yaml"],
    "per-endpoint": ["per-endpoint.yaml"],
    "per-model": ["per-model.yaml"],
    "everything": ["everything.yaml"],
    "no-deadline": ["no-deadline.yaml"],
    "deadlines": ["deadlines.yaml"],
    "model-types": ["model-types.yaml"],
    "metrics-dashboard": ["metrics-dashboard.yaml"],
    "shards": ["shards.yaml"],
}

# checkov checks that must pass on every rendered manifest: the Pod Security ones. Left out, on purpose:
# CKV_K8S_10..13 (requests/limits: the chart sets no default resources), CKV_K8S_15 (pull Always: a fixed tag with
# IfNotPresent is fine), CKV_K8S_21 (namespace: chosen at install), CKV_K8S_35 (secrets as env: the monitor's
# interface takes API keys and ping URLs from env), CKV_K8S_43 (image digest: the tag is the chart's appVersion),
# CKV_K8S_8/9 (probes: a batch job has none), CKV2_K8S_6 (NetworkPolicy: the monitor must reach arbitrary endpoints).
CHECKOV_CHECKS = (
    "CKV_K8S_14",  # image tag fixed, not latest or blank
    "CKV_K8S_16",  # not privileged
    "CKV_K8S_17",  # no host PID namespace
    "CKV_K8S_18",  # no host IPC namespace
    "CKV_K8S_19",  # no host network
    "CKV_K8S_20",  # allowPrivilegeEscalation: false
    "CKV_K8S_22",  # read-only root filesystem
    "CKV_K8S_23",  # not root (runAsNonRoot)
    "CKV_K8S_25",  # no added capabilities
    "CKV_K8S_26",  # no hostPort
    "CKV_K8S_27",  # no docker socket
    "CKV_K8S_28",  # no NET_RAW
    "CKV_K8S_29",  # security context on pod and containers
    "CKV_K8S_30",  # security context on containers
    "CKV_K8S_31",  # seccomp RuntimeDefault
    "CKV_K8S_37",  # capabilities dropped (ALL)
    "CKV_K8S_38",  # no service account token mounted
    "CKV_K8S_39",  # no SYS_ADMIN
    "CKV_K8S_40",  # high UID (>= 10000)
)


# --- tools ------------------------------------------------------------------------------------------------------


@cache
def render(helm: str, case: str) -> list[dict[str, Any]]:
    """helm template of one matrix case: the list of manifests."""
    proc = run([tool(helm), "template", RELEASE, str(CHART), *values_args(MATRIX[case])])
    assert proc.returncode == 0, f"{helm} template ({case}) failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def endpoints_config_map(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap of endpoints.yaml (not the Grafana dashboard's)."""
    (config_map,) = [cm for cm in kinds(docs, "ConfigMap") if "endpoints.yaml" in cm["data"]]
    return config_map


def endpoints_file(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(endpoints_config_map(docs)["data"]["endpoints.yaml"])


# --- the tools are there and are the versions we claim -----------------------------------------------------------


@pytest.mark.parametrize("helm", HELMS)
def test_helm_versions(helm: str) -> None:
    proc = run([tool(helm), "version", "--short"])
    assert proc.stdout.startswith(HELM_VERSIONS[helm]), proc.stdout + proc.stderr


# --- values.schema.json: generated, one source of truth ----------------------------------------------------------


def _gen_module() -> Any:
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("gen_values_schema", str(ROOT / "scripts" / "gen-values-schema"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_values_schema_is_the_generators_output() -> None:
    expected = _gen_module().generate()
    actual = (CHART / "values.schema.json").read_text(encoding="utf-8")
    assert actual == expected, "chart/values.schema.json is out of date: run scripts/gen-values-schema"
    proc = run([sys.executable, str(ROOT / "scripts" / "gen-values-schema"), "--check"])
    assert proc.returncode == 0, proc.stderr


def test_values_schema_inlines_the_endpoints_schema() -> None:
    values_schema = json.loads((CHART / "values.schema.json").read_text())
    endpoints_schema = json.loads((ROOT / "model_monitor" / "config" / "endpoints.schema.json").read_text())
    for name in ("endpoints", "defaults"):
        assert values_schema["properties"][name] == endpoints_schema["properties"][name]
    for name, definition in endpoints_schema["$defs"].items():
        assert values_schema["$defs"][name] == definition
    chart_rules = json.loads((CHART / "values.schema.in.json").read_text()).get("allOf", [])
    assert endpoints_schema["allOf"] and values_schema["allOf"] == [*chart_rules, *endpoints_schema["allOf"]]


def test_generator_refuses_a_clash() -> None:
    gen = _gen_module()
    with pytest.raises(gen.SchemaMergeError, match="endpoint"):
        gen.merge(
            {"$defs": {"endpoint": {}}}, {"properties": {"endpoints": {}, "defaults": {}}, "$defs": {"endpoint": {}}}
        )


def test_every_chart_schema_field_has_a_description() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing: list[str] = []

    def described(node: dict[str, Any]) -> bool:
        ref = node.get("$ref", "")
        return "description" in node or (ref.startswith("#/$defs/") and "description" in schema["$defs"][ref[8:]])

    def walk(node: Any, where: str) -> None:
        if not isinstance(node, dict):
            return
        for name, sub in node.get("properties", {}).items():
            if not described(sub):
                missing.append(f"{where}.{name}")
            walk(sub, f"{where}.{name}")
        for name, sub in node.get("$defs", {}).items():
            if not described(sub):
                missing.append(f"$defs.{name}")
            walk(sub, f"$defs.{name}")
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{where}[]")

    walk(schema, "")
    assert not missing, f"schema fields without a description: {missing}"


def test_every_values_key_has_a_comment() -> None:
    """A `##` comment line directly above every key of values.yaml."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z][\w.-]*:", line) and not lines[number - 1].lstrip().startswith("##"):
            undocumented.append(f"values.yaml:{number + 1}: {line.strip()}")
    assert not undocumented, "\n".join(undocumented)


def test_default_values_match_the_schema_once_there_is_an_endpoint() -> None:
    values = load_values(["readme-endpoints.yaml"])
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(values)


def test_readme_documents_every_values_key() -> None:
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    opaque = {
        "podSecurityContext",
        "securityContext",
        "telemetry.url.valueFrom",
        "telemetry.healthchecksUrl.valueFrom",
        "telemetry.apiKey.valueFrom",
        "cronJob.resources",
        "metrics.grafanaDashboard.labels",
    }

    def keys(node: Any, prefix: str = "") -> list[str]:
        out = []
        for name, value in node.items():
            path = f"{prefix}{name}"
            out.append(path)
            if isinstance(value, dict) and value and path not in opaque:
                out.extend(keys(value, path + "."))
        return out

    expected = {k for k in keys(yaml.safe_load((CHART / "values.yaml").read_text()))}
    parents = {k for k in expected if any(o.startswith(k + ".") for o in expected)}
    assert sorted(expected - parents - documented) == []


# --- lint and render the matrix with both Helms -----------------------------------------------------------------


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("case", MATRIX)
def test_lint_strict(helm: str, case: str) -> None:
    proc = run([tool(helm), "lint", "--strict", str(CHART), *values_args(MATRIX[case])])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("case", MATRIX)
def test_helm3_and_helm4_render_the_same(case: str) -> None:
    assert render("helm3", case) == render("helm4", case)


@pytest.mark.parametrize("case", MATRIX)
def test_manifests_are_valid_kubernetes(case: str) -> None:
    import kubernetes_validate

    for version in KUBE_VERSIONS:
        for doc in render("helm4", case):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: {exc}")


def test_manifests_pass_the_chosen_checkov_checks(tmp_path: Path) -> None:
    for case in MATRIX:
        (tmp_path / f"{case}.yaml").write_text(yaml.safe_dump_all(render("helm4", case)))
    proc = run(
        [
            tool("checkov"),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--check",
            ",".join(CHECKOV_CHECKS),
            "--output",
            "json",
        ],
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(proc.stdout)
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    passed = {c["check_id"] for c in report["results"]["passed_checks"]}
    assert passed == set(CHECKOV_CHECKS), f"checks that never ran: {set(CHECKOV_CHECKS) - passed}"


@pytest.mark.parametrize("case", MATRIX)
def test_pods_meet_pod_security_restricted(case: str) -> None:
    """The Pod Security Standard "restricted" profile, checked field by field."""
    allowed_volumes = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for spec in pod_specs(render("helm4", case)):
        pod_sc = spec.get("securityContext", {})
        assert spec["automountServiceAccountToken"] is False
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= allowed_volumes, volume
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (0, None)
            assert sc["allowPrivilegeEscalation"] is False
            assert not sc.get("privileged")
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile"))
            assert seccomp["type"] in ("RuntimeDefault", "Localhost")
            assert sc["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            tmp = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
            assert "emptyDir" in tmp


# --- what the manifests say ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MATRIX)
def test_configmap_is_the_values_endpoints_file(case: str) -> None:
    """endpoints.yaml is `endpoints` + `defaults` verbatim, valid for the monitor, and holds no secret."""
    values = load_values(MATRIX[case])
    docs = render("helm4", case)
    data = endpoints_file(docs)
    assert data["endpoints"] == values["endpoints"]
    assert data.get("defaults", {}) == values["defaults"]
    schema = json.loads((ROOT / "model_monitor" / "config" / "endpoints.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    config_map = endpoints_config_map(docs)
    text = json.dumps(config_map)
    assert "SECRET" not in text and "secretKeyRef" not in text


@pytest.mark.parametrize("case", MATRIX)
def test_endpoints_file_loads_in_the_monitor(case: str, tmp_path: Path) -> None:
    """The monitor's own loader accepts the rendered file, given the env the CronJob passes."""
    path = tmp_path / "endpoints.yaml"
    config_map = endpoints_config_map(render("helm4", case))
    path.write_text(config_map["data"]["endpoints.yaml"])
    cronjob = kinds(render("helm4", case), "CronJob")[0]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    environ = {name: item.get("value", f"from-{name}") for name, item in env_of(container).items()}
    suite = config.load(path, environ)
    assert suite.resolve(suite.cases, Redactor(), environ)


@pytest.mark.parametrize("case", MATRIX)
def test_cronjob_defaults_and_annotations(case: str) -> None:
    values = load_values(MATRIX[case])
    docs = render("helm4", case)
    config_map = endpoints_config_map(docs)
    for cronjob in kinds(docs, "CronJob"):
        name = cronjob["metadata"]["name"]
        assert len(name) <= CRONJOB_NAME_MAX and DNS1123_LABEL.match(name), name
        assert cronjob["metadata"]["annotations"]["k8s.cronitor.io/exclude"] == "true"
        spec = cronjob["spec"]
        assert spec["concurrencyPolicy"] == values["cronJob"]["concurrencyPolicy"]
        assert spec["suspend"] is values["cronJob"]["suspend"]
        assert spec["successfulJobsHistoryLimit"] == values["cronJob"]["successfulJobsHistoryLimit"]
        assert spec["failedJobsHistoryLimit"] == values["cronJob"]["failedJobsHistoryLimit"]
        assert spec.get("startingDeadlineSeconds") == values["cronJob"]["startingDeadlineSeconds"]
        assert spec.get("timeZone") == values["cronJob"]["timeZone"]
        job = spec["jobTemplate"]["spec"]
        assert job["backoffLimitPerIndex" if values["cronJob"]["shards"] > 1 else "backoffLimit"] == 0
        assert job.get("activeDeadlineSeconds") == values["cronJob"]["activeDeadlineSeconds"]
        assert job.get("ttlSecondsAfterFinished") == values["cronJob"]["ttlSecondsAfterFinished"]
        pod = job["template"]
        assert pod["spec"]["restartPolicy"] == values["cronJob"]["restartPolicy"]
        checksum = pod["metadata"]["annotations"]["checksum/config"]
        assert checksum == hashlib.sha256(config_map["data"]["endpoints.yaml"].rstrip("\n").encode()).hexdigest()
        for key, value in {**values["podLabels"], **values["commonLabels"]}.items():
            assert pod["metadata"]["labels"][key] == value
        for key, value in values["podAnnotations"].items():
            assert pod["metadata"]["annotations"][key] == value
        for key, value in values["commonLabels"].items():
            assert cronjob["metadata"]["labels"][key] == value and config_map["metadata"]["labels"][key] == value
        for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
            assert pod["spec"].get(key) == (values[key] or None)
        (container,) = pod["spec"]["containers"]
        assert container.get("resources") == (values["cronJob"]["resources"] or None)
        assert container.get("envFrom") == (values["envFrom"] or None)
        image = values["cronJob"]["image"]
        if image["repository"] not in values["cronJob"]["legacyImages"]:
            app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
            assert container["image"] == f"{image['repository']}:{image['tag'] or app_version}"
        assert container["imagePullPolicy"] == image["pullPolicy"]
        assert "command" not in container, "the image's entrypoint runs the suite"


def test_history_limits_and_ttl_render_when_zero() -> None:
    (cronjob,) = kinds(render("helm4", "everything"), "CronJob")
    assert cronjob["spec"]["successfulJobsHistoryLimit"] == 0
    assert cronjob["spec"]["failedJobsHistoryLimit"] == 0
    assert cronjob["spec"]["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] == 0
    assert "startingDeadlineSeconds" not in cronjob["spec"]


@pytest.mark.parametrize("values", ["readme-secret", "original-defaults"])
def test_default_image_is_the_monitor_at_app_version(values: str) -> None:
    """Also for a 1.x values file that copied the 1.x default image, curlimages/curl:latest."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (cronjob,) = kinds(render("helm4", values), "CronJob")
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/model-monitor/model-monitor:{chart['appVersion']}"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("readme-secret", {"valueFrom": {"secretKeyRef": {"name": "cronitor-secret", "key": "cronitor-url"}}}),
        ("readme-value", {"value": "https://cronitor.link/p/your-key/your-group"}),
        ("original-full", {"valueFrom": {"secretKeyRef": {"name": "cronitor", "key": "url"}}}),
        ("no-telemetry", None),
    ],
)
def test_cronitor_url_from_value_or_value_from(case: str, expected: dict[str, Any] | None) -> None:
    for spec in pod_specs(render("helm4", case)):
        env = env_of(spec["containers"][0])
        if expected is None:
            assert "CRONITOR_URL" not in env
        else:
            assert {k: v for k, v in env["CRONITOR_URL"].items() if k != "name"} == expected


def test_telemetry_env_healthchecks_and_api_key() -> None:
    (cronjob,) = kinds(render("helm4", "telemetry-valuefrom"), "CronJob")
    env = env_of(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
    assert env["CRONITOR_ENV"]["value"] == "staging"
    assert env["CRONITOR_SCHEDULE"]["value"] == "*/5 * * * *"
    assert env["HEALTHCHECKS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "monitor-telemetry",
        "key": "healthchecks-url",
        "optional": True,
    }
    assert env["CRONITOR_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "cronitor-api", "key": "api-key"}
    (cronjob,) = kinds(render("helm4", "telemetry-value"), "CronJob")
    env = env_of(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
    assert env["HEALTHCHECKS_URL"]["value"] == "https://hc-ping.com/SECRET-HC-KEY"
    assert "CRONITOR_API_KEY" not in env


def test_api_keys_come_from_secrets() -> None:
    (cronjob,) = kinds(render("helm4", "api-keys"), "CronJob")
    env = env_of(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
    assert env["OPENAI_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "llm-api-keys", "key": "openai"}}
    assert env["TOGETHER_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "llm-api-keys", "key": "together"}}
    assert env["TEAM_NAME"] == {"name": "TEAM_NAME", "value": "ml-platform"}
    assert env["MODEL_MONITOR_ENDPOINTS"]["value"] == ENDPOINTS_FILE


def test_mode_all_is_one_cronjob_for_every_case() -> None:
    docs = render("helm4", "readme-secret")
    (cronjob,) = kinds(docs, "CronJob")
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert "args" not in container
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/model-monitor"]["readOnly"] is True


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "per-endpoint",
            {
                "vllm": "*/2 * * * *",
                "a-very-long-endpoint-name-that-would-never-fit-in-a-cronjob-name.example": "*/15 * * * *",
            },
        ),
        (
            "per-model",
            {
                "my-service/embed": "0 * * * *",
                "my-service/generate": "*/1 * * * *",
                "my-service/Org/Model:v1": "0 * * * *",
                "my-service/org-model-v1": "0 * * * *",
                "rr/reranker": "*/5 * * * *",
            },
        ),
    ],
)
def test_split_modes_pass_only_and_their_schedule(case: str, expected: dict[str, str]) -> None:
    cronjobs = kinds(render("helm4", case), "CronJob")
    got = {}
    for cronjob in cronjobs:
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["args"][:1] == ["--only"]
        only = container["args"][1]
        got[only] = cronjob["spec"]["schedule"]
        assert env_of(container)["CRONITOR_SCHEDULE"]["value"] == cronjob["spec"]["schedule"]
        assert cronjob["metadata"]["annotations"]["model-monitor/only"] == only
    assert got == expected
    names = [c["metadata"]["name"] for c in cronjobs]
    assert len(set(names)) == len(names)


def test_extra_args_follow_only() -> None:
    (cronjob,) = kinds(render("helm4", "everything"), "CronJob")
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["-m", "critical", "--junitxml=/tmp/report.xml"]


# --- shards: one Indexed Job whose pods split the cases ------------------------------------------------------------


def test_one_shard_is_one_pod_as_before() -> None:
    for spec in pod_specs(render("helm4", "readme-secret")):
        assert not {"JOB_COMPLETION_INDEX", "MODEL_MONITOR_SHARD"} & set(env_of(spec["containers"][0]))
    (cronjob,) = kinds(render("helm4", "readme-secret"), "CronJob")
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert not {"completionMode", "completions", "parallelism", "backoffLimitPerIndex"} & set(job)


@pytest.mark.parametrize("helm", HELMS)
def test_shards_make_the_job_indexed_and_pass_each_pod_its_shard(helm: str) -> None:
    """Each of the K pods gets --shard <its index>/K, once Kubernetes expands $(JOB_COMPLETION_INDEX): that works
    only for a variable listed before, so the chart lists it first (the Job controller would append it last)."""
    docs = render(helm, "shards")
    (cronjob,) = kinds(docs, "CronJob")
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 3, 3)
    assert job["backoffLimitPerIndex"] == 0 and "backoffLimit" not in job, "a failing shard stops no other shard"
    names = [item["name"] for item in job["template"]["spec"]["containers"][0]["env"]]
    env = env_of(job["template"]["spec"]["containers"][0])
    assert names.index("JOB_COMPLETION_INDEX") < names.index("MODEL_MONITOR_SHARD")
    field = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    expanded = [env["MODEL_MONITOR_SHARD"]["value"].replace("$(JOB_COMPLETION_INDEX)", str(i)) for i in range(3)]
    assert [shard.parse(text) for text in expanded] == [shard.Shard(i, 3) for i in range(3)]
    assert env["MODEL_MONITOR_METRICS_INSTANCE"]["value"] == f"{RELEASE}/shard-$(JOB_COMPLETION_INDEX)", "a group each"
    assert names.index("JOB_COMPLETION_INDEX") < names.index("MODEL_MONITOR_METRICS_INSTANCE")
    (pod,) = kinds(docs, "Pod")
    assert "MODEL_MONITOR_SHARD" not in env_of(pod["spec"]["containers"][0]), "helm test runs every case"


# --- deadlines and stopping: the monitor stops and reports before Kubernetes kills it ------------------------------


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("case", "run_deadline", "stop_grace", "termination_grace"),
    [
        ("readme-secret", "210", "10", 15),  # the defaults: activeDeadlineSeconds 240 minus a 30 s margin
        ("original-full", "210", "10", 15),  # a 1.x values file gets them too
        ("per-endpoint", "210", "10", 15),
        ("per-model", "210", "10", 15),
        ("everything", "570", "10", 15),  # activeDeadlineSeconds 600
        ("no-deadline", None, "10", 15),  # activeDeadlineSeconds null: no run deadline
        ("deadlines", "825", "25", 40),  # every key set, per endpoint
    ],
)
def test_run_deadline_stop_grace_and_termination_grace(
    helm: str, case: str, run_deadline: str | None, stop_grace: str, termination_grace: int
) -> None:
    """Every CronJob's pod (and the helm test pod) gets the run deadline, the stop grace and the termination grace."""
    specs = pod_specs(render(helm, case))
    assert len(specs) == len(kinds(render(helm, case), "CronJob")) + 1
    for spec in specs:
        env = env_of(spec["containers"][0])
        assert env.get("MODEL_MONITOR_RUN_DEADLINE", {}).get("value") == run_deadline
        assert env["MODEL_MONITOR_STOP_GRACE"]["value"] == stop_grace
        assert spec["terminationGracePeriodSeconds"] == termination_grace


@pytest.mark.parametrize("case", MATRIX)
def test_deadlines_leave_the_monitor_time_to_report(case: str) -> None:
    """Pod start + run deadline + stop grace fit in activeDeadlineSeconds; SIGKILL waits longer than the stop grace."""
    for cronjob in kinds(render("helm4", case), "CronJob"):
        job = cronjob["spec"]["jobTemplate"]["spec"]
        pod = job["template"]["spec"]
        env = env_of(pod["containers"][0])
        stop_grace = int(env["MODEL_MONITOR_STOP_GRACE"]["value"])
        assert pod["terminationGracePeriodSeconds"] > stop_grace
        if "activeDeadlineSeconds" in job:
            run_deadline = int(env["MODEL_MONITOR_RUN_DEADLINE"]["value"])
            assert POD_START_SECONDS + run_deadline + stop_grace <= job["activeDeadlineSeconds"]


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(("margin", "run_deadline"), [("239", "1"), ("240", None), ("300", None)])
def test_a_margin_must_be_smaller_than_the_active_deadline(helm: str, margin: str, run_deadline: str | None) -> None:
    proc = run(
        [
            tool(helm),
            "template",
            RELEASE,
            str(CHART),
            *values_args(["readme-endpoints.yaml"]),
            "--set",
            f"cronJob.runDeadlineMarginSeconds={margin}",
        ]
    )
    if run_deadline is None:
        assert proc.returncode != 0
        assert "cronJob.runDeadlineMarginSeconds must be smaller than cronJob.activeDeadlineSeconds" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        (cronjob,) = kinds([doc for doc in yaml.safe_load_all(proc.stdout) if doc], "CronJob")
        env = env_of(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
        assert env["MODEL_MONITOR_RUN_DEADLINE"]["value"] == run_deadline


def test_helm_test_pod_runs_the_suite_like_the_cronjob() -> None:
    docs = render("helm4", "api-keys")
    (pod,) = kinds(docs, "Pod")
    (cronjob,) = kinds(docs, "CronJob")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    job_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["spec"]["containers"] == job_pod["containers"]
    assert pod["spec"]["volumes"] == job_pod["volumes"]


def test_notes_say_what_was_installed_and_how_to_run_now() -> None:
    proc = run(
        [
            tool("helm4"),
            "install",
            "--dry-run=client",
            RELEASE,
            str(CHART),
            "-n",
            "monitoring",
            *values_args(MATRIX["per-model"]),
        ]
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    for cronjob in kinds(render("helm4", "per-model"), "CronJob"):
        assert cronjob["metadata"]["name"] in notes
    assert re.search(r"kubectl create job -n monitoring \S+ --from=cronjob/a-fullname-override-that-my-service-", notes)
    assert "helm test mm" in notes


def test_chart_packages_without_the_schema_source(tmp_path: Path) -> None:
    proc = run([tool("helm4"), "package", str(CHART), "-d", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    (archive,) = tmp_path.glob("*.tgz")
    listing = run(["tar", "-tzf", str(archive)]).stdout.split()
    assert "model-monitor/values.schema.json" in listing
    assert "model-monitor/values.schema.in.json" not in listing


# --- wrong values fail with the field named -----------------------------------------------------------------------

BAD = sorted(p.name for p in (VALUES_DIR / "bad").glob("*.yaml"))


def expected_words(name: str) -> list[str]:
    first = (VALUES_DIR / "bad" / name).read_text().splitlines()[0]
    assert first.startswith("# expect:"), f"{name}: first line must be '# expect: <field names>'"
    return first.split(":", 1)[1].split()


@pytest.mark.parametrize("name", BAD)
@pytest.mark.parametrize("helm", HELMS)
def test_bad_values_fail_with_the_field_named(helm: str, name: str) -> None:
    command = ["template"] if helm == "helm3" else ["install", "--dry-run=client"]
    proc = run([tool(helm), *command, RELEASE, str(CHART), "-f", str(VALUES_DIR / "bad" / name)])
    assert proc.returncode != 0, f"{helm} accepted bad values {name}"
    # Helm 4 indents the cause under the rule that failed: "- at '': 'allOf' failed" then "  - at '/endpoints/...".
    errors = [line for line in proc.stderr.splitlines() if line.lstrip().startswith("- ")]
    assert errors, proc.stderr
    words = set(re.split(r"[^A-Za-z0-9_]+", " ".join(errors)))
    missing = [w for w in expected_words(name) if w not in words]
    assert not missing, f"{helm}: error does not name {missing}:\n{proc.stderr}"
