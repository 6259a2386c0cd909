"""What a run found, per case: pytest user_properties on the way in, the summary table on the way out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from ..case import Case
from ..outcome import PROPERTY_PREFIX, Outcome

__all__ = ["CaseIndex", "identity_properties", "outcome_of", "rows", "table", "token_totals", "usage_line", "verdicts"]

REASON_WIDTH = 120
CASE_KEY = PROPERTY_PREFIX + "case"


def identity_properties(case: Case) -> list[tuple[str, Any]]:
    """Who a test item is, as plain data set at collection: every report of the item carries it, from xdist
    workers too, so nothing depends on how pytest spells a node id (it escapes non-ASCII and control characters)."""
    return [(PROPERTY_PREFIX + k, v) for k, v in (("case", case.id), ("type", case.type), ("monitor", case.monitor))]


class CaseIndex:
    """Finds the case a report belongs to from the identity it carries.

    xdist's report for an item whose worker crashed carries no properties; that item's setup report, which
    came first, did, so its node id is remembered on the way."""

    def __init__(self, case_by_id: Mapping[str, Case]) -> None:
        self.case_by_id = case_by_id
        self._by_node: dict[str, str] = {}

    def case_of(self, report: pytest.TestReport) -> Case | None:
        case_id = next((value for key, value in report.user_properties if key == CASE_KEY), None)
        if case_id is None:
            case_id = self._by_node.get(report.nodeid)
        else:
            self._by_node[report.nodeid] = case_id
        return self.case_by_id.get(case_id) if isinstance(case_id, str) else None


@dataclass(frozen=True)
class Row:
    case: str
    type: str
    verdict: str
    duration: str
    ttft: str
    tokens_per_s: str
    tokens: str
    reason: str


COLUMNS = ("case", "type", "verdict", "duration", "ttft", "tokens_per_s", "tokens")
TOKEN_KINDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")


def outcome_of(report: pytest.TestReport) -> Outcome:
    """The case's outcome; a case killed before it could record one (pytest-timeout) fails with pytest's reason."""
    outcome = Outcome.from_properties(report.user_properties)
    if outcome is not None:
        return outcome
    crash = getattr(report.longrepr, "reprcrash", None)
    lines = [line.strip() for line in report.longreprtext.splitlines() if line.strip()]
    said = crash.message.splitlines()[0] if crash is not None and crash.message else (lines[-1] if lines else report.outcome)
    error_class = "timeout" if "Timeout" in said else None
    return Outcome(passed=report.passed, reason=f"{error_class or 'error'}: {said}", error_class=error_class)


def verdicts(reports: Iterable[Any], index: CaseIndex) -> list[tuple[Case, Outcome, pytest.TestReport]]:
    """Each case that ran with its outcome and the report that decided it (its call, a failed setup, a crash), in
    the endpoints file's order."""
    found: dict[str, tuple[Case, Outcome, pytest.TestReport]] = {}
    for report in sorted((r for r in reports if isinstance(r, pytest.TestReport)), key=_phase_order):
        case = index.case_of(report)
        if case is not None and _is_verdict(report):
            found[case.id] = (case, outcome_of(report), report)
    return [found[case_id] for case_id in index.case_by_id if case_id in found]


def rows(found: list[tuple[Case, Outcome, pytest.TestReport]]) -> list[Row]:
    """One row per case that ran (see verdicts)."""
    return [_row(case, outcome, report) for case, outcome, report in found]


def token_totals(outcomes: list[Outcome]) -> dict[str, int] | None:
    """The run's prompt, completion and reasoning tokens over the cases that reported usage; None when none did."""
    reported = [o.metrics for o in outcomes if any(kind in o.metrics for kind in TOKEN_KINDS)]
    if not reported:
        return None
    totals = {kind.removesuffix("_tokens"): int(sum(m.get(kind, 0) for m in reported)) for kind in TOKEN_KINDS}
    return {**totals, "cases_without_usage": len(outcomes) - len(reported)}


def usage_line(outcomes: list[Outcome]) -> str | None:
    """The run's token total, `this run used 1,234 tokens`, or None when no case reported usage."""
    totals = token_totals(outcomes)
    if totals is None:
        return None
    prompt, completion, reasoning, silent = totals.values()
    return (
        f"this run used {prompt + completion:,} tokens: {prompt:,} prompt + {completion:,} completion, of which "
        f"{reasoning:,} reasoning (OpenAI counts reasoning tokens in the completion)"
        + (f"; {silent} case(s) reported no usage" if silent else "")
    )


def _row(case: Case, outcome: Outcome, report: pytest.TestReport) -> Row:
    metrics = outcome.metrics
    verdict = "FAIL" if not report.passed else "DEGRADED" if outcome.degraded else "PASS"
    return Row(
        case.id,
        case.type,
        verdict,
        _number(outcome.duration_s, "{:.3f}s"),
        _number(metrics.get("ttft_s"), "{:.3f}s"),
        _number(metrics.get("tokens_per_s"), "{:.1f}"),
        _tokens(metrics),
        _cut(outcome.reason),
    )


def _tokens(metrics: Mapping[str, float]) -> str:
    """prompt+completion as the server counted them, `12+64 (60 r)` when it counted reasoning: `-` when it did not."""
    prompt, completion, reasoning = (metrics.get(kind) for kind in TOKEN_KINDS)
    if prompt is None and completion is None:
        return "-"
    shown = "+".join(_number(n, "{:.0f}") for n in (prompt, completion))
    return shown + (f" ({reasoning:.0f} r)" if reasoning else "")


def table(rows: list[Row]) -> list[str]:
    header = Row("case", "type", "verdict", "duration", "ttft", "tok/s", "tokens", "reason")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in COLUMNS]

    def line(r: Row) -> str:
        return "  ".join(getattr(r, f).ljust(w) for f, w in zip(COLUMNS, widths)) + "  " + r.reason

    return [line(header), *map(line, rows)]


def _phase_order(report: pytest.TestReport) -> int:
    """Setup reports first, so that a crashed item's node id is known before its crash report is read."""
    return 0 if report.when == "setup" else 1


def _is_verdict(report: pytest.TestReport) -> bool:
    """The report that decides a case: its call, or a setup that failed, or xdist's report of a crashed worker."""
    return report.when == "call" or (report.when != "teardown" and report.failed)


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def _cut(text: str) -> str:
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 1] + "…"
