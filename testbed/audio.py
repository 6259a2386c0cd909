"""Audio the testbed speech route answers with: a short tone in each format a speech server offers, made here
(the wave module for WAV, the other headers written by hand) so that the monitor's readers meet real layouts."""

from __future__ import annotations

import io
import math
import struct
import wave

CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "opus": "audio/ogg", "pcm": "audio/pcm"}
MP3_FRAME = b"\xff\xfb\x90\x00"  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz: 417-byte frames of 1152 samples
OPUS_PRE_SKIP = 312


def tone(audio_format: str, seconds: float) -> bytes:
    """`seconds` of a 440 Hz tone (or of its header alone: 0 s) in the format asked for."""
    return MAKERS[audio_format](seconds)


def _wav(seconds: float, rate: int = 16_000) -> bytes:
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples)
    return out.getvalue()


def _mp3(seconds: float) -> bytes:
    frames = math.ceil(seconds * 44_100 / 1152)
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + (MP3_FRAME + bytes(413)) * frames


def _flac(seconds: float, rate: int = 24_000) -> bytes:
    info = rate << 44 | 0 << 41 | 15 << 36 | int(seconds * rate)  # mono, 16 bits per sample, total samples
    streaminfo = struct.pack(">HH", 4096, 4096) + bytes(6) + info.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + b"\x80" + len(streaminfo).to_bytes(3, "big") + streaminfo


def _ogg_page(payload: bytes, granule: int, sequence: int, flags: int) -> bytes:
    """One Ogg page holding one packet of under 255 bytes (the CRC is left 0: the monitor does not check it)."""
    return (
        b"OggS" + bytes([0, flags]) + struct.pack("<qIII", granule, 1, sequence, 0) + bytes([1, len(payload)]) + payload
    )


def _opus(seconds: float) -> bytes:
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", OPUS_PRE_SKIP, 24_000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 7) + b"testbed" + struct.pack("<I", 0)
    end = OPUS_PRE_SKIP + int(seconds * 48_000)
    return _ogg_page(head, 0, 0, 2) + _ogg_page(tags, 0, 1, 0) + _ogg_page(b"\xfc" + bytes(20), end, 2, 4)


def _pcm(seconds: float) -> bytes:
    return bytes(2 * int(seconds * 24_000))


MAKERS = {"wav": _wav, "mp3": _mp3, "flac": _flac, "opus": _opus, "pcm": _pcm}
