"""Token usage as a server reports it in a reply's `usage`, in either of OpenAI's two spellings, as metrics.

chat/completions and embeddings say prompt_tokens, completion_tokens and
completion_tokens_details.reasoning_tokens; the Responses API says input_tokens, output_tokens and
output_tokens_details.reasoning_tokens. Reasoning tokens are part of the completion's count, not added to it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_TOKENS", "count", "token_usage"]

MAX_TOKENS = 10**9  # a usage count past this is no count
# metric key -> where each spelling keeps it: (its key, or a (details object, key) pair)
SPELLINGS: dict[str, tuple[Any, ...]] = {
    "prompt_tokens": ("prompt_tokens", "input_tokens"),
    "completion_tokens": ("completion_tokens", "output_tokens"),
    "reasoning_tokens": (
        ("completion_tokens_details", "reasoning_tokens"),
        ("output_tokens_details", "reasoning_tokens"),
    ),
}


def count(value: Any) -> int | None:
    """A token count when it is a plausible one: a non-negative integer below MAX_TOKENS (not a bool)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_TOKENS else None


def token_usage(data: Any) -> dict[str, float]:
    """prompt_tokens, completion_tokens and reasoning_tokens from a reply's `usage`, each only when reported
    and plausible."""
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return {}
    found: dict[str, float] = {}
    for metric, places in SPELLINGS.items():
        values = (count(_lookup(usage, place)) for place in places)
        value = next((v for v in values if v is not None), None)
        if value is not None:
            found[metric] = float(value)
    return found


def _lookup(usage: dict[str, Any], place: str | tuple[str, str]) -> Any:
    if isinstance(place, str):
        return usage.get(place)
    details = usage.get(place[0])
    return details.get(place[1]) if isinstance(details, dict) else None
