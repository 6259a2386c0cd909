"""speech end to end: each format's header is read for its duration; what is not that audio fails with its class."""

from __future__ import annotations

import pytest

from testbed.openai_server import FakeOpenAI

from .faults import SPEECH_FAULTS
from .helpers import WORKERS, endpoint, model


def speech(name: str, case_id: str | None = None, **extra: object) -> dict:
    return model(name, "speech", id=case_id or name.replace("+", "-"), **extra)


HEALTHY = [
    ("wav", "wav 1.50 s, 16000 Hz"),
    ("mp3", "mp3 1.52 s, 44100 Hz"),
    ("flac", "flac 1.50 s, 24000 Hz"),
    ("opus", "opus 1.50 s, 48000 Hz"),
    ("pcm", "pcm 1.50 s, 24000 Hz"),
]


def test_each_audio_format_passes_with_its_duration_and_rate(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [speech("tts", fmt, response_format=fmt) for fmt, _ in HEALTHY]
    models.append(speech("tts-defaults", input="Hello there.", voice="nova", params={"speed": 1.25}))
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 0, run.output
    for fmt, summary in HEALTHY:
        assert run.reason(f"svc/{fmt}") == summary
    sent = openai_server.requests_for("tts")[0].body
    assert sent["input"] and sent["voice"] == "alloy"
    assert openai_server.requests_for("tts-defaults")[-1].body == {
        "model": "tts-defaults",
        "input": "Hello there.",
        "voice": "nova",
        "response_format": "wav",
        "speed": 1.25,
    }
    assert run.reason("svc/tts-defaults") == "wav 1.50 s, 16000 Hz", "wav unless response_format says otherwise"


@WORKERS
def test_each_speech_fault_fails_with_its_class(openai_server: FakeOpenAI, run_monitor, workers: list[str]) -> None:
    models = [speech(name, f"{name}-{fmt}".replace("+", "-"), response_format=fmt) for name, fmt, _, _ in SPEECH_FAULTS]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models, speech("tts-fine"))]}, *workers)
    assert run.ret == 1
    assert run.cases["svc/tts-fine"]["model_monitor.verdict"] == "pass", run.reason("svc/tts-fine")
    for name, fmt, error_class, piece in SPEECH_FAULTS:
        run.assert_fault(f"svc/{name}-{fmt}".replace("+", "-"), error_class, piece)


@pytest.mark.parametrize(
    ("entry", "piece"),
    [
        (model("m", "chat", voice="alloy"), "endpoints[0].models[0].voice: applies only to type speech, not chat"),
        (
            model("m", "transcription", response_format="wav"),
            "endpoints[0].models[0].response_format: applies only to type speech, not transcription",
        ),
        (
            model("m", "speech", response_format="aiff"),
            "endpoints[0].models[0].response_format: 'aiff' is not one of: wav, mp3, flac, opus, pcm",
        ),
        (
            model("m", "speech", input=["one", "two"]),
            "endpoints[0].models[0].input: ['one', 'two'] is not of type string",
        ),
        (
            model("m", "speech", expect={"contains": "x"}),
            "endpoints[0].models[0].expect: applies only to type chat or completion or messages or responses or transcription, not speech",
        ),
        (
            model("m", "rerank", input="x"),
            "endpoints[0].models[0].input: applies only to type embedding or moderation or responses or speech, not rerank",
        ),
    ],
    ids=["voice-on-chat", "format-on-transcription", "unknown-format", "input-list", "expect", "input-on-rerank"],
)
def test_a_wrong_speech_field_is_a_config_error_naming_it(
    openai_server: FakeOpenAI, run_monitor, entry: dict, piece: str
) -> None:
    before = len(openai_server.requests)
    run = run_monitor({"endpoints": [endpoint(openai_server.url, entry)]})
    assert run.ret == 4 and piece in run.output, run.output
    assert len(openai_server.requests) == before
