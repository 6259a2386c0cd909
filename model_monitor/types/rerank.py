"""rerank: POST /rerank (Cohere/Jina style, as vLLM, infinity and TEI serve it): a finite score per document;
`rank_check` also wants the relevant document first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from ..case import Case
from ..errors import ErrorClass, ProbeError
from .base import Checked, ModelType, Options, finite, listed, options_of

__all__ = ["TYPE"]

QUERY = "What is the capital of France?"
DOCUMENTS = (
    "Paris is the capital of France.",
    "Bananas are rich in potassium.",
    "The Pacific is the largest ocean.",
)


@dataclass(frozen=True)
class RerankOptions(Options):
    rank_check: bool = False


SCHEMA = {
    "rank_check": {
        "description": "The obviously relevant document of the canary query must rank first.",
        "type": "boolean",
    },
}


def _body(case: Case) -> dict[str, Any]:
    return {"model": case.model, "query": QUERY, "documents": list(DOCUMENTS), **case.params}


def _check(case: Case, data: Any) -> Checked:
    results = listed(data, "results", "results")
    documents = len(DOCUMENTS)
    scored: list[tuple[float, int]] = []
    for i, result in enumerate(results):
        if not isinstance(result, dict):
            raise ProbeError(ErrorClass.SCHEMA, f"results[{i}] is not an object")
        score = result.get("relevance_score", result.get("score"))
        if not finite(score):
            raise ProbeError(ErrorClass.SCHEMA, f"results[{i}] has no finite relevance_score ({score!r})")
        index = result.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < documents:  # JSON true is no index
            raise ProbeError(ErrorClass.SCHEMA, f"results[{i}].index {index!r} is not a document index")
        scored.append((cast(float, score), index))  # finite() checked it is a number
    distinct = len({index for _, index in scored})
    if len(results) != documents or distinct != documents:
        raise ProbeError(ErrorClass.SCHEMA, f"got {distinct} distinct scores for {documents} documents")
    place = [index for _, index in sorted(scored, reverse=True)].index(0) + 1
    if options_of(case, RerankOptions).rank_check and place != 1:
        raise ProbeError(ErrorClass.EXPECTATION, f"the relevant document ranked {place} of {documents} for {QUERY!r}")
    return Checked(f"{documents} documents scored, relevant one ranked {place}")


TYPE = ModelType("rerank", "POST", "/rerank", RerankOptions, _body, _check, schema=SCHEMA)
