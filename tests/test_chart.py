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
from model_monitor.types import TYPES

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
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest kubernetes-validate knows.
OLDEST, NEWEST = "1.27.0", "1.37.0"
SHARDS_NEED = "1.29.0"  # backoffLimitPerIndex: alpha (off by default) in 1.28, on by default from 1.29
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

# The checks of checkov's Kubernetes framework that the default render fails on purpose, each with its reason
# (chart/README.md, "Security", lists them too). Every other check of the framework passes.
CHECKOV_SKIPPED = {
    "CKV_K8S_8": "liveness probe: a Job that runs once and exits has nothing to probe",
    "CKV_K8S_9": "readiness probe: no Service sends the monitor traffic",
    "CKV_K8S_15": "pull policy Always: IfNotPresent with a fixed tag; Always makes every run depend on the "
    "registry; cronJob.image.digest pins it (then it passes)",
    "CKV_K8S_21": "default namespace: the namespace is chosen at install (helm install -n)",
    "CKV_K8S_35": "secrets as files: the monitor reads API keys and ping URLs from environment variables",
    "CKV_K8S_43": "image digest: the default is the release's tag; cronJob.image.digest pins it (then it passes)",
    "CKV2_K8S_6": "NetworkPolicy: the monitor must reach endpoints anywhere; your cluster's egress policy applies",
}
DIGEST = "sha256:" + "0123456789abcdef" * 4

# checkov checks that must pass on every rendered manifest of the matrix: the Pod Security ones (values files of
# the matrix may turn resources off, so the whole framework runs on the default render only).
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
def render(helm: str, case: str, kube_version: str | None = None) -> list[dict[str, Any]]:
    """helm template of one matrix case (for a Kubernetes version, else Helm's default): the list of manifests."""
    kube = ["--kube-version", kube_version] if kube_version else []
    proc = run([tool(helm), "template", RELEASE, str(CHART), *kube, *values_args(MATRIX[case])])
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


def test_readme_type_list_is_the_generators_output() -> None:
    """chart/README.md's table of model types is written from model_monitor/types/: every type, none else."""
    assert (CHART / "README.md").read_text(encoding="utf-8") == _gen_module().readme(), "run scripts/gen-values-schema"
    rows = re.findall(r"^\| `(\w+)` \| `(?:GET|POST) /v1/", (CHART / "README.md").read_text(), flags=re.M)
    assert rows == list(TYPES)


def test_readme_lists_every_variable_the_chart_sets() -> None:
    """The "Variable in the pod" table names every variable the chart sets (but the user's own: apiKeys, extraEnv),
    and no other."""
    table = (CHART / "README.md").read_text().split("| Variable in the pod |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", "\n".join(line.split(" | ")[0] for line in table.splitlines())))
    rendered: set[str] = set()
    for case, files in MATRIX.items():
        values = load_values(files)
        users = {item["env"] for item in values["apiKeys"]} | {item["name"] for item in values["extraEnv"]}
        for spec in pod_specs(render("helm4", case)):
            rendered |= set(env_of(spec["containers"][0])) - users
    assert rendered == documented


def test_readme_lists_every_alert_of_the_rules() -> None:
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", (CHART / "files" / "prometheus-rules.yaml").read_text(), re.M))
    documented = set(re.findall(r"^  \| `(\w+)` \|", (CHART / "README.md").read_text(), flags=re.M))
    assert alerts and alerts == documented


def test_values_schema_inlines_the_endpoints_schema() -> None:
    values_schema = json.loads((CHART / "values.schema.json").read_text())
    endpoints_schema = json.loads((ROOT / "model_monitor" / "config" / "endpoints.schema.json").read_text())
    for name in ("endpoints", "defaults"):
        assert values_schema["properties"][name] == endpoints_schema["properties"][name]
    for name, definition in endpoints_schema["$defs"].items():
        assert without_named_refusals(values_schema["$defs"][name]) == definition, name
    chart_rules = json.loads((CHART / "values.schema.in.json").read_text()).get("allOf", [])
    assert endpoints_schema["allOf"] and values_schema["allOf"] == [*chart_rules, *endpoints_schema["allOf"]]


def without_named_refusals(node: Any) -> Any:
    """A schema without the fields the generator added to say why a rule refuses them (`not: {}` and a `const`)."""
    if isinstance(node, list):
        return [without_named_refusals(item) for item in node]
    if not isinstance(node, dict):
        return node
    kept = {}
    for key, value in node.items():
        if key == "properties":
            named = {k for k, v in value.items() if isinstance(v, dict) and "not" in v and "const" in v}
            added = {k for k in named if value[k]["description"].startswith("Not a field of type")}
            value = {k: {"not": {}} if k in named else v for k, v in value.items() if k not in added}
        kept[key] = without_named_refusals(value)
    return kept


def test_refused_fields_say_why_in_the_chart_schema_only() -> None:
    """In the chart's schema a type's rule names each other type's field with the types that take it (Helm prints
    a const, never a description); the monitor's endpoints schema keeps the plain rules its loader words itself."""
    values_schema = json.loads((CHART / "values.schema.json").read_text())
    rules = {r["if"]["properties"]["type"]["const"]: r["then"] for r in values_schema["$defs"]["model"]["allOf"]}
    assert rules["chat"]["properties"]["dimensions"]["const"] == "applies only to type embedding, not chat"
    assert rules["embedding"]["properties"]["dimensions"].get("type") == "integer"
    assert values_schema["$defs"]["streamOn"]["else"]["properties"]["max_ttft"]["const"] == "needs stream: true"
    endpoints_schema = json.loads((ROOT / "model_monitor" / "config" / "endpoints.schema.json").read_text())
    assert "dimensions" not in endpoints_schema["$defs"]["model"]["allOf"][0]["then"]["properties"]


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
        "cronJob.resources.requests",
        "cronJob.resources.limits",
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


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
@pytest.mark.parametrize("case", MATRIX)
def test_manifests_are_valid_kubernetes(case: str, version: str) -> None:
    """Rendered for the oldest and the newest supported Kubernetes, valid for it (--strict: no unknown field).
    Shards need 1.29: for the oldest they render for 1.29, the first version that honours them."""
    import kubernetes_validate

    kube_version = SHARDS_NEED if case == "shards" and version == OLDEST else version
    for doc in render("helm4", case, kube_version):
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {kube_version}: {exc}")


def test_chart_states_the_oldest_kubernetes_it_supports() -> None:
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == f">={OLDEST}-0"
    for helm in HELMS:
        proc = run(
            [
                tool(helm),
                "template",
                RELEASE,
                str(CHART),
                "--kube-version",
                "1.26.0",
                *values_args(["readme-endpoints.yaml"]),
            ]
        )
        assert proc.returncode != 0 and "kubeVersion" in proc.stderr, proc.stderr


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("version", [OLDEST, "1.28.9"])
def test_shards_refuse_a_kubernetes_that_would_ignore_them(helm: str, version: str) -> None:
    """Before 1.29 a Job's backoffLimitPerIndex is dropped (off, or alpha and off by default): a failing shard would
    then stop the others, or be retried 6 times. The render fails, naming the version needed."""
    proc = run([tool(helm), "template", RELEASE, str(CHART), "--kube-version", version, *values_args(MATRIX["shards"])])
    assert proc.returncode != 0
    assert "cronJob.shards > 1 needs Kubernetes 1.29 or later" in proc.stderr and f"v{version}" in proc.stderr
    assert render(helm, "readme-secret", version), "one shard renders there"
    (cronjob,) = kinds(render(helm, "shards", SHARDS_NEED), "CronJob")
    assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimitPerIndex"] == 0


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


def checkov(directory: Path, *args: str) -> dict[str, Any]:
    proc = run(
        [tool("checkov"), "-d", str(directory), "--framework", "kubernetes", *args, "--output", "json"],
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_default_render_passes_checkovs_whole_kubernetes_framework(tmp_path: Path) -> None:
    """Every check of the framework passes on the default render but the named ones, and each of those is needed
    (it fails without the skip); with cronJob.image.digest set the digest check passes too."""
    values = values_args(["readme-endpoints.yaml"])
    for name, extra in (("default", []), ("digest", ["--set", f"cronJob.image.digest={DIGEST}"])):
        proc = run([tool("helm4"), "template", RELEASE, str(CHART), *values, *extra])
        assert proc.returncode == 0, proc.stderr
        (tmp_path / f"{name}.yaml").write_text(proc.stdout)
    report = checkov(tmp_path)
    failed: dict[str, set[str]] = {}
    for check in report["results"]["failed_checks"]:
        failed.setdefault(Path(check["file_path"]).stem, set()).add(check["check_id"])
    assert failed["default"] == set(CHECKOV_SKIPPED), "the skip list is exactly what the default render fails"
    assert failed["digest"] == set(CHECKOV_SKIPPED) - {"CKV_K8S_43", "CKV_K8S_15"}, "a digest pins the image"
    assert report["summary"]["passed"] > 2 * 150, report["summary"]  # the whole framework ran, on both files
    skipped = checkov(tmp_path, "--skip-check", ",".join(CHECKOV_SKIPPED))
    assert skipped["results"]["failed_checks"] == [] and skipped["summary"]["failed"] == 0


def test_readme_names_every_skipped_checkov_check_with_its_reason() -> None:
    readme = (CHART / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(CKV2?_K8S_\d+)` \| (.+) \|$", readme, flags=re.M))
    assert set(rows) == set(CHECKOV_SKIPPED)


def test_resources_by_default() -> None:
    """Requests and limits for cpu, memory and ephemeral-storage, in the CronJob's pod and the helm test pod."""
    for spec in pod_specs(render("helm4", "readme-secret")):
        resources = spec["containers"][0]["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory", "ephemeral-storage"}, resources


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
            digest = f"@{image['digest']}" if image["digest"] else ""
            assert container["image"] == f"{image['repository']}:{image['tag'] or app_version}{digest}"
        assert container["imagePullPolicy"] == image["pullPolicy"]
        assert "command" not in container, "the image's entrypoint runs the suite"


def test_finished_jobs_go_after_a_day_and_the_cronjob_fails_only_when_the_monitor_broke() -> None:
    """By default a Job lives a day once finished, and its monitor runs with --fail-on never (verdicts travel by
    telemetry); the helm test pod fails on a failed case, as a test should."""
    docs = render("helm4", "readme-secret")
    (cronjob,) = kinds(docs, "CronJob")
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["ttlSecondsAfterFinished"] == 86400
    assert env_of(job["template"]["spec"]["containers"][0])["MODEL_MONITOR_FAIL_ON"]["value"] == "never"
    (pod,) = kinds(docs, "Pod")
    assert env_of(pod["spec"]["containers"][0])["MODEL_MONITOR_FAIL_ON"]["value"] == "failed"
    (cronjob,) = kinds(render("helm4", "everything"), "CronJob")
    env = env_of(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
    assert env["MODEL_MONITOR_FAIL_ON"]["value"] == load_values(MATRIX["everything"])["cronJob"]["failOn"]


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
    (container,), (job_container,) = pod["spec"]["containers"], job_pod["containers"]
    assert {**container, "env": None} == {**job_container, "env": None}
    differ = {"MODEL_MONITOR_FAIL_ON"}  # the test fails on a failed case; the CronJob by its failOn
    assert {k: v for k, v in env_of(container).items() if k not in differ} == {
        k: v for k, v in env_of(job_container).items() if k not in differ
    }
    assert pod["spec"]["volumes"] == job_pod["volumes"]


@pytest.mark.parametrize("case", ["metrics-dashboard", "shards"])
def test_helm_test_pod_pushes_no_metrics(case: str) -> None:
    """Its Pushgateway group would never be replaced by a later run: ModelMonitorNoRun would fire for it forever."""
    docs = render("helm4", case)
    (pod,) = kinds(docs, "Pod")
    assert not {"MODEL_MONITOR_PUSHGATEWAY_URL", "MODEL_MONITOR_METRICS_INSTANCE"} & set(
        env_of(pod["spec"]["containers"][0])
    )
    for cronjob in kinds(docs, "CronJob"):
        assert "MODEL_MONITOR_PUSHGATEWAY_URL" in env_of(
            cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        )


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
    assert "it fails only when the monitor itself could not judge and report every case: cronJob.failOn never" in notes


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
