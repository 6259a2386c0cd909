"""The terminal's view of a run: the summary table, one row per case, and the run's token usage line."""

from __future__ import annotations

import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from ..case import Case
from ..errors import ErrorClass
from ..outcome import Outcome
from ..shard import Shard
from .verdicts import TOKEN_KINDS, token_totals

if TYPE_CHECKING:
    from . import Reporter

__all__ = ["Row", "exhausted", "rows", "summary", "table", "usage_line"]

REASON_WIDTH = 120
COLUMNS = ("case", "type", "verdict", "duration", "ttft", "tokens_per_s", "tokens")


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    type: str
    verdict: str
    duration: str
    ttft: str
    tokens_per_s: str
    tokens: str
    reason: str


def rows(found: list[tuple[Case, Outcome, pytest.TestReport]]) -> list[Row]:
    """One row per case that ran (see verdicts)."""
    return [_row(case, outcome, report) for case, outcome, report in found]


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
        case.type.name,
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
        return "  ".join(getattr(r, f).ljust(w) for f, w in zip(COLUMNS, widths, strict=True)) + "  " + r.reason

    return [line(header), *map(line, rows)]


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def _cut(text: str) -> str:
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 1] + "…"


def exhausted(found: list[tuple[Case, Outcome, pytest.TestReport]]) -> str | None:
    """One line for the run when cases failed as resources: the monitor's own process ran out, not an endpoint."""
    count = sum(outcome.error_class == ErrorClass.RESOURCES for _, outcome, _ in found)
    if not count:
        return None
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return (
        f"model-monitor: {count} case(s) failed as resources: this process ran out of file descriptors or memory "
        f"(ulimit -n {limit}); fix the monitor, not the endpoints"
    )


def summary(
    terminalreporter: pytest.TerminalReporter,
    found: list[tuple[Case, Outcome, pytest.TestReport]],
    stopped: tuple[ErrorClass, str] | None,
    reporters: Sequence[Reporter],
    shard: tuple[Shard | None, int],
    bulk: int = 0,
) -> None:
    """The run's end on the terminal: the table, the token usage, why the run stopped, and each reporter's lines.
    `shard` is this process's shard and how many selected cases the other shards hold; `bulk` how many cases a
    stopped run reported in bulk (the table has not got them)."""
    own_shard, others = shard
    if not found and others:
        terminalreporter.write_line(
            f"model-monitor: shard {own_shard} holds none of the selected cases "
            f"(the other shards hold {others}): nothing to run here"
        )
    if found:
        terminalreporter.section("model-monitor summary")
        for line in table(rows(found)):
            terminalreporter.write_line(line)
    if used := usage_line([outcome for _, outcome, _ in found]):
        terminalreporter.write_line(used)
    if stopped is not None:
        error_class, why = stopped
        in_bulk = (
            f"; {bulk} cases were reported in bulk, not one by one, to end within the stop grace: the table leaves "
            "them out, JUnit counts them in one entry, the results file, pings and metrics (where set) have each"
            if bulk
            else ""
        )
        terminalreporter.write_line(
            f"model-monitor: {why}: the cases not judged by then failed as {error_class.value}, the others kept "
            f"their verdicts{in_bulk}",
            red=True,
            bold=True,
        )
    for reporter in reporters:
        for line in reporter.summary_lines():
            terminalreporter.write_line(line, yellow=reporter.failed, bold=reporter.failed)
