"""Token usage: prompt, completion and reasoning tokens per case from the server's `usage`, plain and streamed,
in both of OpenAI's spellings, bounded; a column of the summary and the run's total."""

from __future__ import annotations

import pytest

from model_monitor.types.usage import MAX_TOKENS, token_usage
from testbed.openai_server import FakeOpenAI

from .helpers import endpoint, model

KINDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")


def test_every_case_reports_its_tokens_and_the_run_its_total(server: FakeOpenAI, run_monitor) -> None:
    models = [
        model("chat"),  # usage: prompt, 1 completion
        model("o+reasoner", id="reasoner", token_param="max_completion_tokens"),  # 1 visible + 2 reasoning
        model("stream+tokens=4", id="stream", stream=True),  # the last chunk's usage (include_usage)
        model("r+reasoning+tokens=4", "responses", id="responses", stream=True),  # input/output_tokens: 4 + 2
        model("embed", "embedding"),  # prompt tokens only
        model("absurd+badusage", id="absurd"),  # negative, 10**12, a bool: no count
        model("rerank", "rerank"),  # total_tokens only: no count
    ]
    run = run_monitor({"endpoints": [endpoint(server.url, *models)]})
    assert run.ret == 0, run.output

    def tokens(case_id: str) -> tuple[float | None, ...]:
        props = run.cases[case_id]
        return tuple(
            float(props[f"model_monitor.metric.{k}"]) if f"model_monitor.metric.{k}" in props else None for k in KINDS
        )

    chat, reasoner, stream, responses = (tokens(f"svc/{c}") for c in ("chat", "reasoner", "stream", "responses"))
    assert chat[1:] == (1.0, None) and chat[0] > 0
    assert reasoner[1:] == (3.0, 2.0), "reasoning tokens are part of the completion's count"
    assert stream[1:] == (4.0, None) and stream[0] > 0
    assert responses[1:] == (6.0, 2.0) and responses[0] > 0, "4 visible + 2 reasoning, as output_tokens"
    embed = tokens("svc/embed")
    assert embed[0] == 4.0 and embed[1:] == (None, None)
    assert tokens("svc/absurd") == (None, None, None)
    assert tokens("svc/rerank") == (None, None, None)

    total = sum(t[0] + (t[1] or 0) for t in (chat, reasoner, stream, responses, embed))
    run.result.stdout.fnmatch_lines(
        [
            "case * verdict * tok/s * tokens * reason",
            f"svc/chat * PASS * {chat[0]:.0f}+1 * replied 4 chars*",
            f"svc/reasoner * PASS * {reasoner[0]:.0f}+3 (2 r) *",
            "svc/embed * embedding * PASS * 4+- *",
            "svc/absurd * PASS * - * replied*",
            f"this run used {total:,.0f} tokens: * prompt + * completion, of which 4 reasoning (OpenAI counts reasoning "
            "tokens in the completion); 2 case(s) reported no usage",
        ]
    )


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            {"prompt_tokens": 3, "completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 4}},
            {"prompt_tokens": 3.0, "completion_tokens": 5.0, "reasoning_tokens": 4.0},
        ),
        (
            {"input_tokens": 3, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}},
            {"prompt_tokens": 3.0, "completion_tokens": 5.0, "reasoning_tokens": 0.0},
        ),
        (
            {
                "prompt_tokens": -1,
                "completion_tokens": MAX_TOKENS,
                "completion_tokens_details": {"reasoning_tokens": 1.5},
            },
            {},
        ),
        ({"prompt_tokens": True, "completion_tokens": "7", "completion_tokens_details": None}, {}),
        ("many", {}),
    ],
    ids=["chat", "responses", "out-of-bounds", "not-integers", "not-an-object"],
)
def test_usage_in_either_spelling_and_only_plausible_counts(usage: object, expected: dict[str, float]) -> None:
    assert token_usage({"usage": usage}) == expected
