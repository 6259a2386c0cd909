"""image: POST /images/generations, one image of the smallest size as b64_json: it must decode to a PNG, JPEG or
WebP whose header is whole and names its dimensions. A server that answers with a `url` instead has the URL
checked (http or https, a host) but never fetched: the monitor talks to the endpoint only."""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..case import Case
from ..errors import ErrorClass, ProbeError
from .base import PROMPT_SCHEMA, Checked, ModelType, Options, listed, options_of

__all__ = ["TYPE", "image_size"]


@dataclass(frozen=True)
class ImageOptions(Options):
    prompt: str = "A small red circle on a white background."
    size: str = "256x256"


SCHEMA = {
    **PROMPT_SCHEMA,
    "size": {
        "description": "The size asked for, WIDTHxHEIGHT (or auto). Default 256x256, the smallest most servers make.",
        "type": "string",
        "pattern": "^([1-9][0-9]{0,4}x[1-9][0-9]{0,4}|auto)$",
    },
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOF = {0xC0, 0xC1, 0xC2}  # baseline, extended and progressive frames: the ones image servers write


def _body(case: Case) -> dict[str, Any]:
    options = options_of(case, ImageOptions)
    return {
        "model": case.model,
        "prompt": options.prompt,
        "n": 1,
        "size": options.size,
        "response_format": "b64_json",
        **case.params,
    }


def _check(case: Case, data: Any) -> Checked:
    first = listed(data, "data", "images")[0]
    if not isinstance(first, dict):
        raise ProbeError(ErrorClass.SCHEMA, "data[0] is not an object")
    if isinstance(first.get("b64_json"), str) and first["b64_json"]:
        picture = _decoded(first["b64_json"])
        kind, width, height = image_size(picture)
        asked = options_of(case, ImageOptions).size
        if _dimensions(asked) not in (None, (width, height)):  # a size it named ("auto" names none) is what it asked
            raise ProbeError(
                ErrorClass.SCHEMA, f"data[0].b64_json is a {kind} of {width}x{height} pixels, asked for {asked}"
            )
        return Checked(f"{kind} {width}x{height}, {len(picture)} bytes")
    if isinstance(first.get("url"), str) and first["url"]:
        return Checked(f"image URL on {_host(first['url'])} (not fetched)")
    raise ProbeError(ErrorClass.SCHEMA, "data[0] has neither a b64_json string nor a url")


def _dimensions(size: Any) -> tuple[int, int] | None:
    """(width, height) of a size such as "256x256"; None for one that names no dimensions ("auto")."""
    width, x, height = str(size).partition("x")
    return (int(width), int(height)) if x and width.isdigit() and height.isdigit() else None


def _decoded(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)  # a line-wrapped encoding is still base64
    except (binascii.Error, ValueError):
        raise ProbeError(ErrorClass.SCHEMA, f"data[0].b64_json is not base64 ({len(text)} chars)") from None


def _host(url: str) -> str:
    """The URL's host; only the host is ever shown, as a signed URL carries its token in the query."""
    try:
        split = urlsplit(url)
        host = split.hostname
    except ValueError:
        split, host = None, None
    if split is None or split.scheme not in ("http", "https") or not host:
        scheme = f"scheme {split.scheme!r}" if split and split.scheme else "no scheme"
        raise ProbeError(ErrorClass.SCHEMA, f"data[0].url is not an http(s) URL with a host ({scheme})")
    return host


def image_size(picture: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header of a PNG, JPEG or WebP; a bad or truncated one is a SCHEMA error."""
    if picture.startswith(PNG_SIGNATURE):
        return ("PNG", *_png(picture))
    if picture.startswith(b"\xff\xd8\xff"):
        return ("JPEG", *_jpeg(picture))
    if picture[:4] == b"RIFF" and picture[8:12] == b"WEBP":
        return ("WebP", *_webp(picture))
    raise _corrupt(f"{len(picture)} bytes that are not a PNG, JPEG or WebP image (they start {picture[:8].hex()})")


def _corrupt(what: str) -> ProbeError:
    return ProbeError(ErrorClass.SCHEMA, f"data[0].b64_json decodes to {what}")


def _png(picture: bytes) -> tuple[int, int]:
    """IHDR's size, once every chunk is whole (length and CRC) up to IEND: a cut-off image fails here."""
    at, size, seen = len(PNG_SIGNATURE), None, list[bytes]()
    while at + 12 <= len(picture):
        length, kind = struct.unpack(">I4s", picture[at : at + 8])
        end = at + 12 + length
        if end > len(picture):
            raise _corrupt(
                f"a truncated PNG: chunk {kind.decode('latin-1')} at byte {at} needs {end - len(picture)} more bytes"
            )
        (crc,) = struct.unpack(">I", picture[end - 4 : end])
        if zlib.crc32(picture[at + 4 : end - 4]) != crc:
            raise _corrupt(f"a corrupt PNG: chunk {kind.decode('latin-1')} at byte {at} fails its CRC")
        if not seen and (kind != b"IHDR" or length != 13):
            raise _corrupt("a PNG whose first chunk is not a 13-byte IHDR")
        if kind == b"IHDR":
            size = struct.unpack(">II", picture[at + 8 : at + 16])
        seen.append(kind)
        if kind == b"IEND":
            break
        at = end
    if size is None or not seen or seen[-1] != b"IEND":
        raise _corrupt(f"a truncated PNG: {len(picture)} bytes without an IEND chunk")
    if b"IDAT" not in seen:
        raise _corrupt("a PNG without image data (no IDAT chunk)")
    return _positive(size)


def _jpeg(picture: bytes) -> tuple[int, int]:
    """The frame header's size (SOF0/1/2), from the marker segments before it; the image must end with EOI."""
    at = 2
    while at + 4 <= len(picture) and picture[at] == 0xFF:
        marker = picture[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        (length,) = struct.unpack(">H", picture[at + 2 : at + 4])
        if marker in JPEG_SOF and at + 9 <= len(picture):
            height, width = struct.unpack(">HH", picture[at + 5 : at + 9])
            if not picture.endswith(b"\xff\xd9"):
                raise _corrupt(f"a truncated JPEG: {len(picture)} bytes without the EOI marker at the end")
            return _positive((width, height))
        if marker == 0xDA or length < 2:  # scan data before any frame header, or a length that cannot be
            break
        at += 2 + length
    raise _corrupt(f"a JPEG without a readable frame header (SOF0/SOF1/SOF2) in its {len(picture)} bytes")


def _webp(picture: bytes) -> tuple[int, int]:
    """The size from the first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended, the canvas)."""
    (riff_size,) = struct.unpack("<I", picture[4:8])
    if riff_size + 8 > len(picture):
        raise _corrupt(f"a truncated WebP: RIFF says {riff_size + 8} bytes, got {len(picture)}")
    kind, head = picture[12:16], picture[20:30]
    if kind == b"VP8 " and len(head) >= 10 and head[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[6:10])
        return _positive((width & 0x3FFF, height & 0x3FFF))
    if kind == b"VP8L" and len(head) >= 5 and head[0] == 0x2F:
        (bits,) = struct.unpack("<I", head[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(head) >= 10:
        return int.from_bytes(head[4:7], "little") + 1, int.from_bytes(head[7:10], "little") + 1
    raise _corrupt(f"a WebP whose first chunk ({kind.decode('latin-1')!r}) has no readable size")


def _positive(size: tuple[int, int]) -> tuple[int, int]:
    if not all(size):
        raise _corrupt(f"an image of {size[0]}x{size[1]} pixels")
    return size


TYPE = ModelType(
    "image",
    "POST",
    "/images/generations",
    ImageOptions,
    _body,
    _check,
    tags=frozenset({"user"}),
    schema=SCHEMA,
    in_defaults=frozenset({"prompt"}),
    open_params=frozenset({"response_format"}),
)
