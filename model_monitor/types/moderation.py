"""moderation: POST /moderations: one result per input, each with a boolean `flagged`, a `categories` object and
finite `category_scores`. Whether the canary is flagged is reported, not judged: the check is that the model answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from .base import TEXTS_INPUT_SCHEMA, Checked, ModelType, Options, finite, listed, options_of

__all__ = ["TYPE"]


@dataclass(frozen=True)
class ModerationOptions(Options):
    input: str | Sequence[str] = "Model Monitor canary: the tea is warm and the weather is mild."


def _count(case: Case) -> int:
    """How many texts are sent: `input` is one string or a list of them."""
    text = options_of(case, ModerationOptions).input
    return 1 if isinstance(text, str) else len(text)


def _body(case: Case) -> dict[str, Any]:
    return {"model": case.model, "input": options_of(case, ModerationOptions).input, **case.params}


def _check(case: Case, data: Any) -> Checked:
    results = listed(data, "results", "results")
    inputs = _count(case)
    if len(results) != inputs:
        raise ProbeError(ErrorClass.SCHEMA, f"got {len(results)} moderation results for {inputs} inputs")
    categories: set[str] = set()
    for i, result in enumerate(results):
        categories.update(_scores(result, i))
    flagged = sum(result["flagged"] for result in results)
    verdict = f"{flagged} flagged" if flagged else "not flagged"
    plural = "" if len(results) == 1 else "s"
    return Checked(f"{len(results)} result{plural}, {verdict} ({len(categories)} categories)")


def _scores(result: Any, i: int) -> dict[str, Any]:
    """results[i]'s category_scores, once its shape is right."""
    if not isinstance(result, dict):
        raise ProbeError(ErrorClass.SCHEMA, f"results[{i}] is not an object")
    if not isinstance(result.get("flagged"), bool):
        raise ProbeError(ErrorClass.SCHEMA, f"results[{i}] has no boolean 'flagged' ({result.get('flagged')!r})")
    for key in ("categories", "category_scores"):
        if not isinstance(result.get(key), dict):
            raise ProbeError(ErrorClass.SCHEMA, f"results[{i}] has no '{key}' object")
    scores: dict[str, Any] = result["category_scores"]
    if not scores:
        raise ProbeError(ErrorClass.EMPTY, f"results[{i}].category_scores is empty")
    bad = next((name for name, score in scores.items() if not finite(score)), None)
    if bad is not None:
        raise ProbeError(
            ErrorClass.SCHEMA, f"results[{i}].category_scores.{bad} is not a finite number ({scores[bad]!r})"
        )
    return scores


TYPE = ModelType(
    "moderation",
    "POST",
    "/moderations",
    ModerationOptions,
    _body,
    _check,
    schema=TEXTS_INPUT_SCHEMA,
    in_defaults=frozenset({"input"}),
)
