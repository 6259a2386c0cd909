"""FakeOpenAI: an OpenAI-compatible loopback server whose faults are chosen by model name.

Shapes of real servers among them: length (a reply cut by its token budget with visible text: finish_reason
length, Responses status incomplete with max_output_tokens, Messages stop_reason max_tokens), thinkonly (the budget
ran out while reasoning: reasoning and no visible content), vllmcut (vLLM ends a Responses stream cut by its budget
with response.completed carrying status incomplete), filtered (incomplete for content_filter), answer=NAME (the
reply names another model than the one asked for, as a gateway that fell back to another deployment)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.parser
import email.policy
import email.utils
import functools
import hmac
import json
import random
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from testbed import audio
from testbed._runner import BackgroundServer

DEFAULT_MODELS = ("chat-model", "embed-model", "rerank-model", "completion-model")
TRANSCRIPT = "The quick brown fox jumps over the lazy dog."
HUGE_BYTES = 50 * 1024 * 1024
PIECES = ("po", "ng")
LOGIN_PAGE = (
    "<!doctype html><html><head><title>Sign in</title></head><body>"
    "<form method=post action=/login><input name=user><input name=password type=password>"
    "<button>Sign in</button></form></body></html>"
)
# Tokens that replace the normal reply, so a streaming request gets them too.
BODY_FAULTS = (
    "hang",
    "reset",
    "close",
    "trickle",
    "huge",
    "html",
    "error200",
    "badjson",
    "badgzip",
    "redirect",
    "body",
    "raw",
    "providererror",
    "toolcalls_int",
)
BOMB_BYTES = 1024 * 1024 * 1024  # what the gzip bomb inflates to: 1 GiB of zeros from about 13 KB
DEEP = 30_000  # 60 KB: under every body cap, far past any recursion limit


def _gzip(data: bytes | list[bytes], level: int = 9) -> bytes:
    """gzip of the data (a list of pieces is compressed piece by piece, to keep a large input out of memory)."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    pieces = data if isinstance(data, list) else [data]
    return b"".join(packer.compress(piece) for piece in pieces) + packer.flush()


@functools.cache
def gzip_bomb() -> bytes:
    """gzip inside gzip: sent with `Content-Encoding: gzip, gzip`, about 13 KB that decodes to 1 GiB. The inner layer
    at level 1 takes 1.6 s of CPU where level 9 took 5 s, on the server's loop that every other reply waits for."""
    zeros = bytes(1024 * 1024)
    return _gzip(_gzip([zeros] * (BOMB_BYTES // len(zeros)), level=1))


# Hostile bodies by name (body=NAME answers a 200 with it, errbody=NAME an injected error status), each made only
# when asked for: the gzip bomb costs seconds of CPU on the server's loop, which every other reply would wait for.
BODIES: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
    "deep": lambda: (b"[" * DEEP + b"]" * DEEP, {}),
    "bigint": lambda: (b'{"choices": [], "n": ' + b"9" * 5000 + b"}", {}),
    "gzipbomb": lambda: (gzip_bomb(), {"Content-Encoding": "gzip, gzip"}),
    "html": lambda: (LOGIN_PAGE.encode(), {"Content-Type": "text/html"}),
}


# Error bodies as real servers write them, from their sources (README "What servers say"): shape=NAME answers the
# body with its status, streamed request or not. A str is sent as it is, with the content type named after it.
ERROR_SHAPES: dict[str, tuple[int, Any] | tuple[int, str, str]] = {
    "openai-quota": (
        429,
        {
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
    ),
    "openai-ratelimit": (
        429,
        {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}},
    ),
    # vLLM since 0.10 (ErrorResponse wraps an ErrorInfo), and before it the flat object SGLang still answers
    "vllm": (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 2048 tokens. However, you requested 4096 tokens.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
    ),
    "vllm-flat": (
        400,
        {"object": "error", "message": "The model `gemma-9` does not exist.", "type": "NotFoundError", "code": 404},
    ),
    "tgi-overloaded": (429, {"error": "Model is overloaded", "error_type": "overloaded"}),
    "tgi-validation": (
        422,
        {"error": "Input validation error: `inputs` must have less than 2048 tokens", "error_type": "validation"},
    ),
    "llamacpp": (
        400,
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
            }
        },
    ),
    "ollama": (404, {"error": 'model "llama9" not found, try pulling it first'}),
    "ollama-openai": (
        404,
        {"error": {"message": 'model "llama9" not found', "type": "api_error", "param": None, "code": None}},
    ),
    "fastapi-detail": (503, {"detail": "model is still loading"}),
    "fastapi-validation": (
        422,
        {"detail": [{"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": {}}]},
    ),
    "whisper": (400, {"detail": {"error": {"message": "unknown model: whisper-9"}}}),  # faster-whisper-server
    "error-error": (502, {"error": {"error": {"message": "upstream refused the request"}}}),
    "litellm-budget": (
        400,
        {
            "error": {
                "message": "Budget has been exceeded! Current cost: 10.2, Max budget: 10.0",
                "type": "budget_exceeded",
                "param": None,
                "code": "400",
            }
        },
    ),
    "azure-filter": (
        400,
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering content management policy.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {"violence": {"filtered": True, "severity": "high"}},
                },
            }
        },
    ),
    "azure-quota": (
        403,
        {
            "error": {
                "code": "403",
                "message": "Out of call volume quota for OpenAI API. Quota will be replenished in 2h.",
            }
        },
    ),
    "azure-ratelimit": (
        429,
        {"error": {"code": "429", "message": "Requests have exceeded token rate limit of your current pricing tier."}},
    ),
    "anthropic-overloaded": (
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"},
    ),
    "anthropic-spend": (
        429,
        {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "Your organization has reached its monthly spend limit.",
                "details": {"error_code": "enforced_spend_limit_reached"},
            },
        },
    ),
    "anthropic-credit": (
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API.",
            },
        },
    ),
    "openrouter-credits": (402, {"error": {"code": 402, "message": "Insufficient credits. Add more credits."}}),
    "openrouter-provider": (
        502,
        {
            "error": {
                "code": 502,
                "message": "Provider returned error",
                "metadata": {"provider_name": "Fireworks", "raw": '{"error": {"message": "model is overloaded"}}'},
            }
        },
    ),
    "plain": (500, "text/plain", "Internal Server Error"),
    "sse": (400, "text/event-stream", 'data: {"error": {"message": "prompt is too long", "code": 400}}\n\n'),
    "hostile": (400, {"error": {"message": "see \u202etxt.exe\x1b[31m here"}}),
    "ok200": (200, {"object": "error", "message": "streaming is not supported for this model", "code": 400}),
}

# Errors inside an HTTP 200 event stream, after two chunks: sshape=NAME.
STREAM_SHAPES = {
    "llamacpp-field": b'error: {"code": 500, "message": "llama_decode failed", "type": "server_error"}\n\n',
    "ollama-bare": b'{"error":{"message":"model runner has unexpectedly stopped","type":"api_error","param":null,'
    b'"code":null}}\n',
    "vllm-flat": b'data: {"object": "error", "message": "engine dead", "type": "InternalServerError", "code": 500}'
    b"\n\ndata: [DONE]\n\n",
    "tgi": b'data: {"error": "Request failed during generation: CUDA out of memory", "error_type": "generation"}\n\n',
    "openrouter-credits": b'data: {"error": {"code": 402, "message": "Insufficient credits"}}\n\n',
}


# Replies that break HTTP itself, written straight to the socket, then the connection is closed.
RAW = {
    "badchunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"ZZ\r\n{}\r\n0\r\n\r\n",
    "shortbody": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"choices": [',
    "badlocation": b"HTTP/1.1 302 Found\r\nLocation: http://[::1\r\nContent-Length: 0\r\n\r\n",
    "credlocation": b"HTTP/1.1 302 Found\r\nLocation: http://mallory:hunter2-echo@127.0.0.1:9/v1/x?token=tok-echo"
    b"\r\nContent-Length: 0\r\n\r\n",
}


@dataclass
class RequestRecord:
    """One request as the server saw it."""

    method: str
    path: str
    model: str | None
    headers: dict[str, str]
    body: Any
    received: float
    duration: float | None = None
    query: str = ""
    received_at: float = 0.0  # Unix time, as `received` (monotonic)

    @property
    def finished_at(self) -> float | None:
        """Unix time the reply's last byte was written."""
        return None if self.duration is None else self.received_at + self.duration


class Scenario:
    """The "+"-separated tokens of a model name, e.g. "chat+delay=0.5+hang"."""

    def __init__(self, model: str) -> None:
        self.tokens = dict(tok.partition("=")[::2] for tok in model.split("+"))

    def answered(self, asked: Any) -> Any:
        """The model the reply names: the one asked for, or answer=NAME's (a gateway that fell back to another)."""
        return self.tokens.get("answer", asked)

    @property
    def cut(self) -> bool:
        """The reply is cut by its token budget: length (visible text) or thinkonly (reasoning only)."""
        return self.has("length") or self.has("thinkonly")

    def has(self, name: str) -> bool:
        """Whether the token is present."""
        return name in self.tokens

    def num(self, name: str, default: float = 0.0) -> float:
        """The token's numeric value, or default when absent or not a number."""
        try:
            return float(self.tokens[name])
        except (KeyError, ValueError):
            return default


def _json(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None, content_type: str = "application/json"
) -> web.Response:
    """A JSON response (NaN allowed, as Python writes it)."""
    return web.Response(status=status, text=json.dumps(payload), headers=headers, content_type=content_type)


def _error(
    status: int,
    message: str,
    type_: str = "server_error",
    code: int | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-style error response."""
    err: dict[str, Any] = {"message": message, "type": type_}
    if code is not None:
        err["code"] = code
    if status in (204, 304):
        return web.Response(status=status, headers=headers)
    return _json({"error": err}, status, headers)


def _shaped(status: int, *body: Any) -> web.Response:
    """An error body of ERROR_SHAPES: JSON, or text of the content type it names."""
    if len(body) == 2:
        return web.Response(status=status, text=body[1], content_type=body[0])
    return _json(body[0], status)


def _kill(request: web.Request, rst: bool) -> None:
    """Drop the connection: RST (SO_LINGER 0) when rst, else a plain close."""
    transport = request.transport
    if transport is None:
        return
    if rst:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def _header_values(request: web.Request) -> dict[str, str]:
    """Headers by lower-case name; a name sent twice keeps both values, joined as HTTP joins them (", ")."""
    return {name.lower(): ", ".join(request.headers.getall(name)) for name in request.headers}


def _words(text: str) -> set[str]:
    """Lower-case words of a text."""
    return set(re.findall(r"\w+", text.lower()))


REASONING_TOKENS = 2  # what the reasoning scenarios think ("thinking", "...") costs
ABSURD_USAGE = {
    "prompt_tokens": 10**12,
    "completion_tokens": -5,
    "total_tokens": "many",
    "completion_tokens_details": {"reasoning_tokens": True},
}


def _usage(sc: Scenario, prompt: Any, visible: int) -> dict[str, Any]:
    """OpenAI usage block with a rough prompt token count; reasoning tokens (part of the completion, as OpenAI
    counts them) for the reasoning scenarios; usage=N reports N visible tokens whatever was sent; absurd values for
    badusage."""
    if sc.has("badusage"):
        return ABSURD_USAGE
    p = max(1, len(json.dumps(prompt).split()))
    visible = int(sc.num("usage", visible))
    reasoning = REASONING_TOKENS if sc.has("reasoning") or sc.has("reasoner") or sc.has("thinkonly") else 0
    usage: dict[str, Any] = {
        "prompt_tokens": p,
        "completion_tokens": visible + reasoning,
        "total_tokens": p + visible + reasoning,
    }
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def _responses_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """A chat usage block in the Responses API's words (input/output tokens)."""
    words = {
        "prompt_tokens": "input_tokens",
        "completion_tokens": "output_tokens",
        "completion_tokens_details": "output_tokens_details",
    }
    return {words.get(key, key): value for key, value in usage.items()}


# Anthropic's error type and message by status, as its API words them
ANTHROPIC_ERRORS = {
    200: ("api_error", "Internal server error"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _anthropic_usage(sc: Scenario, body: dict[str, Any], visible: int) -> dict[str, Any]:
    """A chat usage block in the Messages API's words (input and output tokens only)."""
    usage = _usage(sc, body.get("messages"), visible)
    return {"input_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens")}


def _anthropic_error(status: int, type_: str, message: str) -> web.Response:
    """An error in the shape Anthropic's API (and vLLM's /v1/messages) answers it."""
    return _json({"type": "error", "error": {"type": type_, "message": message}}, status)


COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0), "red": (200, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 200)}


def _image_urls(body: dict[str, Any]) -> list[Any]:
    """Every picture a chat, messages or responses request carries, as the data URL it sends (an Anthropic base64
    source spelt as one); a part without one gives None."""
    turns = body.get("messages", body.get("input"))
    urls: list[Any] = []
    for turn in turns if isinstance(turns, list) else ():
        parts = turn.get("content") if isinstance(turn, dict) else None
        for part in parts if isinstance(parts, list) else ():
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image_url":  # OpenAI chat
                image = part.get("image_url")
                urls.append(image.get("url") if isinstance(image, dict) else None)
            elif kind == "input_image":  # Responses
                urls.append(part.get("image_url"))
            elif kind == "image":  # Anthropic
                source = part.get("source") if isinstance(part.get("source"), dict) else {}
                urls.append(f"data:{source.get('media_type')};base64,{source.get('data')}")
    return urls


def _seen(url: Any) -> str:
    """The colour at the centre of a PNG data URL (8-bit RGB, unfiltered rows, as the canary is drawn; other PNGs
    are "a picture"); ValueError when it is no decodable PNG data URL."""
    prefix = "data:image/png;base64,"
    if not isinstance(url, str) or not url.startswith(prefix):
        raise ValueError("image_url is not a data:image/png;base64 URL")
    try:
        png = base64.b64decode(url.removeprefix(prefix), validate=True)
    except ValueError:
        raise ValueError("image data is not valid base64") from None
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("image data is not a PNG")
    chunks: dict[bytes, bytes] = {}
    at = 8
    while at < len(png):
        size, kind = struct.unpack(">I4s", png[at : at + 8].ljust(8, b"\0"))
        data, crc = png[at + 8 : at + 8 + size], png[at + 8 + size : at + 12 + size]
        if len(data) != size or len(crc) != 4 or struct.unpack(">I", crc)[0] != zlib.crc32(kind + data):
            raise ValueError("PNG chunk is cut or its CRC is wrong")
        chunks[kind] = chunks.get(kind, b"") + data
        at += 12 + size
    if b"IHDR" not in chunks or b"IDAT" not in chunks or b"IEND" not in chunks:
        raise ValueError("PNG lacks IHDR, IDAT or IEND")
    if len(chunks[b"IHDR"]) != 13:
        raise ValueError("PNG header is not 13 bytes")
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    try:
        pixels = zlib.decompress(chunks[b"IDAT"])
    except zlib.error:
        raise ValueError("PNG image data does not inflate") from None
    row = 1 + 3 * width
    if (depth, colour) != (8, 2) or len(pixels) != height * row or pixels[height // 2 * row] != 0:
        return "a picture"
    at = height // 2 * row + 1 + 3 * (width // 2)
    rgb = pixels[at : at + 3]
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(rgb, COLOURS[name], strict=True)))


def _form(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body: text fields as str, files as bytes."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        content = part.get_payload(decode=True) or b""
        form[part.get_param("name", header="content-disposition")] = (
            content if part.get_filename() else content.decode()
        )
    return form


def _transcription(sc: Scenario, body: dict[str, Any]) -> dict[str, Any]:
    """What a whisper hears in a WAV file (the canary's words); nothing in anything else."""
    audio = body.get("file")
    text = TRANSCRIPT if isinstance(audio, bytes) and audio[:4] == b"RIFF" else ""
    if sc.has("empty"):
        text = ""
    if sc.has("notext"):
        return {"language": "english", "duration": 2.78}
    if sc.has("wrongshape"):
        return {"text": text.split()}
    return {"text": text}


GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>nginx</center></body></html>\r\n"
)
# What a careless proxy labels as audio or leaves unlabelled: both an even number of bytes, as 16-bit pcm is.
MISLABELLED = {
    "html": (GATEWAY_PAGE.encode(), "application/octet-stream"),
    "json": (
        b'{"error": {"message": "upstream connect error", "type": "server_error"}}\r\n',
        "application/octet-stream",
    ),
}


def _speech(sc: Scenario, body: dict[str, Any]) -> web.Response:
    """A 1.5 s tone in the format asked for, or the faults: corrupt (cut inside its header), zerolen (no bytes),
    nosamples (a header with no audio), wrongformat (mp3 for anything else, wav for mp3), mislabel=html|json (a
    gateway's error page or body sent as application/octet-stream), mislabel=image (the tone as image/png)."""
    asked = body.get("response_format", "mp3")
    if asked not in audio.MAKERS or not body.get("input") or not body.get("voice"):
        return _error(
            400, f"need input, voice and a response_format of {', '.join(audio.MAKERS)}", "invalid_request_error"
        )
    sent = ("wav" if asked == "mp3" else "mp3") if sc.has("wrongformat") else asked
    data = audio.tone(sent, 0 if sc.has("nosamples") else 1.5)
    if sc.has("corrupt"):
        data = data[:13]
    if sc.has("zerolen"):
        data = b""
    if sc.tokens.get("mislabel") in MISLABELLED:
        data, content_type = MISLABELLED[sc.tokens["mislabel"]]
        return web.Response(body=data, content_type=content_type)
    return web.Response(body=data, content_type="image/png" if sc.has("mislabel") else audio.CONTENT_TYPES[sent])


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic pseudo-embedding of a text."""
    rng = random.Random(text)
    return [round(rng.uniform(-1, 1), 6) for _ in range(dims)]


class FakeOpenAI(BackgroundServer):
    """OpenAI-compatible server on 127.0.0.1 that injects faults chosen by the model name."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        models: tuple[str, ...] = DEFAULT_MODELS,
        redirect_to: str | None = None,
        tls: bool = False,
        port: int = 0,
        listing: str = "",
    ) -> None:
        super().__init__(port=port, tls=tls)
        self.latency = latency
        self.api_key = api_key
        self.models = models  # what GET /v1/models lists
        self.listing = listing  # the faults of GET /v1/models, as a model name gives them: "hang", "status=500"...
        self.redirect_to = redirect_to
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._inflight = 0

    def wait_idle(self, timeout: float = 1.0) -> bool:
        """Wait until no handler is running (so every duration is stamped); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._inflight:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def requests_for(self, model: str) -> list[RequestRecord]:
        """Recorded requests whose body named this model."""
        with self._lock:
            return [r for r in self.requests if r.model == model]

    def clear(self) -> None:
        """Forget recorded requests and flaky counters."""
        with self._lock:
            self.requests.clear()
            self._seen.clear()

    def build_app(self) -> web.Application:
        """Routes under /v1 only."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._handle)
        for route in (
            "chat/completions",
            "completions",
            "embeddings",
            "rerank",
            "responses",
            "audio/transcriptions",
            "audio/speech",
            "moderations",
            "images/generations",
            "messages",
        ):
            app.router.add_post(f"/v1/{route}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request, answer it, and stamp the server-side duration."""
        received, received_at = time.monotonic(), time.time()
        raw = await request.read()
        try:
            body = (
                _form(request.headers["Content-Type"], raw)
                if request.content_type == "multipart/form-data"
                else json.loads(raw)
                if raw
                else None
            )
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        rec = RequestRecord(
            request.method,
            request.path,
            model if isinstance(model, str) else None,
            _header_values(request),
            body,
            received,
            query=request.query_string,
            received_at=received_at,
        )
        with self._lock:
            self.requests.append(rec)
        self._inflight += 1
        try:
            resp = await self._respond(request, rec)
            if resp is None:  # connection dropped or hung on purpose
                await asyncio.Event().wait()
            assert resp is not None
            await resp.prepare(request)
            await resp.write_eof()
            rec.duration = time.monotonic() - received
        except ConnectionError:  # the client went away mid-response
            raise asyncio.CancelledError from None
        finally:
            self._inflight -= 1
        return resp

    async def _respond(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse | None:
        """Build (or write) the reply; None means the connection was dropped or left hanging."""
        kind = request.path.removeprefix("/v1/")
        sc = Scenario(rec.model or (self.listing if kind == "models" else ""))
        body = rec.body if isinstance(rec.body, dict) else {}
        wait = self.latency + sc.num("delay")
        auth = request.headers.get("Authorization", "")
        if self.api_key is not None and not hmac.compare_digest(auth, f"Bearer {self.api_key}"):
            await asyncio.sleep(self.latency)
            return _error(401, "Invalid API key", "invalid_request_error")
        if sc.has("echoauth"):  # a careless server that quotes the key back, as some gateways do
            pad = "." * int(sc.num("echoauth"))  # echoauth=N: N characters first, to place the key where a cut is
            said = f"{pad}Incorrect API key provided: {auth.removeprefix('Bearer ')}"
            return _error(401, said, "invalid_request_error")
        if sc.tokens.get("shape") in ERROR_SHAPES:
            return _shaped(*ERROR_SHAPES[sc.tokens["shape"]])
        status = self._injected_status(sc, rec.model or "")
        streaming = (
            body.get("stream") is True
            and kind in ("chat/completions", "completions", "responses", "messages")
            and status is None
            and (sc.has("providererror") or not any(map(sc.has, BODY_FAULTS)))
        )
        if not streaming:
            await asyncio.sleep(wait)
        if request.method == "POST" and not isinstance(rec.body, dict):
            return _error(400, "request body must be a JSON object", "invalid_request_error")
        refused = self._refuse_images(sc, kind, body)
        if refused is not None:
            return refused
        if sc.has("reasoner") and "max_tokens" in body:  # as OpenAI's o-series and GPT-5 answer
            return _error(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                "invalid_request_error",
            )
        if sc.has("hang"):
            return None
        if sc.has("raw"):
            assert request.transport is not None
            request.transport.write(RAW[sc.tokens["raw"]])
            _kill(request, rst=False)
            return None
        if status is not None and sc.has("errbody"):
            return self._body(sc.tokens["errbody"], status, streaming=False)
        if sc.has("body") and status is None:
            return self._body(sc.tokens["body"], 200, streaming=body.get("stream") is True)
        if sc.has("reset") or sc.has("close"):
            _kill(request, rst=sc.has("reset"))
            return None
        if sc.has("huge"):
            return await self._huge(request)
        if sc.has("html"):
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        if sc.has("error200"):
            return _json({"error": {"message": "model is loading", "type": "server_error"}})
        if sc.has("providererror") and body.get("stream") is not True:
            choice = {"index": 0, "message": {"role": "assistant", "content": "po"}, "finish_reason": "error"}
            return _json({"choices": [choice], "error": {"message": "provider returned error", "code": 502}})
        if sc.has("toolcalls_int"):
            return _json(
                {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": None, "tool_calls": 5},
                            "finish_reason": "tool_calls",
                        }
                    ]
                }
            )
        if sc.has("badjson"):
            return web.Response(text='{"choices": [', content_type="application/json")
        if sc.has("badgzip"):
            return web.Response(
                body=b"this is not gzip", content_type="application/json", headers={"Content-Encoding": "gzip"}
            )
        if sc.has("redirect") and status is None:
            target = (self.redirect_to or "http://127.0.0.1:9").rstrip("/") + request.path
            return web.Response(status=302, headers={"Location": target})
        if status is not None:
            headers = {}
            if status == 429:
                headers["Retry-After"] = sc.tokens.get("retry_after") or "1"
                if sc.has("retry_date"):  # the HTTP-date form, this many seconds from now
                    headers["Retry-After"] = email.utils.formatdate(time.time() + sc.num("retry_date"), usegmt=True)
            if 300 <= status < 400:
                headers["Location"] = (self.redirect_to or "http://127.0.0.1:9").rstrip("/") + "/v1/landing"
            return _error(status, f"injected {status}", "server_error", status, headers)
        if kind == "messages":
            return await self._messages(request, sc, body, streaming, wait)
        if streaming and kind == "responses":
            return await self._responses_stream(request, sc, body, wait)
        if streaming:
            return await self._stream(request, sc, body, kind, wait)
        if kind == "audio/speech":
            return _speech(sc, body)
        payload = self._payload(sc, body, kind, rec.model or "")
        if sc.has("trickle"):
            return await self._trickle(request, json.dumps(payload).encode())
        return _json(payload, content_type="text/plain" if sc.has("texttype") else "application/json")

    @staticmethod
    def _refuse_images(sc: Scenario, kind: str, body: dict[str, Any]) -> web.Response | None:
        """A 400 in the API's own error shape for a picture that is no decodable PNG data URL, or for any picture
        when the model is `noimage` (a text-only model, as vLLM refuses one)."""
        urls = _image_urls(body)
        try:
            if urls and sc.has("noimage"):
                raise ValueError("image input is not supported by this model")
            for url in urls:
                _seen(url)
        except ValueError as refused:
            if kind == "messages":
                return _anthropic_error(400, "invalid_request_error", str(refused))
            return _error(400, str(refused), "invalid_request_error")
        return None

    def _injected_status(self, sc: Scenario, model: str) -> int | None:
        """The status forced by status=, flaky= or flaky429=, if any."""
        if sc.has("flaky") or sc.has("flaky429"):
            with self._lock:
                count = self._seen[model] = self._seen.get(model, 0) + 1
            if sc.has("flaky") and count <= sc.num("flaky"):
                return 503
            if sc.has("flaky429") and count <= sc.num("flaky429"):
                return 429
        if sc.has("status") and sc.num("status"):
            return int(sc.num("status"))
        return None

    def _payload(self, sc: Scenario, body: dict[str, Any], kind: str, model: str) -> dict[str, Any]:
        """The healthy (or 'empty'/'nochoices'/... shaped) JSON reply for a route."""
        if kind == "models":  # bare: ids alone, as a lean gateway lists them (400,000 fit under the 8 MiB cap)
            extra = {} if sc.has("bare") else {"object": "model", "owned_by": "testbed"}
            return {"object": "list", "data": [{"id": m, **extra} for m in self.models]}
        if kind == "embeddings":
            return self._embeddings(sc, body, model)
        if kind == "rerank":
            return self._rerank(sc, body, model)
        if kind == "responses":
            urls = _image_urls(body)
            return self._response(sc, body, model, _seen(urls[0]) if urls else "".join(PIECES), status="completed")
        if kind == "audio/transcriptions":
            return _transcription(sc, body)
        if kind == "moderations":
            return self._moderations(sc, body, model)
        if kind == "images/generations":
            return self._images(sc, body)
        head = {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": sc.answered(model)}
        if kind == "completions":
            choice = {
                "index": 0,
                "text": "" if sc.has("empty") else " Paris",
                "logprobs": None,
                "finish_reason": "length" if sc.cut else "stop",
            }
            return {
                **head,
                "object": "text_completion",
                "choices": [] if sc.has("nochoices") else [choice],
                "usage": _usage(sc, body.get("prompt"), 1),
            }
        choices = [] if sc.has("nochoices") else [self._chat_choice(sc, body)]
        return {**head, "object": "chat.completion", "choices": choices, "usage": _usage(sc, body.get("messages"), 1)}

    def _chat_choice(self, sc: Scenario, body: dict[str, Any]) -> dict[str, Any]:
        """choices[0] of a chat reply, honouring tools and response_format."""
        urls = _image_urls(body)
        msg: dict[str, Any] = {"role": "assistant", "content": _seen(urls[0]) if urls else "pong"}
        finish = "stop"
        tools = body.get("tools")
        fmt = body.get("response_format")
        if sc.has("reasoning") or sc.has("thinkonly"):
            msg.update(content="", reasoning_content="thinking...")
            finish = "length"

        elif sc.has("empty"):
            msg["content"] = ""
        elif isinstance(tools, list) and tools and not sc.has("notool"):
            name = (tools[0].get("function") or {}).get("name", "tool") if isinstance(tools[0], dict) else "tool"
            args = "{city: Paris" if sc.has("badtool") else json.dumps({"city": "Paris"})
            msg["content"] = None
            msg["tool_calls"] = [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}]
            finish = "tool_calls"
        elif isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema") and not sc.has("nojson"):
            msg["content"] = json.dumps({"answer": "pong"})
        if sc.has("length"):  # cut by max_tokens, as every server answers it
            finish = "length"
        return {"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}

    def _embeddings(self, sc: Scenario, body: dict[str, Any], model: str) -> dict[str, Any]:
        """One deterministic vector per input (base64 float32 when asked)."""
        inp = body.get("input")
        token_ids = isinstance(inp, list) and bool(inp) and all(isinstance(x, int) for x in inp)
        texts = [str(inp)] if isinstance(inp, str) or token_ids else [str(x) for x in inp or []]
        vectors = [_vector(t, int(sc.num("dims", 8))) for t in texts]
        if sc.has("nan") and vectors and vectors[0]:
            vectors[0][0] = float("nan")
        if sc.has("wrongcount"):
            vectors = vectors[:-1]
        if sc.has("empty"):
            vectors = []
        b64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if b64 else v,
            }
            for i, v in enumerate(vectors)
        ]
        tokens = sum(len(t.split()) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _rerank(self, sc: Scenario, body: dict[str, Any], model: str) -> dict[str, Any]:
        """Documents scored by word overlap with the query, best first."""
        docs = [d if isinstance(d, str) else str((d or {}).get("text", "")) for d in body.get("documents") or []]
        query = _words(str(body.get("query", "")))
        scores = [len(query & _words(d)) / (len(query) + 1) for d in docs]
        order = sorted(range(len(docs)), key=lambda i: -scores[i])
        if sc.has("badrank"):  # least relevant first, still with descending scores
            order.reverse()
        ranked = sorted(scores, reverse=True)
        results = [
            {"index": i, "relevance_score": round(ranked[n], 6), "document": {"text": docs[i]}}
            for n, i in enumerate(order)
        ]
        top_n = body.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            results = results[:top_n]
        if sc.has("wrongcount"):
            results = results[:-1]
        if sc.has("boolindex"):  # JSON's true and false where the indices 1 and 0 belong
            results = [{**r, "index": bool(r["index"])} if r["index"] < 2 else r for r in results]
        if sc.has("empty"):
            results = []
        return {
            "id": f"rerank-{uuid.uuid4().hex[:12]}",
            "model": model,
            "results": results,
            "usage": {"total_tokens": max(1, len(json.dumps(body).split()))},
        }

    def _response(self, sc: Scenario, body: dict[str, Any], model: str, text: str, status: str) -> dict[str, Any]:
        """A Responses API Response object: `status` unless a fault (incomplete, failed, empty, badshape) says
        otherwise, and one message item carrying `text`."""
        details, error, done = None, None, status == "completed"
        if done and (sc.has("incomplete") or sc.cut):  # the max_output_tokens budget ran out
            status, details = "incomplete", {"reason": "max_output_tokens"}
        if done and sc.has("filtered"):
            status, details = "incomplete", {"reason": "content_filter"}
        if done and sc.has("failed"):
            status, error = "failed", {"code": "server_error", "message": "The model crashed while generating"}
        text = "" if sc.has("empty") else text
        part = {"type": "output_text", "text": text, "annotations": []}
        message = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [part]}
        output: Any = ("pong" if sc.has("badshape") else [message]) if done else []
        if done and sc.has("thinkonly"):  # the budget ran out while reasoning: a reasoning item and no message
            thought = {"type": "reasoning_text", "text": "thinking..."}
            output = [{"type": "reasoning", "id": "rs_1", "summary": [], "content": [thought]}]
        tokens = len(text) // 2
        return {
            "id": "resp_1",
            "object": "response",
            "created_at": int(time.time()),
            "model": sc.answered(model),
            "status": status,
            "error": error,
            "incomplete_details": details,
            "output": output,
            "max_output_tokens": body.get("max_output_tokens"),
            "usage": _responses_usage(_usage(sc, body.get("input"), tokens)),
        }

    async def _responses_stream(
        self, request: web.Request, sc: Scenario, body: dict[str, Any], wait: float
    ) -> web.StreamResponse | None:
        """Typed Responses events, as OpenAI and vLLM send them (no [DONE]); faults: reasoning, malformed,
        errorevent, cut, nocontent, nofinish, incomplete (or length), thinkonly, vllmcut, failed, failedevent."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await asyncio.sleep(wait)
        model = str(body.get("model"))

        async def send(kind: str, **fields: Any) -> None:
            await resp.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode())

        await send("response.created", response=self._response(sc, body, model, "", "in_progress"))
        for piece in ("thinking", "...") if sc.has("reasoning") or sc.has("thinkonly") else ():
            await send("response.reasoning_text.delta", item_id="rs_1", output_index=0, content_index=0, delta=piece)
            await asyncio.sleep(sc.num("token_delay"))
        if sc.has("malformed"):
            await resp.write(b'event: response.output_text.delta\ndata: {"delta": \n\n')
        n = 0 if sc.has("nocontent") or sc.has("thinkonly") else int(sc.num("tokens", 4))
        text = ""
        for i in range(n):
            if i == min(2, n) and sc.has("cut"):
                _kill(request, rst=False)
                return None
            if i == min(2, n) and sc.has("errorevent"):
                await send("error", code="server_error", message="upstream overloaded", param=None)
                return resp
            if i:
                await asyncio.sleep(sc.num("token_delay"))
            text += PIECES[i % 2]
            await send(
                "response.output_text.delta", item_id="msg_1", output_index=0, content_index=0, delta=PIECES[i % 2]
            )
        if sc.has("nofinish"):
            return resp
        final = self._response(sc, body, model, text, "completed")
        # failedevent: a response.failed event whose response says completed; vllmcut: vLLM ends a stream cut by
        # max_output_tokens with response.completed carrying status incomplete (OpenAI sends response.incomplete)
        terminal = "response.completed" if sc.has("vllmcut") else f"response.{final['status']}"
        await send("response.failed" if sc.has("failedevent") else terminal, response=final)
        if sc.has("linger"):  # a server or proxy that keeps the connection open after the terminal event
            await asyncio.sleep(3600)
        return resp

    async def _messages(
        self, request: web.Request, sc: Scenario, body: dict[str, Any], streaming: bool, wait: float
    ) -> web.StreamResponse | None:
        """Anthropic's Messages API: a request without anthropic-version refused as Anthropic refuses it;
        apierror=NNN answers Anthropic's error body with that status (200 too)."""
        if "anthropic-version" not in request.headers:
            return _anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
        if sc.has("apierror"):
            status = int(sc.num("apierror", 200)) or 200
            return _anthropic_error(status, *ANTHROPIC_ERRORS.get(status, ANTHROPIC_ERRORS[500]))
        if streaming:
            return await self._messages_stream(request, sc, body, wait)
        urls = _image_urls(body)
        return _json(self._message(sc, body, _seen(urls[0]) if urls else "".join(PIECES), "end_turn"))

    def _message(self, sc: Scenario, body: dict[str, Any], text: str, stop_reason: str | None) -> dict[str, Any]:
        """A Message object carrying `text` (faults: empty, reasoning (thinking only, out of budget), nocontent,
        badshape)."""
        blocks: list[dict[str, Any]] = [{"type": "text", "text": "" if sc.has("empty") else text}]
        if sc.has("reasoning") or sc.has("thinkonly"):
            blocks, stop_reason = [{"type": "thinking", "thinking": "thinking...", "signature": "sig"}], "max_tokens"
        elif sc.has("length") and stop_reason:
            stop_reason = "max_tokens"
        content: Any = "pong" if sc.has("badshape") else [] if sc.has("nocontent") else blocks
        return {
            "id": f"msg_{uuid.uuid4().hex[:12]}",
            "type": "message",
            "role": "assistant",
            "model": sc.answered(body.get("model")),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": _anthropic_usage(sc, body, len(text) // 2),
        }

    async def _messages_stream(
        self, request: web.Request, sc: Scenario, body: dict[str, Any], wait: float
    ) -> web.StreamResponse | None:
        """Anthropic's typed events, a ping among them (no [DONE]); faults: reasoning (or thinkonly), malformed,
        errorevent, cut, nocontent, nostop (or nodone), length, linger."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await asyncio.sleep(wait)

        async def send(kind: str, **fields: Any) -> None:
            await resp.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode())

        await send("message_start", message={**self._message(sc, body, "", None), "content": [], "stop_reason": None})
        await send("ping")
        index = 0
        if sc.has("reasoning") or sc.has("thinkonly"):
            await send("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""})
            for piece in ("thinking", "..."):
                await send("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": piece})
                await asyncio.sleep(sc.num("token_delay"))
            await send("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "sig"})
            await send("content_block_stop", index=0)
            index = 1
        if sc.has("malformed"):
            await resp.write(b'event: content_block_delta\ndata: {"delta": \n\n')
        await send("content_block_start", index=index, content_block={"type": "text", "text": ""})
        n = 0 if sc.has("nocontent") or sc.has("thinkonly") else int(sc.num("tokens", 4))
        for i in range(n):
            if i == min(2, n) and sc.has("cut"):
                _kill(request, rst=False)
                return None
            if i == min(2, n) and sc.has("errorevent"):
                await send("error", error={"type": "overloaded_error", "message": "Overloaded"})
                return resp
            if i:
                await asyncio.sleep(sc.num("token_delay"))
            await send("content_block_delta", index=index, delta={"type": "text_delta", "text": PIECES[i % 2]})
        await send("content_block_stop", index=index)
        await send(
            "message_delta",
            delta={"stop_reason": "max_tokens" if sc.cut else "end_turn", "stop_sequence": None},
            usage={"output_tokens": _anthropic_usage(sc, body, n)["output_tokens"]},
        )
        if not (sc.has("nostop") or sc.has("nodone")):
            await send("message_stop")
        if sc.has("linger"):  # a server or proxy that keeps the connection open after message_stop
            await asyncio.sleep(3600)
        return resp

    def _moderations(self, sc: Scenario, body: dict[str, Any], model: str) -> dict[str, Any]:
        """One result per input: nothing flagged unless the text says "flagme", deterministic scores."""
        inp = body.get("input")
        texts = [inp] if isinstance(inp, str) else [str(x) for x in inp or []]
        categories = (
            "harassment",
            "harassment/threatening",
            "hate",
            "hate/threatening",
            "illicit",
            "illicit/violent",
            "self-harm",
            "self-harm/instructions",
            "self-harm/intent",
            "sexual",
            "sexual/minors",
            "violence",
            "violence/graphic",
        )
        results = []
        for text in texts:
            rng = random.Random(text)
            scores = {name: round(rng.uniform(0, 0.01), 6) for name in categories}
            flagged = "flagme" in text
            results.append(
                {"flagged": flagged, "categories": {name: flagged for name in scores}, "category_scores": scores}
            )
        if sc.has("nan") and results:
            results[0]["category_scores"]["violence"] = float("nan")
        if sc.has("noflagged") and results:
            del results[0]["flagged"]
        if sc.has("wrongcount"):  # one result too many: one too few would be none for the usual single input
            results = results + results[-1:]
        if sc.has("empty"):
            results = []
        return {"id": f"modr-{uuid.uuid4().hex[:12]}", "model": model, "results": results}

    def _images(self, sc: Scenario, body: dict[str, Any]) -> dict[str, Any]:
        """One image of the asked size: PNG, or format=jpeg|webp; `url` (or response_format url) links to it; faults:
        notimage, truncated, badb64, empty, claims=WxH (a header that says another size)."""
        width, _, height = str(body.get("size") or "256x256").partition("x")
        size = (int(width), int(height)) if width.isdigit() and height.isdigit() else (256, 256)
        maker = {"jpeg": self._jpeg, "webp": self._webp}.get(sc.tokens.get("format", ""), self._png)
        picture = b"<html>not an image</html>" if sc.has("notimage") else maker(*size)
        if sc.has("truncated"):
            picture = picture[: len(picture) // 2]
        if sc.has("claims"):  # claims=WxH: the PNG's IHDR says this size, over the pixels of the asked one
            claimed, _, tall = sc.tokens["claims"].partition("x")
            ihdr = b"IHDR" + struct.pack(">II", int(claimed), int(tall)) + picture[24:29]
            picture = picture[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + picture[33:]
        item: dict[str, Any] = {"b64_json": base64.b64encode(picture).decode(), "revised_prompt": body.get("prompt")}
        if sc.has("badb64"):
            item["b64_json"] = "iVBOR*not base64*"
        if sc.has("url") or body.get("response_format") == "url":
            item = {"url": sc.tokens.get("url") or "https://images.example/i/1.png?sig=canary-signature"}
        return {"created": int(time.time()), "data": [] if sc.has("empty") else [item]}

    @staticmethod
    def _png(width: int, height: int) -> bytes:
        """A real PNG: white, 8-bit RGB."""

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        rows = (b"\x00" + b"\xff" * 3 * width) * height
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")

    @staticmethod
    def _jpeg(width: int, height: int) -> bytes:
        """The markers of a baseline JPEG (SOI, APP0, SOF0, SOS, EOI) around filler scan data: enough for a header
        reader, not for a decoder."""
        app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
        sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
        return b"\xff\xd8" + app0 + sof0 + sos + b"\x12\x34" * 64 + b"\xff\xd9"

    @staticmethod
    def _webp(width: int, height: int) -> bytes:
        """A lossless (VP8L) WebP header with its size, and filler: enough for a header reader."""
        bits = (width - 1) | (height - 1) << 14
        payload = b"\x2f" + struct.pack("<I", bits) + bytes(16)
        chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
        return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk

    def _body(self, name: str, status: int, streaming: bool) -> web.Response:
        """A hostile body: as JSON, or inside an SSE event when a stream was asked for."""
        data, headers = BODIES[name]()
        content_type = headers.pop("Content-Type", "text/event-stream" if streaming else "application/json")
        if streaming and name != "gzipbomb":
            data = b"data: " + data + b"\n\n"
        return web.Response(status=status, body=data, headers={**headers, "Content-Type": content_type})

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """A 50 MB application/json body, streamed in 64 KiB chunks."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = HUGE_BYTES
        await resp.prepare(request)
        head = b'{"data":"'
        await resp.write(head)
        sent, chunk = len(head), b"x" * 65536
        while sent < HUGE_BYTES:
            part = chunk[: HUGE_BYTES - sent]
            await resp.write(part)
            sent += len(part)
        return resp

    async def _trickle(self, request: web.Request, data: bytes) -> web.StreamResponse:
        """200 headers with the right Content-Length, then one byte per second."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(data)
        await resp.prepare(request)
        for i in range(len(data)):
            if i:
                await asyncio.sleep(1)
            await resp.write(data[i : i + 1])
        return resp

    async def _stream(
        self, request: web.Request, sc: Scenario, body: dict[str, Any], kind: str, wait: float
    ) -> web.StreamResponse | None:
        """An SSE stream of OpenAI chunks; delay/latency apply before the first chunk."""
        media = "Text/Event-Stream; charset=UTF-8" if sc.has("mixedcase") else "text/event-stream"
        resp = web.StreamResponse(headers={"Content-Type": media, "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await asyncio.sleep(wait)
        burst: list[bytes] = []  # "burst": every event in one write, as a buffering proxy delivers them
        chat = kind == "chat/completions"
        base = {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}",
            "created": int(time.time()),
            "model": sc.answered(body.get("model")),
            "object": "chat.completion.chunk" if chat else "text_completion",
        }

        async def send(event: Any) -> None:
            data = event if isinstance(event, str) else json.dumps(event)
            frame = f"data: {data}\n\n".encode()
            if data == "[DONE]" and burst:
                frame, burst[:] = b"".join(burst) + frame, []
            if sc.has("burst") and data != "[DONE]":
                burst.append(frame)
            else:
                await resp.write(frame)

        def chunk(piece: str | None = None, finish: str | None = None, **delta: str) -> dict[str, Any]:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["delta"] = delta if piece is None else {"content": piece}
            else:
                choice["text"] = piece or ""
            return {**base, "choices": [choice]}

        if chat:
            await send(chunk(role="assistant", content=""))
            if sc.has("reasoning") or sc.has("thinkonly"):
                for piece in ("thinking", "..."):
                    await send(chunk(reasoning_content=piece))
                    await asyncio.sleep(sc.num("token_delay"))
        if sc.has("malformed"):
            await send('{"choices": [')
        if chat and body.get("tools") and not sc.has("notool"):
            name = body["tools"][0].get("function", {}).get("name", "tool")
            index: Any = [0] if sc.has("badindex") else 0
            call = {"index": index, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
            await send(chunk(tool_calls=[call]))
            for piece in ('{"city": ', '"Paris"}'):
                await send(chunk(tool_calls=[{"index": 0, "function": {"arguments": piece}}]))
            await send(chunk(finish="tool_calls"))
            await send("[DONE]")
            return resp
        n = 0 if sc.has("nocontent") or sc.has("thinkonly") else int(sc.num("tokens", 4))
        for i in range(n + 1):
            if i == min(2, n) and sc.has("cut"):
                _kill(request, rst=False)
                return None
            if i == min(2, n) and sc.has("errorevent"):
                await send({"error": {"message": "upstream overloaded", "type": "server_error"}})
                return resp
            if i == min(2, n) and sc.tokens.get("sshape") in STREAM_SHAPES:
                await resp.write(STREAM_SHAPES[sc.tokens["sshape"]])
                return resp
            if i == min(2, n) and sc.has("errortext"):  # an SSE error event whose data is plain text
                await resp.write(b"event: error\ndata: upstream overloaded, try again later\n\n")
                return resp
            if i == min(2, n) and sc.has("providererror"):  # OpenRouter's mid-stream error: 200, then this
                failed = chunk(finish="error")
                await send({**failed, "error": {"message": "provider returned error", "code": 502}})
                await send("[DONE]")
                return resp
            if i == n:
                break
            if i:
                await asyncio.sleep(sc.num("token_delay"))
            await send(chunk(PIECES[i % 2]))
        if not sc.has("nofinish"):
            finish = "length" if sc.cut else "stop"
            await send(chunk("", finish) if not chat else chunk(finish=finish))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            await send({**base, "choices": [], "usage": _usage(sc, body.get("messages") or body.get("prompt"), n)})
        if not sc.has("nodone"):
            await send("[DONE]")
        return resp


def main(argv: list[str] | None = None) -> None:
    """Run FakeOpenAI in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server with fault injection.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--redirect-to", default=None)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args(argv)
    server = FakeOpenAI(
        port=args.port, latency=args.latency, api_key=args.api_key, redirect_to=args.redirect_to, tls=args.tls
    ).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
