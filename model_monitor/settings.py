"""Every option is a flag, an ini key and (where it carries a path or a secret) an environment variable.

Precedence: command-line flag, then environment variable, then ini key, then the default. The help text is
written once, here, and resolved once into a frozen Settings object. A secret option's value is a Secret from
the moment it is read, so that no repr, log or traceback local can show it.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from .case import RUN_MAX_CONCURRENCY
from .redact import Secret
from .shard import Shard
from .shard import parse as parse_shard

__all__ = [
    "FAIL_ON",
    "ONLY_HELP",
    "ONLY_METAVAR",
    "OPTIONS",
    "Option",
    "Settings",
    "addoption",
    "otlp_endpoint_variable",
    "resolve",
    "run_host",
]

GROUP = "model-monitor"
FAIL_ON = ("failed", "degraded", "never")  # --fail-on: which verdicts fail the run (run.Monitor.exit_status)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a finite number greater than 0")
    return value


def _fail_on(text: str) -> str:
    if (policy := text.strip().lower()) not in FAIL_ON:
        raise ValueError(f"expected one of {', '.join(FAIL_ON)}")
    return policy


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True)
class Option:
    dest: str
    help: str
    default: Any = None
    env: str | None = None
    parse: Callable[[str], Any] = str
    is_flag: bool = False
    env_only: bool = False  # secrets that must not sit in shell history or ini files
    secret: bool = False  # held as a Secret, taken as it is (telemetry validates it without printing it)

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def metavar(self) -> str:
        return self.dest.upper()

    @property
    def ini(self) -> str:
        return "model_monitor_" + self.dest


OPTIONS: tuple[Option, ...] = (
    Option("endpoints", "Endpoints file to check.", "endpoints.yaml", env="MODEL_MONITOR_ENDPOINTS"),
    Option(
        "max_concurrency",
        "Most requests in flight at once over all endpoints (each endpoint also has its own max_concurrency).",
        RUN_MAX_CONCURRENCY,
        env="MODEL_MONITOR_MAX_CONCURRENCY",
        parse=_positive_int,
    ),
    Option(
        "cronitor_url",
        "Cronitor ping URL (https://cronitor.link/p/<key>[/<group>], or with {monitor}).",
        env="CRONITOR_URL",
        secret=True,
    ),
    Option("cronitor_env", "Cronitor environment sent with every ping (env=).", env="CRONITOR_ENV"),
    Option(
        "healthchecks_url",
        "Healthchecks ping URL (https://hc-ping.com/<ping-key> or <base>/ping/<ping-key>).",
        env="HEALTHCHECKS_URL",
        secret=True,
    ),
    Option(
        "healthchecks_create",
        "Ask Healthchecks to create missing checks (create=1).",
        False,
        env="HEALTHCHECKS_CREATE",
        parse=_flag,
        is_flag=True,
    ),
    Option(
        "telemetry_dry_run",
        "Print the pings instead of sending them (keys redacted).",
        False,
        env="MODEL_MONITOR_TELEMETRY_DRY_RUN",
        parse=_flag,
        is_flag=True,
    ),
    Option(
        "telemetry_strict",
        "Fail the run (exit 1) when a ping could not be delivered.",
        False,
        env="MODEL_MONITOR_TELEMETRY_STRICT",
        parse=_flag,
        is_flag=True,
    ),
    Option(
        "fail_on",
        "Which verdicts fail the run (exit 1): failed (a failed case), degraded (a failed or degraded case) or never "
        "(exit 0 once every case was judged and reported; a usage error, an interruption or, with "
        "--telemetry-strict, undelivered telemetry still fail).",
        "failed",
        env="MODEL_MONITOR_FAIL_ON",
        parse=_fail_on,
    ),
    Option(
        "telemetry_deadline",
        "Seconds that delivering the last pings may take at the end of the run.",
        30.0,
        env="MODEL_MONITOR_TELEMETRY_DEADLINE",
        parse=_positive_float,
    ),
    Option(
        "run_deadline",
        "Seconds after the run's start when every case not yet judged fails as timeout, and the run reports and exits.",
        env="MODEL_MONITOR_RUN_DEADLINE",
        parse=_positive_float,
    ),
    Option(
        "stop_grace",
        "Seconds a stopped run (SIGTERM, SIGINT, the run deadline) may take to fail what is left, ping and report.",
        10.0,
        env="MODEL_MONITOR_STOP_GRACE",
        parse=_positive_float,
    ),
    Option(
        "cronitor_api_key",
        "Cronitor API key: create or update the monitors once per run.",
        env="CRONITOR_API_KEY",
        env_only=True,
        secret=True,
    ),
    Option("cronitor_api_url", "Cronitor Monitor API base URL.", "https://cronitor.io/api", env="CRONITOR_API_URL"),
    Option(
        "cronitor_schedule",
        "The schedule the run follows (cron), set on provisioned monitors.",
        env="CRONITOR_SCHEDULE",
    ),
    Option(
        "results_json",
        "Write the run and every case's result to this path as one JSON document "
        "(model_monitor/reporters/results.schema.json).",
        env="MODEL_MONITOR_RESULTS_JSON",
    ),
    Option(
        "step_summary",
        "Append a Markdown summary of the run to this file. GitHub Actions sets GITHUB_STEP_SUMMARY for each step; "
        "in a container, pass it on (-e GITHUB_STEP_SUMMARY and the file mounted) or give this flag.",
        env="GITHUB_STEP_SUMMARY",
    ),
    Option(
        "pushgateway_url",
        "Prometheus Pushgateway URL: every run ends with one push of its per-case series.",
        env="MODEL_MONITOR_PUSHGATEWAY_URL",
        secret=True,
    ),
    Option(
        "pushgateway_username",
        "Pushgateway basic auth user.",
        env="MODEL_MONITOR_PUSHGATEWAY_USERNAME",
        env_only=True,
        secret=True,
    ),
    Option(
        "pushgateway_password",
        "Pushgateway basic auth password.",
        env="MODEL_MONITOR_PUSHGATEWAY_PASSWORD",
        env_only=True,
        secret=True,
    ),
    Option(
        "pushgateway_headers",
        "Pushgateway request headers: Name=value,... or a JSON object.",
        env="MODEL_MONITOR_PUSHGATEWAY_HEADERS",
        env_only=True,
        secret=True,
    ),
    Option(
        "metrics_instance",
        "The run's identity in the Pushgateway grouping key (instance=): a run replaces the series its last push left.",
        "default",
        env="MODEL_MONITOR_METRICS_INSTANCE",
    ),
    Option(
        "shard",
        "Run only share I/K of the selected cases (0 <= I < K); K processes given 0/K to K-1/K run each case once.",
        env="MODEL_MONITOR_SHARD",
        parse=parse_shard,
    ),
    Option(
        "telemetry_rate",
        "Most pings sent per second, over every target (Cronitor limits about 50/s per IP).",
        20.0,
        env="MODEL_MONITOR_TELEMETRY_RATE",
        parse=_positive_float,
    ),
)

# Variables read as facts of the environment, not as options: the OpenTelemetry SDK's own endpoint variables (the
# SDK reads their values; one being set turns OTLP export on) and the pod's name that Kubernetes sets.
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
HOST_VARIABLE = "HOSTNAME"

SECRET_OPTIONS = tuple(option.dest for option in OPTIONS if option.secret)
ONLY_METAVAR = "NAME"
ONLY_HELP = "Run only this endpoint, or this case id (<endpoint>/<model id>). Repeatable."


@dataclass(frozen=True)
class Settings:
    """The resolved options, one typed field per Option (their defaults live in OPTIONS), and --only."""

    endpoints: str
    max_concurrency: int
    cronitor_url: Secret | None
    cronitor_env: str | None
    healthchecks_url: Secret | None
    healthchecks_create: bool
    telemetry_dry_run: bool
    telemetry_strict: bool
    fail_on: str
    telemetry_deadline: float
    run_deadline: float | None
    stop_grace: float
    cronitor_api_key: Secret | None
    cronitor_api_url: str
    cronitor_schedule: str | None
    results_json: str | None
    step_summary: str | None
    pushgateway_url: Secret | None
    pushgateway_username: Secret | None
    pushgateway_password: Secret | None
    pushgateway_headers: Secret | None
    metrics_instance: str
    shard: Shard | None
    telemetry_rate: float
    only: tuple[str, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret options' values in the open, for the Redactor only."""
        return tuple(secret.reveal() for name in SECRET_OPTIONS if (secret := getattr(self, name)))


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "Model Monitor")
    for option in OPTIONS:
        env = f" [env {option.env}]" if option.env else ""
        if option.env_only:
            continue
        if option.is_flag:
            group.addoption(option.flag, action="store_const", const="true", dest=option.dest, help=option.help + env)
        else:
            group.addoption(option.flag, dest=option.dest, metavar=option.metavar, help=option.help + env)
        parser.addini(option.ini, option.help)
    group.addoption(
        "--only",
        action="append",
        default=[],
        metavar=ONLY_METAVAR,
        help=ONLY_HELP,
    )


def resolve(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags, environment and ini; a malformed value is a usage error naming its source."""
    values = {option.dest: _value(option, *_raw(option, config, environ)) for option in OPTIONS}
    return Settings(**values, only=tuple(config.option.only or ()))


def _raw(option: Option, config: pytest.Config, environ: Mapping[str, str] | None) -> tuple[str | None, str]:
    """An option's text as given, and where it came from: flag, then environment (os.environ unless given), then ini.

    os.environ is never bound to a local: its repr, in a traceback's locals, would print every variable."""
    if getattr(config.option, option.dest, None) is not None:
        return str(getattr(config.option, option.dest)), option.flag
    if option.env and (text := (os.environ if environ is None else environ).get(option.env, "")):
        return text, f"environment variable {option.env}"
    if not option.env_only and config.getini(option.ini):
        return str(config.getini(option.ini)), f"ini key {option.ini}"
    return None, ""


def _value(option: Option, raw: str | None, source: str) -> Any:
    if raw is None:
        return option.default
    if option.secret:
        return Secret(raw)
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"{source}: invalid value {raw!r}: {exc}") from None


def otlp_endpoint_variable() -> str | None:
    """The OpenTelemetry variable that names the OTLP endpoint, or None (no OTLP export)."""
    return next((name for name in OTLP_ENDPOINT_VARIABLES if os.environ.get(name)), None)


def run_host() -> str:
    """The pod's name in Kubernetes (HOSTNAME), else the machine's."""
    return os.environ.get(HOST_VARIABLE) or socket.gethostname()
