"""transcription end to end: the shipped canary goes out as multipart, the text comes back and `expect` reads it."""

from __future__ import annotations

import struct

import pytest

from model_monitor.types.transcription import canary
from testbed.openai_server import FakeOpenAI

from .faults import TRANSCRIPTION_FAULTS
from .helpers import WORKERS, endpoint, model


def transcription(name: str, **extra: object) -> dict:
    return model(name, "transcription", id=name.replace("+", "-"), **extra)


def test_the_canary_is_a_short_16_khz_mono_wav() -> None:
    audio = canary()
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    assert 10_000 < len(audio) < 100_000, "tens of KB"
    channels, rate = struct.unpack_from("<HI", audio, 22)  # the fmt chunk right after the RIFF header
    assert (channels, rate, audio[34]) == (1, 16000, 16)


def test_a_healthy_transcription_passes_and_expect_reads_its_text(openai_server: FakeOpenAI, run_monitor) -> None:
    models = [
        transcription("whisper", language="en", expect={"regex": "(?i)quick brown fox"}, params={"temperature": 0}),
        transcription("whisper+deaf", expect={"contains": "lazy cat"}),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 1, run.output
    assert run.cases["svc/whisper"]["model_monitor.verdict"] == "pass", run.reason("svc/whisper")
    assert run.reason("svc/whisper") == "heard 9 words"
    assert run.error_class("svc/whisper-deaf") == "expectation"
    assert "reply does not contain 'lazy cat'" in run.reason("svc/whisper-deaf")
    sent = openai_server.requests_for("whisper")[-1]
    assert sent.path == "/v1/audio/transcriptions" and sent.headers["content-type"].startswith("multipart/form-data")
    assert sent.body == {
        "model": "whisper",
        "response_format": "json",
        "language": "en",
        "temperature": "0",
        "file": canary(),
    }
    assert "language" not in openai_server.requests_for("whisper+deaf")[-1].body, "no language: the server detects it"


@WORKERS
def test_each_transcription_fault_fails_with_its_class(
    openai_server: FakeOpenAI, run_monitor, workers: list[str]
) -> None:
    models = [transcription(name) for name, _, _ in TRANSCRIPTION_FAULTS] + [transcription("whisper-fine")]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, *workers)
    assert run.ret == 1
    assert run.cases["svc/whisper-fine"]["model_monitor.verdict"] == "pass", run.reason("svc/whisper-fine")
    for name, error_class, piece in TRANSCRIPTION_FAULTS:
        run.assert_fault("svc/" + name.replace("+", "-"), error_class, piece)


@pytest.mark.parametrize(
    ("entry", "piece"),
    [
        (
            model("m", "chat", language="en"),
            "endpoints[0].models[0].language: applies only to type transcription, not chat",
        ),
        (
            model("m", "embedding", expect={"contains": "x"}),
            "endpoints[0].models[0].expect: applies only to type chat or completion or messages or responses or transcription, not embedding",
        ),
        (model("m", "transcription", language=""), "endpoints[0].models[0].language: '' should be non-empty"),
        (
            model("m", "transcription", stream=True),
            "endpoints[0].models[0].stream: applies only to type chat or completion or messages or responses, not transcription",
        ),
        (
            model("m", "transcription", expect={"regex": "("}),
            "endpoints[0].models[0].expect.regex: invalid regular expression",
        ),
    ],
    ids=["language-on-chat", "expect-on-embedding", "empty-language", "stream", "bad-regex"],
)
def test_a_wrong_transcription_field_is_a_config_error_naming_it(
    openai_server: FakeOpenAI, run_monitor, entry: dict, piece: str
) -> None:
    before = len(openai_server.requests)
    run = run_monitor({"endpoints": [endpoint(openai_server.url, entry)]})
    assert run.ret == 4 and piece in run.output, run.output
    assert len(openai_server.requests) == before
