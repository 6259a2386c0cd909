"""The image type end to end: POST /v1/images/generations against FakeOpenAI, its faults, and its config errors;
and the header reader on images made by real encoders."""

from __future__ import annotations

import base64

import pytest

from model_monitor.errors import ProbeError
from model_monitor.types.image import image_size
from testbed.openai_server import FakeOpenAI

from .faults import IMAGE_FAULTS
from .helpers import WORKERS, endpoint, model


@WORKERS
def test_a_generated_image_passes_with_its_format_and_size_and_each_fault_fails(
    openai_server: FakeOpenAI, run_monitor, workers: list[str]
) -> None:
    models = [
        model("img-ok", "image", id="ok"),
        model("img-jpeg+format=jpeg", "image", id="jpeg", size="512x320"),
        model("img-webp+format=webp", "image", id="webp", size="64x32"),
        model("img-url", "image", id="url", params={"response_format": "url"}),
        *(model(name, "image", id=name.partition("+")[2].replace("/", "_")) for name, _, _ in IMAGE_FAULTS),
    ]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]}, *workers)
    assert run.ret == 1, run.output
    assert run.reason("svc/ok") == "PNG 256x256, 755 bytes"
    assert run.reason("svc/jpeg").startswith("JPEG 512x320, ")
    assert run.reason("svc/webp").startswith("WebP 64x32, ")
    assert run.reason("svc/url") == "image URL on images.example (not fetched)", "the signed query is never shown"
    for name, error_class, piece in IMAGE_FAULTS:
        run.assert_fault("svc/" + name.partition("+")[2].replace("/", "_"), error_class, piece)
    sent = openai_server.requests_for("img-ok")[-1]
    assert sent.path == "/v1/images/generations"
    assert {k: sent.body[k] for k in ("n", "size", "response_format")} == {
        "n": 1,
        "size": "256x256",
        "response_format": "b64_json",
    }
    assert sent.body["prompt"]
    assert "canary-signature" not in run.output + run.junit


def test_an_image_url_is_checked_but_never_fetched(server: FakeOpenAI, run_monitor) -> None:
    """The URL points back at the testbed: the only request it sees is the generation itself."""
    link = f"{server.url}/v1/models?sig=url-secret"
    run = run_monitor({"endpoints": [endpoint(server.url, model(f"img+url={link}", "image", id="link"))]})
    assert run.ret == 0, run.output
    assert run.reason("svc/link") == "image URL on 127.0.0.1 (not fetched)"
    assert [r.path for r in server.requests] == ["/v1/images/generations"]
    assert "url-secret" not in run.output + run.junit


# Images made by real encoders (libwebp, as Modernizr's feature tests ship them; a 1x1 PNG).
REAL = {
    "webp-lossless": "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==",
    "webp-lossy": "UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA",
    "webp-alpha": "UklGRkoAAABXRUJQVlA4WAoAAAAQAAAAAAAAAAAAQUxQSAwAAAARBxAR/Q9ERP8DAABWUDggGAAAABQBAJ0BKgEAAQAAAP4AAA3AAP7mtQAAAA==",
    "png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_the_header_reader_reads_images_from_real_encoders(name: str) -> None:
    assert image_size(base64.b64decode(REAL[name]))[1:] == (1, 1)


def test_a_png_with_a_flipped_byte_fails_its_crc() -> None:
    picture = bytearray(base64.b64decode(REAL["png"]))
    picture[43] ^= 0xFF  # in IDAT's data
    with pytest.raises(ProbeError, match="a corrupt PNG: chunk IDAT at byte 33 fails its CRC"):
        image_size(bytes(picture))


@pytest.mark.parametrize(
    ("entry", "piece"),
    [
        (model("m", "image", size="big"), "endpoints[0].models[0].size: 'big' does not match"),
        (model("m", "image", size="0x256"), "endpoints[0].models[0].size: '0x256' does not match"),
        (model("m", "image", prompt=""), "endpoints[0].models[0].prompt: '' should be non-empty"),
        (
            model("m", "embedding", size="256x256"),
            "endpoints[0].models[0].size: applies only to type image, not embedding",
        ),
        (
            model("m", "image", stream=True),
            "endpoints[0].models[0].stream: applies only to type chat or completion or messages or responses, not image",
        ),
    ],
    ids=["size-word", "size-zero", "empty-prompt", "size-on-embedding", "stream-on-image"],
)
def test_a_wrong_image_field_stops_the_run_naming_it(
    openai_server: FakeOpenAI, run_monitor, entry: dict, piece: str
) -> None:
    run = run_monitor({"endpoints": [endpoint(openai_server.url, entry)]})
    assert run.ret == 4
    assert piece in run.output, run.output
