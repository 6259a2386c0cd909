"""OTLP metrics per case, in OpenTelemetry's GenAI semantic conventions, when OTEL_EXPORTER_OTLP_* says where to.

Each verdict records the case's inference duration, its time to the first chunk (streams) and its token usage on
the SDK's histograms; nothing leaves the process before the run's end, when one bounded flush exports them all.
The exporter reads the standard variables itself (endpoint, headers, timeout, compression).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from .. import __version__
from ..case import Case
from ..outcome import Outcome
from ._http import PAST_BUDGET_S, Overrun, within

__all__ = ["HISTOGRAMS", "Histogram", "OtlpMetrics", "attributes"]

# The conventions' advised buckets: seconds for durations, powers of 4 for tokens.
SECONDS_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [4.0**i for i in range(14)]
TOKEN_TYPES = {"input": "prompt_tokens", "output": "completion_tokens"}  # output already counts reasoning tokens


@dataclass(frozen=True)
class Histogram:
    """One instrument the run records (the docs' metrics reference lists them from here)."""

    name: str
    unit: str
    description: str
    buckets: tuple[float, ...]


HISTOGRAMS = (
    Histogram("gen_ai.client.inference.duration", "s", "GenAI inference duration.", tuple(SECONDS_BUCKETS)),
    Histogram(
        "gen_ai.client.inference.time_to_first_chunk",
        "s",
        "Time to receive the first chunk of a streamed reply.",
        tuple(SECONDS_BUCKETS),
    ),
    Histogram("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.", tuple(TOKEN_BUCKETS)),
)


def attributes(case: Case, outcome: Outcome) -> dict[str, Any]:
    """The GenAI attributes of a case's measurements; error.type (our error class) on a failure."""
    url = urlsplit(case.endpoint.base_url)
    found: dict[str, Any] = {
        "gen_ai.operation.name": case.type.operation or case.type.name,
        "gen_ai.request.model": case.model,
        "server.address": url.hostname or "",
        "server.port": url.port or (443 if url.scheme == "https" else 80),
        "model_monitor.endpoint": case.endpoint.name,
    }
    if not outcome.passed:
        found["error.type"] = outcome.error_class or "error"
    return found


def _no_redirects() -> requests.Session:
    """The exporter's HTTP session, refusing redirects: the SDK counts any 2xx or 3xx as exported, so a 307 from a
    moved endpoint or a proxy's login page would pass for a delivery."""
    session = requests.Session()
    session.max_redirects = 0
    return session


class _Exporter(OTLPMetricExporter):
    """The OTLP/HTTP exporter, counting the exports that failed (the SDK only logs them)."""

    failed = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float | None = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        result = super().export(metrics_data, timeout_millis, **kwargs)
        if result is not MetricExportResult.SUCCESS:
            self.failed += 1
        return result


class OtlpMetrics:
    """The run's meter and its three histograms; a reader that exports only when flushed."""

    flush_last: ClassVar[bool] = False

    def __init__(self, where: str) -> None:
        self.where = where  # the variable that enabled it, for the header and the summary
        self.recorded = 0
        self.failure: str | None = None
        self._exporter = _Exporter(session=_no_redirects())
        reader = PeriodicExportingMetricReader(self._exporter, export_interval_millis=math.inf)
        resource = Resource.create({"service.name": "model-monitor", "service.version": __version__})
        self._provider = MeterProvider(metric_readers=[reader], resource=resource)
        meter = self._provider.get_meter("model_monitor", __version__)
        self._duration, self._first_chunk, self._tokens = (
            meter.create_histogram(
                h.name, unit=h.unit, description=h.description, explicit_bucket_boundaries_advisory=list(h.buckets)
            )
            for h in HISTOGRAMS
        )

    def ended(self, case: Case, outcome: Outcome) -> None:
        attrs = attributes(case, outcome)
        if outcome.duration_s is not None:
            self._duration.record(outcome.duration_s, attrs)
        if case.stream and "ttft_s" in outcome.metrics:
            self._first_chunk.record(outcome.metrics["ttft_s"], attrs)
        for token_type, metric in TOKEN_TYPES.items():
            if metric in outcome.metrics:
                self._tokens.record(outcome.metrics[metric], attrs | {"gen_ai.token.type": token_type})
        self.recorded += 1

    def flush(self, budget: float) -> None:
        """Export what was recorded and stop the SDK, at most `budget` seconds in all (the SDK's own timeouts apply
        per read, and it gives the flush and the shutdown each their own: they reach past the budget, which ends it)."""
        millis = (budget + PAST_BUDGET_S) * 1000

        def export() -> bool:
            flushed = self._provider.force_flush(millis)
            self._provider.shutdown(millis)
            return flushed

        try:
            flushed = within(budget, export)
        except Overrun as exc:
            self.failure = str(exc)
            return
        except Exception as exc:  # the SDK's fault is reported, never raised from a hook
            self.failure = f"{type(exc).__name__} while exporting"
            return
        if self._exporter.failed:
            self.failure = "the OTLP endpoint refused them or could not be reached"
        elif not flushed:
            self.failure = f"not exported within {budget:g} s"

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def summary_lines(self) -> list[str]:
        if self.failure is not None:
            return [f"otlp ({self.where}): metrics of {self.recorded} cases failed: {self.failure}"]
        return [f"otlp ({self.where}): metrics of {self.recorded} cases exported"]
