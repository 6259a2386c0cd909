"""What a run found, per case: pytest user_properties on the way in, the summary table on the way out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from .config import Case
from .engine import PROPERTY_PREFIX, Outcome

CASE_NODE = re.compile(r"::test_endpoint\[(?P<id>.+)\]$")
REASON_WIDTH = 120


def case_properties(case: Case, outcome: Outcome) -> list[tuple[str, Any]]:
    """The case's identity plus its outcome, as plain data that xdist can carry and JUnit XML can show."""
    identity = [("case", case.id), ("type", case.type), ("monitor", case.monitor)]
    return [(PROPERTY_PREFIX + k, v) for k, v in identity] + outcome.properties()


def case_id_of(nodeid: str) -> str | None:
    match = CASE_NODE.search(nodeid)
    return match.group("id") if match else None


@dataclass(frozen=True)
class Row:
    case: str
    type: str
    verdict: str
    duration: str
    ttft: str
    tokens_per_s: str
    reason: str


COLUMNS = ("case", "type", "verdict", "duration", "ttft", "tokens_per_s")


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


def rows(stats: Mapping[str, list[Any]], case_by_id: Mapping[str, Case]) -> list[Row]:
    """One row per case that ran, in the endpoints file's order."""
    found: dict[str, Row] = {}
    for report in (r for key in ("passed", "failed", "error") for r in stats.get(key, [])):
        case_id = case_id_of(getattr(report, "nodeid", ""))
        if case_id not in case_by_id or not _is_verdict(report):
            continue
        outcome = outcome_of(report)
        verdict = "PASS" if report.passed else "FAIL"
        metrics = outcome.metrics
        found[case_id] = Row(
            case_id,
            case_by_id[case_id].type,
            verdict,
            _number(outcome.duration_s, "{:.3f}s"),
            _number(metrics.get("ttft_s"), "{:.3f}s"),
            _number(metrics.get("tokens_per_s"), "{:.1f}"),
            _cut(outcome.reason),
        )
    return [found[case_id] for case_id in case_by_id if case_id in found]


def table(rows: list[Row]) -> list[str]:
    header = Row("case", "type", "verdict", "duration", "ttft", "tok/s", "reason")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in COLUMNS]

    def line(r: Row) -> str:
        return "  ".join(getattr(r, f).ljust(w) for f, w in zip(COLUMNS, widths)) + "  " + r.reason

    return [line(header), *map(line, rows)]


def _is_verdict(report: pytest.TestReport) -> bool:
    """The report that decides a case: its call, or a setup that failed, or xdist's report of a crashed worker."""
    return report.when == "call" or (report.when != "teardown" and report.failed)


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def _cut(text: str) -> str:
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 1] + "…"
