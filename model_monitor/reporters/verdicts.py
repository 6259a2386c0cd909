"""What a run found, per case: pytest reports (their user_properties) turned into (case, outcome)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from _pytest.compat import ascii_escaped

from ..case import Case
from ..errors import ErrorClass
from ..outcome import Outcome, property_name

__all__ = ["TOKEN_KINDS", "CaseIndex", "identity_properties", "outcome_of", "token_totals", "verdicts"]

CASE_KEY = property_name("case")
TOKEN_KINDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")
CRASH = re.compile(r"worker '([^']*)' crashed while running ")  # what xdist (and scheduler.py) say of a dead worker
PARAM = re.compile(r"\[(.*)\]$")  # the parameter id at the end of a node id


def identity_properties(case: Case) -> list[tuple[str, Any]]:
    """Who a test item is, as plain data set at collection: every report of the item carries it, from xdist
    workers too, so nothing depends on how pytest spells a node id (it escapes non-ASCII and control characters)."""
    identity = (("case", case.id), ("type", case.type.name), ("monitor", case.monitor))
    return [(property_name(k), v) for k, v in identity]


class CaseIndex:
    """Finds the case a report belongs to from the identity it carries.

    xdist's report for an item whose worker crashed carries no properties; that item's setup report, which
    came first, did, so its node id is remembered on the way. A case the dead worker held but had not begun has
    no report before its crash: it is found by the id in its node id, as pytest spells it (ASCII, escaped)."""

    def __init__(self, case_by_id: Mapping[str, Case]) -> None:
        self.case_by_id = case_by_id
        self._by_node: dict[str, str] = {}
        self._by_param = {spelt: case_id for case_id in case_by_id for spelt in (case_id, ascii_escaped(case_id))}

    def case_of(self, report: pytest.TestReport) -> Case | None:
        carried = next((value for key, value in report.user_properties if key == CASE_KEY), None)
        if isinstance(carried, str):
            self._by_node[report.nodeid] = carried
        case_id = (
            carried
            if carried is not None
            else (self._by_node.get(report.nodeid) or self._by_param.get(_param(report.nodeid)))
        )
        return self.case_by_id.get(case_id) if isinstance(case_id, str) else None


def _param(nodeid: str) -> str:
    match = PARAM.search(nodeid)
    return match[1] if match else ""


def outcome_of(report: pytest.TestReport) -> Outcome:
    """The case's outcome; a case killed before it could record one (pytest-timeout) fails with pytest's reason,
    one whose xdist worker died as crashed."""
    outcome = Outcome.from_properties(report.user_properties)
    if outcome is not None:
        return outcome
    crash = getattr(report.longrepr, "reprcrash", None)
    lines = [line.strip() for line in report.longreprtext.splitlines() if line.strip()]
    said = (
        crash.message.splitlines()[0]
        if crash is not None and crash.message
        else (lines[-1] if lines else report.outcome)
    )
    if worker := CRASH.match(said):
        reason = f"{ErrorClass.CRASHED}: worker {worker[1]} died while running this case (killed, out of memory?)"
        return Outcome(passed=False, reason=reason, error_class=ErrorClass.CRASHED.value)
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


def token_totals(outcomes: list[Outcome]) -> dict[str, int] | None:
    """The run's prompt, completion and reasoning tokens over the cases that reported usage; None when none did."""
    reported = [o.metrics for o in outcomes if any(kind in o.metrics for kind in TOKEN_KINDS)]
    if not reported:
        return None
    totals = {kind.removesuffix("_tokens"): int(sum(m.get(kind, 0) for m in reported)) for kind in TOKEN_KINDS}
    return {**totals, "cases_without_usage": len(outcomes) - len(reported)}


def _phase_order(report: pytest.TestReport) -> int:
    """Setup reports first, so that a crashed item's node id is known before its crash report is read."""
    return 0 if report.when == "setup" else 1


def _is_verdict(report: pytest.TestReport) -> bool:
    """The report that decides a case: its call, or a setup that failed, or xdist's report of a crashed worker."""
    return report.when == "call" or (report.when != "teardown" and report.failed)
