"""Vision: the canary picture sent beside the prompt (chat's image_url part, Messages' image block, Responses'
input_image), checked by the testbed as a decodable PNG and answered with the colour it shows."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from model_monitor.outcome import Outcome
from model_monitor.types.base import CANARY_IMAGE, VISION_PROMPT, canary_image_url, packaged
from testbed.openai_server import FakeOpenAI, _image_urls, _seen

from .helpers import endpoint, model

Probe = Callable[..., dict[str, Outcome]]
GREEN = {"regex": "(?i)green"}


def test_the_canary_is_a_small_png_of_a_green_square() -> None:
    png = packaged(CANARY_IMAGE)
    assert len(png) < 4096
    assert _seen(canary_image_url()) == "green"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://example.com/cat.png", "not a data:image/png;base64 URL"),
        ("data:image/png;base64,not base64!", "not valid base64"),
        ("data:image/png;base64," + base64.b64encode(b"GIF89a....").decode(), "not a PNG"),
        ("data:image/png;base64," + base64.b64encode(packaged(CANARY_IMAGE)[:-20]).decode(), "cut or its CRC"),
    ],
)
def test_the_testbed_refuses_what_is_no_png_data_url(url: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        _seen(url)


def test_each_api_sends_the_canary_and_expect_sees_its_colour(probe: Probe, server: FakeOpenAI) -> None:
    found = probe(
        [
            endpoint(
                server.url,
                model("vlm", id="chat", vision=True, expect=GREEN),
                model("vlm", id="chat-stream", vision=True, stream=True),
                model("vlm", "messages", id="messages", vision=True, expect=GREEN),
                model("vlm", "responses", id="responses", vision=True, expect=GREEN),
                model("vlm", "responses", id="responses-stream", vision=True, stream=True),
                model("txt", id="text", expect={"contains": "pong"}),
            )
        ]
    )
    assert {case: outcome.reason for case, outcome in found.items() if not outcome.passed} == {}
    sent = {record.path: record.body for record in server.requests_for("vlm") if "stream" not in record.body}
    assert sent["/v1/chat/completions"]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": VISION_PROMPT},
                {"type": "image_url", "image_url": {"url": canary_image_url()}},
            ],
        }
    ]
    assert sent["/v1/messages"]["messages"][0]["content"][0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": canary_image_url().split(",")[1]},
    }
    assert sent["/v1/responses"]["input"][0]["content"][1] == {"type": "input_image", "image_url": canary_image_url()}
    streamed = [_image_urls(record.body) for record in server.requests_for("vlm") if "stream" in record.body]
    assert streamed == [[canary_image_url()]] * 2, "a streamed request carries the picture too"
    assert _image_urls(server.requests_for("txt")[0].body) == [], "no picture unless vision is set"


def test_a_model_that_refuses_images_fails_with_the_servers_words(probe: Probe, server: FakeOpenAI) -> None:
    kinds = ("chat", "messages", "responses")
    entries = [model("m+noimage", kind, id=f"{kind}-noimage", vision=True) for kind in kinds]
    found = probe([endpoint(server.url, *entries, model("m+noimage", id="text-only"))])
    assert found["svc/text-only"].passed, "a text prompt to a text-only model"
    for kind in kinds:
        outcome = found[f"svc/{kind}-noimage"]
        assert outcome.error_class == "client_error", outcome
        assert "HTTP 400" in outcome.reason and "image input is not supported" in outcome.reason, outcome.reason


def test_a_vision_case_end_to_end(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [
        model("vlm", id="sees", vision=True, expect=GREEN),
        model("vlm+noimage", id="blind", vision=True),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 1
    assert run.reason("svc/sees") == "replied 5 chars (finish_reason=stop)"
    assert run.error_class("svc/blind") == "client_error"
    assert "image input is not supported" in run.reason("svc/blind"), run.reason("svc/blind")
