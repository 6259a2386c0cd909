"""Judge a completed exchange for any model type: read it (one body or a stream), let the type check it, then
the contracts every type shares (`expect`, SLOs).

A probe builds one small, cheap, realistic request (types/<type>.py) and validates the reply. Timing, transport
errors and HTTP status handling live in exchange.py and are the same for every type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from ..reply import Timed, carries_error, server_said
from ..types import contracts
from ..types.usage import token_usage
from .stream import assemble

__all__ = ["Verdict", "evaluate"]


@dataclass(frozen=True)
class Verdict:
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # why the passing reply is degraded: a warning threshold crossed, a cut reply


def evaluate(case: Case, result: Timed) -> Verdict:
    """Judge a completed exchange: shape, content, contracts, SLOs and warnings. A ProbeError carries the metrics
    measured, token usage included: a reply that fails its check still cost its tokens.

    A stream is assembled into the body a plain request would have got, so the type's one check serves both."""
    metrics: dict[str, float] = {} if result.ttfb is None else {"ttfb_s": result.ttfb}
    model_type = case.type
    unmeasured: tuple[str, ...] = ()
    try:
        if case.stream:
            reply = assemble(result.value, result.duration, model_type.stream_format())
            metrics.update(reply.metrics())
            data = reply.body()
            if case.min_tokens_per_s is not None and "tokens_per_s" not in metrics:
                unmeasured = (f"tokens/s unmeasurable: {reply.rate_unmeasurable()}",)
        else:
            data = model_type.parse(result)
            _refuse_error_object(data)
        metrics.update(token_usage(data))
        checked = model_type.check(case, data)
        if checked.text is not None:
            contracts.check_expect(case, checked.text)
        answered = contracts.check_model(case, data)
        contracts.check_slo(case, result.duration, metrics)
    except ProbeError as error:
        error.metrics = metrics
        raise
    summary = f"streamed: {checked.summary}" if case.stream else checked.summary
    warned = (*checked.degraded, *answered, *unmeasured, *contracts.warnings(case, result.duration, metrics))
    return Verdict(summary, metrics, tuple(dict.fromkeys(warned)))


def _refuse_error_object(data: Any) -> None:
    """An error object in a 200 is a failure, also next to a reply (a gateway whose provider failed); a spent
    budget said so is quota."""
    if carries_error(data):
        said = server_said(data)
        error_class = ErrorClass.QUOTA if said.quota else ErrorClass.BAD_RESPONSE
        raise ProbeError(error_class, f"error object in HTTP 200: {said.words or 'no message'}")
