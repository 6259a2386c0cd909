"""Audio headers read by hand (no dependency): which format a reply is, and how long it plays.

Each reader takes the whole reply and returns Sound(seconds, sample rate), or raises a bad_response naming what is
wrong with the header. Durations come from the header where it says (WAV data size, FLAC STREAMINFO, the last Ogg
granule position) and from counting frames for MP3."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ErrorClass, ProbeError

__all__ = ["READERS", "Sound", "sniff"]

PCM_RATE = 24_000  # OpenAI's `pcm`: raw 16-bit little-endian mono samples at 24 kHz, no header
OPUS_RATE = 48_000  # an Ogg Opus granule position counts 48 kHz samples whatever the input rate
MP3_KBPS = {  # MPEG version bits -> layer III bitrates by index (0 "free" and 15 "bad" are refused)
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
MP3_KBPS[0] = MP3_KBPS[2]  # MPEG 2.5 shares MPEG 2's table
MP3_RATES = {3: (44_100, 48_000, 32_000), 2: (22_050, 24_000, 16_000), 0: (11_025, 12_000, 8_000)}


@dataclass(frozen=True)
class Sound:
    seconds: float
    rate: int


def _corrupt(audio_format: str, what: str) -> ProbeError:
    return ProbeError(ErrorClass.BAD_RESPONSE, f"corrupt {audio_format} audio: {what}")


def wav(data: bytes) -> Sound:
    """RIFF/WAVE: the fmt chunk's byte rate and the data chunk's size (a streamed WAV may leave the size
    unknown, 0xFFFFFFFF: then the bytes that came count)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _corrupt("wav", f"no RIFF/WAVE header (starts {data[:12]!r})")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            if size < 16 or pos + 24 > len(data):
                raise _corrupt("wav", f"fmt chunk of {size} bytes, expected 16 or more")
            fmt = struct.unpack_from("<HHII", data, pos + 8)  # format tag, channels, sample rate, bytes per second
        elif chunk == b"data":
            if fmt is None:
                raise _corrupt("wav", "data chunk before any fmt chunk")
            _, channels, rate, byte_rate = fmt
            if not (channels and rate and byte_rate):
                raise _corrupt("wav", f"fmt chunk says {channels} channel(s) at {rate} Hz, {byte_rate} bytes/s")
            return Sound(min(size, len(data) - pos - 8) / byte_rate, rate)
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    raise _corrupt("wav", "no data chunk")


def _mp3_frame(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(frame bytes, samples, sample rate) of an MPEG layer III frame header at pos, or None."""
    if pos + 4 > len(data):
        return None
    header = int.from_bytes(data[pos : pos + 4], "big")
    version, layer = (header >> 19) & 3, (header >> 17) & 3
    bitrate, rate_index, padding = (header >> 12) & 15, (header >> 10) & 3, (header >> 9) & 1
    if header >> 21 != 0x7FF or version == 1 or layer != 1 or bitrate in (0, 15) or rate_index == 3:
        return None
    samples, rate = (1152 if version == 3 else 576), MP3_RATES[version][rate_index]
    return samples // 8 * MP3_KBPS[version][bitrate] * 1000 // rate + padding, samples, rate


def mp3(data: bytes) -> Sound:
    """An optional ID3v2 tag, then layer III frames, counted up to the first that is not one (an ID3v1 tag...)."""
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        pos = 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(data[6:10]))  # syncsafe size
    start, samples, rate = pos, 0, 0
    while (frame := _mp3_frame(data, pos)) is not None and pos + frame[0] <= len(data):
        pos, samples, rate = pos + frame[0], samples + frame[1], frame[2]
    if not samples:
        raise _corrupt("mp3", f"no complete MPEG layer III frame at byte {start} (found {data[start : start + 4]!r})")
    return Sound(samples / rate, rate)


def flac(data: bytes) -> Sound:
    """fLaC, then STREAMINFO (always the first metadata block): sample rate and total samples."""
    if data[:4] != b"fLaC":
        raise _corrupt("flac", f"no fLaC marker (starts {data[:4]!r})")
    if len(data) < 42 or data[4] & 0x7F != 0 or int.from_bytes(data[5:8], "big") != 34:
        raise _corrupt("flac", "no 34-byte STREAMINFO block after fLaC")
    info = int.from_bytes(data[18:26], "big")  # rate 20 bits, channels 3, bits per sample 5, total samples 36
    rate, total = info >> 44, info & (2**36 - 1)
    if not rate:
        raise _corrupt("flac", "STREAMINFO gives a sample rate of 0 Hz")
    return Sound(total / rate, rate)


def opus(data: bytes) -> Sound:
    """Ogg pages, the first carrying OpusHead: (last granule position - pre-skip) / 48 kHz."""
    pos, head, granule = 0, b"", 0
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS" or pos + 27 > len(data):
            raise _corrupt("opus", f"no complete Ogg page at byte {pos} (found {data[pos : pos + 4]!r})")
        segments = data[pos + 27 : pos + 27 + data[pos + 26]]
        body = pos + 27 + data[pos + 26]
        end = body + sum(segments)
        if len(segments) < data[pos + 26] or end > len(data):
            raise _corrupt("opus", f"Ogg page at byte {pos} is cut short")
        head = head or data[body:end]
        position = struct.unpack_from("<q", data, pos + 6)[0]
        granule = position if position >= 0 else granule  # -1: no packet ends on this page
        pos = end
    if not head.startswith(b"OpusHead") or len(head) < 19:
        raise _corrupt("opus", f"the first Ogg packet is not an OpusHead (starts {head[:8]!r})")
    pre_skip = struct.unpack_from("<H", head, 10)[0]
    return Sound(max(granule - pre_skip, 0) / OPUS_RATE, OPUS_RATE)


def pcm(data: bytes) -> Sound:
    """Raw 16-bit mono at 24 kHz: the byte count is the duration."""
    if len(data) % 2:
        raise _corrupt("pcm", f"{len(data)} bytes is not a whole number of 16-bit samples")
    return Sound(len(data) / 2 / PCM_RATE, PCM_RATE)


READERS: dict[str, Callable[[bytes], Sound]] = {"wav": wav, "mp3": mp3, "flac": flac, "opus": opus, "pcm": pcm}


def sniff(data: bytes) -> str | None:
    """The format a reply's first bytes announce (pcm has no header, so it is never found)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "opus"
    if data[:3] == b"ID3" or _mp3_frame(data, 0):
        return "mp3"
    return None
