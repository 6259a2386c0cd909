"""What real servers answer, judged right: a reply cut by its budget, reasoning that ran out of budget, a rate SLO
that asks for a reply it can time, the timings, and the model that answered. In-process against the testbed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from model_monitor.outcome import Outcome
from model_monitor.types.base import RATE_PROMPT
from model_monitor.types.contracts import same_model
from testbed.openai_server import FakeOpenAI

from .helpers import endpoint, model

Probe = Callable[..., dict[str, Outcome]]
TEXT_TYPES = ("chat", "completion", "responses", "messages")
# type, streamed, the model name (its "+" tokens choose the shape), what the passing reply says about the cut
CUT = [
    ("chat", False, "c+length", "finish_reason=length, max_tokens 256"),
    ("chat", True, "c+length", "finish_reason=length, max_tokens 256"),
    ("completion", False, "c+length", "finish_reason=length, max_tokens 32"),
    ("completion", True, "c+length", "finish_reason=length, max_tokens 32"),
    ("responses", False, "c+length", "status=incomplete: max_output_tokens, 2 output tokens, max_output_tokens 256"),
    ("responses", True, "c+length", "status=incomplete: max_output_tokens, 4 output tokens, max_output_tokens 256"),
    ("responses", True, "c+length+vllmcut", "status=incomplete: max_output_tokens, 4 output tokens"),
    ("messages", False, "c+length", "stop_reason=max_tokens, 2 output tokens, max_tokens 256"),
    ("messages", True, "c+length", "stop_reason=max_tokens, 4 output tokens, max_tokens 256"),
]
THINK_ONLY = [
    ("chat", False, "t+thinkonly"),
    ("chat", True, "t+thinkonly"),
    ("responses", False, "t+thinkonly"),
    ("responses", True, "t+thinkonly"),
    ("responses", True, "t+thinkonly+vllmcut"),
    ("messages", False, "t+thinkonly"),
    ("messages", True, "t+thinkonly"),
]
# a reply cut with no visible text fails as before: type, streamed, model name, class, a piece of the reason
CUT_EMPTY = [
    ("chat", False, "e+length+empty", "empty", "reply content is empty (finish_reason=length)"),
    ("chat", True, "e+length+nocontent", "empty", "stream carried no content"),
    ("completion", False, "e+length+empty", "empty", "completion text is empty (finish_reason=length)"),
    ("responses", True, "e+length+nocontent", "bad_response", "response incomplete: max_output_tokens"),
    ("messages", False, "e+length+empty", "empty", "reply has no text (blocks: text; stop_reason=max_tokens"),
]


def _id(kind: str, stream: bool, name: str, suffix: str = "") -> str:
    return f"{kind}-{'stream' if stream else 'plain'}-{name}{suffix}"


def _entry(kind: str, stream: bool, name: str, suffix: str = "", **extra: Any) -> dict[str, Any]:
    return model(name, kind, id=_id(kind, stream, name, suffix), stream=stream, **extra)


@pytest.fixture(scope="module")
def cut(openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    from .helpers import probe_endpoints

    models = [
        *(_entry(kind, stream, name) for kind, stream, name, _ in CUT),
        *(_entry(kind, stream, name, "-warn", warn_truncated=True) for kind, stream, name, _ in CUT),
        *(_entry(kind, stream, name) for kind, stream, name in THINK_ONLY),
        *(_entry(kind, stream, name, "-required", require_content=True) for kind, stream, name in THINK_ONLY),
        *(_entry(kind, stream, name) for kind, stream, name, _, _ in CUT_EMPTY),
    ]
    return probe_endpoints(tmp_path_factory.mktemp("cut"), [endpoint(openai_server.url, *models)])


@pytest.mark.parametrize(("kind", "stream", "name", "said"), CUT, ids=[_id(*row[:3]) for row in CUT])
def test_a_reply_cut_by_its_budget_with_text_passes_degraded_only_when_asked(
    cut: dict[str, Outcome], kind: str, stream: bool, name: str, said: str
) -> None:
    plain, warned = cut[f"svc/{_id(kind, stream, name)}"], cut[f"svc/{_id(kind, stream, name, '-warn')}"]
    assert (plain.passed, plain.degraded) == (True, ()), plain.reason
    assert warned.passed, warned.reason
    assert len(warned.degraded) == 1 and warned.degraded[0].startswith("cut short by its token budget ("), warned
    assert said in warned.degraded[0]


@pytest.mark.parametrize(("kind", "stream", "name"), THINK_ONLY, ids=[_id(*row) for row in THINK_ONLY])
def test_reasoning_that_ran_out_of_budget_is_degraded_unless_content_is_required(
    cut: dict[str, Outcome], kind: str, stream: bool, name: str
) -> None:
    alive, required = cut[f"svc/{_id(kind, stream, name)}"], cut[f"svc/{_id(kind, stream, name, '-required')}"]
    assert alive.passed and alive.degraded == ("reasoning only, no visible content",), alive.reason
    assert (required.passed, required.error_class) == (False, "empty"), required.reason
    assert "reasoning but no visible content, and require_content is set" in required.reason


@pytest.mark.parametrize(
    ("kind", "stream", "name", "error_class", "piece"), CUT_EMPTY, ids=[_id(*row[:3]) for row in CUT_EMPTY]
)
def test_a_reply_cut_by_its_budget_without_text_still_fails(
    cut: dict[str, Outcome], kind: str, stream: bool, name: str, error_class: str, piece: str
) -> None:
    outcome = cut[f"svc/{_id(kind, stream, name)}"]
    assert (outcome.passed, outcome.error_class) == (False, error_class), outcome.reason
    assert piece in outcome.reason


@pytest.mark.parametrize("kind", TEXT_TYPES)
def test_a_rate_slo_asks_for_a_reply_long_enough_to_time(probe: Probe, server: FakeOpenAI, kind: str) -> None:
    prompt = "input" if kind == "responses" else "prompt"
    probe(
        [
            endpoint(
                server.url,
                model(f"{kind}-rate", kind, id="rate", stream=True, min_tokens_per_s=1),
                model(f"{kind}-own", kind, id="own", stream=True, min_tokens_per_s=1, **{prompt: "Say hi"}),
                model(f"{kind}-none", kind, id="none", stream=True),
            )
        ]
    )

    def sent(name: str) -> Any:
        body = server.requests_for(name)[0].body
        return body["messages"][0]["content"] if kind in ("chat", "messages") else body[prompt]

    assert sent(f"{kind}-rate") == RATE_PROMPT
    assert sent(f"{kind}-own") == "Say hi"
    assert sent(f"{kind}-none") != RATE_PROMPT
    if kind == "completion":  # its own budget (32) is too short to count to 50; the entry's own one stands
        assert [server.requests_for(f"{kind}-{n}")[0].body["max_tokens"] for n in ("rate", "none")] == [64, 32]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("one+tokens=1+usage=1", "tokens/s unmeasurable: 1 token"),
        ("burst+burst+tokens=6", "tokens/s unmeasurable: 6 token chunks within 0.00 ms (buffered on the way)"),
    ],
    ids=["one-token", "buffered"],
)
def test_a_rate_that_cannot_be_measured_is_said_as_such_not_as_a_breach(
    probe: Probe, server: FakeOpenAI, name: str, why: str
) -> None:
    found = probe([endpoint(server.url, model(name, id="rate", stream=True, min_tokens_per_s=5))])
    outcome = found["svc/rate"]
    assert outcome.passed, outcome.reason
    assert outcome.degraded == (why,)
    assert "min_tokens_per_s" not in outcome.reason and "tokens_per_s" not in outcome.metrics


def test_timings_are_the_benchmarks_and_the_rate_counts_the_servers_tokens(probe: Probe, server: FakeOpenAI) -> None:
    found = probe(
        [
            endpoint(
                server.url,
                model("think+reasoning+tokens=4+token_delay=0.01+usage=20", id="stream", stream=True),
                model("plain", id="plain"),
                model("one+tokens=1+usage=1", id="one", stream=True),
            )
        ]
    )
    stream, plain, one = (found[f"svc/{n}"].metrics for n in ("stream", "plain", "one"))
    assert {"ttfb_s", "ttft_s", "ttfc_s", "itl_mean_s", "tokens_per_s"} <= stream.keys()
    # Causal order, not speed: headers come before the first (reasoning) token, which comes before visible output.
    assert stream["ttfb_s"] <= stream["ttft_s"] <= stream["ttfc_s"] <= found["svc/stream"].duration_s  # type: ignore[operator]
    # 22 tokens by the server's count (20 visible + 2 reasoning), over the 5 gaps between its 6 token chunks.
    assert stream["output_tokens"] == 22
    assert stream["tokens_per_s"] == pytest.approx(21 / (5 * stream["itl_mean_s"]))
    assert "ttfb_s" in plain and "ttft_s" not in plain
    assert "tokens_per_s" not in one  # one token: no rate, however fast it came


@pytest.mark.parametrize("kind", TEXT_TYPES)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_reply_from_another_model_is_degraded_failed_or_ignored_as_configured(
    probe: Probe, server: FakeOpenAI, kind: str, stream: bool
) -> None:
    name = "fb+answer=fallback-model"
    found = probe(
        [
            endpoint(
                server.url,
                model(name, kind, id="default", stream=stream),
                model(name, kind, id="fail", stream=stream, model_mismatch="fail"),
                model(name, kind, id="off", stream=stream, model_mismatch="off"),
                model("same", kind, id="same", stream=stream),
            )
        ]
    )
    said = f"answered by model 'fallback-model', asked for '{name}'"
    assert found["svc/default"].passed and found["svc/default"].degraded == (said,), found["svc/default"].reason
    assert (found["svc/fail"].passed, found["svc/fail"].error_class) == (False, "expectation")
    assert said in found["svc/fail"].reason
    assert found["svc/off"].passed and found["svc/off"].degraded == ()
    assert found["svc/same"].passed and found["svc/same"].degraded == ()


@pytest.mark.parametrize(
    ("asked", "answered", "same"),
    [
        ("gpt-4o", "gpt-4o", True),
        ("gpt-4o", "GPT-4o", True),
        ("gpt-4o", "gpt-4o-2024-08-06", True),
        ("gpt-4", "gpt-4-0613", True),
        ("gemini-2.0-flash", "models/gemini-2.0-flash", True),
        ("/data/models/Llama-3.1-8B", "Llama-3.1-8B", True),
        ("llama3", "llama3:8b-instruct-q4_0", True),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022", True),
        ("mistral-large", "mistral-large-v2", True),
        ("gpt-4o", "gpt-4o-mini", False),
        ("gpt-4", "gpt-4o", False),
        ("llama3", "llama3.1", False),
        ("claude-3-5-sonnet", "claude-3-haiku-20240307", False),
        ("my-deployment", "gpt-4o-2024-08-06", False),
    ],
)
def test_the_model_match_rule(asked: str, answered: str, same: bool) -> None:
    assert same_model(asked, answered) is same
