"""Opt-in strictness on top of "it answered", for every type: `expect` on the reply's text, the SLOs, and which
model answered."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from ..reply import load_json, one_line
from .base import ReplyOptions

__all__ = ["check_expect", "check_model", "check_slo", "reply_json", "same_model", "warnings"]

SHOWN_REPLY_CHARS = 80  # how much of the reply an expectation failure quotes
# What may follow the asked model name in the name a server answers with: a date or version (gpt-4o ->
# gpt-4o-2024-08-06, gpt-4 -> gpt-4-0613, llama3 -> llama3:8b, claude-3-5-sonnet -> claude-3-5-sonnet@20241022),
# but not another word (gpt-4o -> gpt-4o-mini is another model) nor a minor version (llama3 -> llama3.1).
VERSION_SUFFIX = re.compile(r"[-:@](?:v?\d[\w.-]*|latest)", re.IGNORECASE)


def check_expect(case: Case, text: str) -> None:
    """The visible reply against the model entry's `expect`: contains, regex, json_schema."""
    expect = case.expect
    if "contains" in expect and expect["contains"] not in text:
        raise ProbeError(ErrorClass.EXPECTATION, f"reply does not contain {expect['contains']!r} ({_shown(text)})")
    if "regex" in expect and not re.search(expect["regex"], text):
        raise ProbeError(ErrorClass.EXPECTATION, f"reply does not match /{expect['regex']}/ ({_shown(text)})")
    if "json_schema" in expect:
        import jsonschema  # here, not at the top: only a model with expect.json_schema needs it (~60 ms)

        data = reply_json(text, "although expect.json_schema needs JSON")
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(expect["json_schema"]).iter_errors(data)
        )
        if error is not None:
            where = "/".join(map(str, error.absolute_path)) or "(top level)"
            raise ProbeError(
                ErrorClass.EXPECTATION, f"reply JSON does not match expect.json_schema at {where}: {error.message}"
            )


def check_model(case: Case, data: Any) -> tuple[str, ...]:
    """The reply's `model` against the model asked for, as the case's model_mismatch says: a degradation that names
    the model that answered, a failure, or nothing. A reply without a model name says nothing either way."""
    mode = case.options.model_mismatch if isinstance(case.options, ReplyOptions) else "off"
    answered = data.get("model") if isinstance(data, dict) else None
    if mode == "off" or not isinstance(answered, str) or not answered or same_model(case.model, answered):
        return ()
    said = f"answered by model {one_line(answered, 120)!r}, asked for {one_line(case.model, 120)!r}"
    if mode == "fail":
        raise ProbeError(ErrorClass.EXPECTATION, said)
    return (said,)


def same_model(asked: str, answered: str) -> bool:
    """Whether a server's name for the model that answered is the one asked for: equal, ignoring case and any
    path prefix (models/gemini-2.0-flash, /data/llama), or followed by a date or version (VERSION_SUFFIX)."""
    asked, answered = (name.rstrip("/").rsplit("/", 1)[-1].lower() for name in (asked, answered))
    for stem in (asked, asked.removesuffix("-latest").removesuffix(":latest")):
        if answered == stem or (answered.startswith(stem) and VERSION_SUFFIX.fullmatch(answered[len(stem) :])):
            return True
    return False


def check_slo(case: Case, duration: float, metrics: Mapping[str, float]) -> None:
    """Every breached objective, with the numbers: `ttft 3.21 s > max_ttft 2 s`. A rate that could not be measured
    is no breach: the judge says so as a degradation."""
    breaches = _over(duration, metrics, ("max_latency", case.max_latency), ("max_ttft", case.max_ttft))
    rate = metrics.get("tokens_per_s")
    if case.min_tokens_per_s is not None and rate is not None and rate < case.min_tokens_per_s:
        breaches.append(f"tokens/s {rate:.1f} < min_tokens_per_s {case.min_tokens_per_s:g}")
    if breaches:
        raise ProbeError(ErrorClass.SLO, "; ".join(breaches))


def warnings(case: Case, duration: float, metrics: Mapping[str, float]) -> tuple[str, ...]:
    """Every warning threshold crossed by a passing reply, with the numbers: `ttft 1.20 s > warn_ttft 1 s`."""
    return tuple(_over(duration, metrics, ("warn_latency", case.warn_latency), ("warn_ttft", case.warn_ttft)))


def _over(
    duration: float, metrics: Mapping[str, float], latency: tuple[str, float | None], ttft: tuple[str, float | None]
) -> list[str]:
    """The latency and TTFT limits (each a field name and its value, None when unset) that were exceeded."""
    measured = (("latency", duration, *latency), ("ttft", metrics.get("ttft_s"), *ttft))
    return [
        f"{what} {value:.3f} s > {name} {limit:g} s"
        for what, value, name, limit in measured
        if limit is not None and value is not None and value > limit
    ]


def _shown(text: str) -> str:
    """The start of what the model replied, on one line, for an on-call engineer to see what came instead."""
    return f"reply of {len(text)} chars: {one_line(text, SHOWN_REPLY_CHARS)!r}"


def reply_json(text: str, why: str) -> Any:
    """The model's reply text as JSON, or an expectation failure that quotes the start of what came instead."""
    try:
        return load_json(text)
    except ProbeError:
        raise ProbeError(ErrorClass.EXPECTATION, f"reply is not JSON {why} ({_shown(text)})") from None
