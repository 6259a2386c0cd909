"""speech: POST /audio/speech: the reply is audio of the requested format, with a valid header and a duration
above zero (types/audio.py reads the headers)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..case import Case
from ..errors import ErrorClass, ProbeError
from ..reply import Timed, load_json, media_type, one_line, server_message
from .audio import READERS, sniff
from .base import TEXT_INPUT_SCHEMA, Checked, ModelType, Options, options_of

__all__ = ["TYPE"]


@dataclass(frozen=True)
class SpeechOptions(Options):
    input: str = "Model Monitor canary sentence."
    voice: str = "alloy"
    response_format: str = "wav"


SCHEMA = {
    **TEXT_INPUT_SCHEMA,
    "voice": {
        "description": "The voice asked for (alloy, or one the server knows). Default alloy.",
        "type": "string",
        "minLength": 1,
    },
    "response_format": {
        "description": "The audio format asked for, whose header and duration are checked (pcm: raw 16-bit mono at "
        "24 kHz). Default wav.",
        "enum": ["wav", "mp3", "flac", "opus", "pcm"],
    },
}


@dataclass(frozen=True)
class Audio:
    """A plain reply read as bytes: what speech checks instead of JSON."""

    data: bytes
    content_type: str


def _body(case: Case) -> dict[str, Any]:
    options = options_of(case, SpeechOptions)
    return {
        "model": case.model,
        "input": options.input,
        "voice": options.voice,
        "response_format": options.response_format,
        **case.params,
    }


def _parse(reply: Timed) -> Audio:
    return Audio(reply.value, media_type(reply.headers))


def _check(case: Case, audio: Audio) -> Checked:
    wanted = options_of(case, SpeechOptions).response_format
    if "json" in audio.content_type or audio.content_type.startswith("text/"):
        said = server_message(load_json(audio.data)) if "json" in audio.content_type else None
        if said:
            raise ProbeError(ErrorClass.BAD_RESPONSE, f"error object in HTTP 200: {said}")
        raise ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"content-type {audio.content_type} ({len(audio.data)} bytes), expected {wanted} audio",
        )
    if not audio.data:
        raise ProbeError(
            ErrorClass.EMPTY, f"reply has no audio (0 bytes, content-type {audio.content_type or '(none)'})"
        )
    found = sniff(audio.data)
    if found and found != wanted:
        raise ProbeError(ErrorClass.SCHEMA, f"asked for {wanted} audio, got {found}")
    if found is None:
        _headerless(audio, wanted)
    sound = READERS[wanted](audio.data)
    if sound.seconds <= 0:
        raise ProbeError(
            ErrorClass.EMPTY, f"{wanted} audio has a valid header but no samples ({len(audio.data)} bytes)"
        )
    return Checked(f"{wanted} {sound.seconds:.2f} s, {sound.rate} Hz")


def _headerless(audio: Audio, wanted: str) -> None:
    """A reply without an audio header (pcm never has one) must be labelled as audio, and not be a gateway's page
    or error body sent as such: any even number of bytes reads as pcm samples."""
    labelled = audio.content_type or "(none)"
    start = audio.data.lstrip()[:15].lower()
    if start.startswith((b"<!doctype html", b"<html")):
        title = re.search(rb"<title[^>]*>(.*?)</title>", audio.data[:8192], re.IGNORECASE | re.DOTALL)
        page = f"HTML page {one_line(title[1].decode('utf-8', 'replace'), 60)!r}" if title else "HTML page"
        raise ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"{page} ({len(audio.data)} bytes, content-type {labelled}), expected {wanted} audio",
        )
    if start.startswith((b"{", b"[")) and (data := _json_or_none(audio.data)) is not None:
        said = server_message(data)
        raise ProbeError(
            ErrorClass.BAD_RESPONSE,
            f"error object in HTTP 200: {said}"
            if said
            else f"JSON ({len(audio.data)} bytes, content-type {labelled}), expected {wanted} audio",
        )
    if not audio.content_type.startswith("audio/") and audio.content_type != "application/octet-stream":
        raise ProbeError(
            ErrorClass.BAD_RESPONSE, f"content-type {labelled} ({len(audio.data)} bytes), expected {wanted} audio"
        )


def _json_or_none(data: bytes) -> Any:
    """The body as JSON, or None when it is not (samples may begin with the byte of a brace)."""
    try:
        return load_json(data)
    except ProbeError:
        return None


TYPE = ModelType(
    "speech",
    "POST",
    "/audio/speech",
    SpeechOptions,
    _body,
    _check,
    _parse,
    schema=SCHEMA,
    in_defaults=frozenset({"input"}),
)
