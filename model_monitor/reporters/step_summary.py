"""GitHub's job summary: the results document as Markdown, appended to the file --step-summary (GITHUB_STEP_SUMMARY)
names."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from ..reply import one_line

__all__ = ["MAX_ROWS", "markdown"]

MAX_ROWS = 200  # failing cases first; GitHub caps a step's summary at 1 MiB
MAX_REASON = 300
COLUMNS = ("case", "type", "verdict", "class", "duration", "ttft", "reason")


def markdown(document: Mapping[str, Any]) -> str:
    """A heading, the counts, and a table of the cases, failing ones first, cut after MAX_ROWS."""
    run, cases = document["run"], document["cases"]
    failed = sum(case["verdict"] == "fail" for case in cases)
    degraded = sum(bool(case["degraded"]) for case in cases)
    exit_status = run["exit_status"]
    took = run["ended_at_unix"] - run["started_at_unix"]
    lines = [
        f"### Model Monitor: {'FAIL' if exit_status['code'] else 'PASS'}",
        "",
        f"{len(cases) - failed} passed ({degraded} degraded), {failed} failed, "
        f"{run['selection']['deselected']} deselected; exit {exit_status['code']} ({exit_status['name']}) after "
        f"{took:.1f} s; {_cell(run['selection']['endpoints_file'])}",
    ]
    if (tokens := run["tokens"]) is not None:
        lines += [
            "",
            f"Tokens: {tokens['prompt'] + tokens['completion']:,} ({tokens['prompt']:,} prompt + "
            f"{tokens['completion']:,} completion, of which {tokens['reasoning']:,} reasoning)",
        ]
    if run["stopped"] is not None:
        lines += ["", f"Stopped: {_cell(run['stopped']['reason'])}"]
    if cases:
        ordered = sorted(cases, key=lambda case: case["verdict"] != "fail")  # stable: file order within each
        lines += [
            "",
            _line(COLUMNS),
            _line(["---"] * len(COLUMNS)),
            *(_line(_row(case)) for case in ordered[:MAX_ROWS]),
        ]
        if len(ordered) > MAX_ROWS:
            lines += ["", f"... and {len(ordered) - MAX_ROWS} more"]
    return "\n".join(lines) + "\n\n"


def _row(case: Mapping[str, Any]) -> list[str]:
    return [
        case["id"],
        case["type"],
        "DEGRADED" if case["degraded"] else case["verdict"].upper(),
        case["class"] or "",
        _seconds(case["duration_s"]),
        _seconds(case["metrics"].get("ttft_s")),
        case["reason"],
    ]


def _line(cells: Any) -> str:
    return "| " + " | ".join(_cell(str(cell)) for cell in cells) + " |"


def _cell(text: str) -> str:
    """One table cell: on one line, cut short, with | and HTML escaped (a server's words must not shape the page)."""
    return html.escape(one_line(text, MAX_REASON), quote=False).replace("|", "\\|")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"
