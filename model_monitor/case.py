"""What one pytest case checks: an endpoint and one of its models, as frozen data the rest of the code trusts."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .redact import Secret

if TYPE_CHECKING:
    from .reply import Timed

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ENDPOINT_MAX_CONCURRENCY",
    "PROBE_HEADER",
    "RUN_MAX_CONCURRENCY",
    "Case",
    "CaseType",
    "Endpoint",
    "ExpectOptions",
    "Options",
    "ProbeHeader",
    "StreamOptions",
    "monitor_key",
]

DEFAULT_TIMEOUT_S = 30.0
PROBE_HEADER = "X-Model-Monitor-Probe"
ENDPOINT_MAX_CONCURRENCY = 20  # requests in flight to one endpoint (its max_concurrency)
RUN_MAX_CONCURRENCY = 100  # requests in flight over all endpoints (--max-concurrency)
_UNSAFE_KEY_CHARS = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class ProbeHeader:
    """The header that marks a request as a probe; without a value, each case sends its monitor key (ASCII,
    stable, the name its heartbeat has), so that a gateway can tell probes apart and by case."""

    name: str = PROBE_HEADER
    value: str | None = None


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str  # the API root, ending in /v1, without the URL's query
    api_key: Secret | None = None
    headers: tuple[tuple[str, Secret], ...] = ()
    verify_tls: bool = True
    max_concurrency: int = ENDPOINT_MAX_CONCURRENCY
    query: Secret | None = None  # kept on every request (Azure's api-version); it may hold a key (?code=...)
    probe_header: ProbeHeader | None = ProbeHeader()  # None: no probe header
    probe_metadata: bool = False  # metadata.model_monitor_probe in the body (OpenAI's chat wants store: true for it)
    probe_user: str | None = None  # the body's `user`, where the type accepts it (gateways attribute spend by it)

    def url_for(self, path: str) -> str:
        """The request URL for an API path such as /chat/completions: the path after the API root, the query
        after the path."""
        url = self.base_url + path
        return f"{url}?{self.query.reveal()}" if self.query else url


@dataclass(frozen=True)
class Options:
    """A model type's own fields with their defaults: each type declares a subclass (types/<type>.py)."""


@dataclass(frozen=True)
class ExpectOptions(Options):
    """The options of a type whose reply has a visible text: `expect` is what that text must hold."""

    expect: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamOptions(ExpectOptions):
    """The options of a type whose reply can be read as an SSE stream."""

    stream: bool = False


class CaseType(Protocol):
    """What the code reads of a case's model type: types/base.py's ModelType is the one kind there is. Declared
    here, so that this module, which types/ builds on, imports nothing of types/ back (not even for its hints);
    what types/ defines (a body, a check's verdict, a stream format) is Any from here."""

    @property
    def name(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def operation(self) -> str | None: ...
    @property
    def tags(self) -> frozenset[str]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def key_header(self) -> str | None: ...
    @property
    def body(self) -> Callable[[Case], Any]: ...
    @property
    def check(self) -> Callable[[Case, Any], Any]: ...
    @property
    def parse(self) -> Callable[[Timed], Any]: ...
    @property
    def stream_format(self) -> type[Any]: ...


@dataclass(frozen=True)
class Case:
    """One endpoint/model: one pytest case, of its model type, with that type's options (types/<type>.py)."""

    endpoint: Endpoint
    model: str
    model_id: str
    type: CaseType
    monitor: str
    timeout: float = DEFAULT_TIMEOUT_S
    tags: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    schedule: str | None = None
    max_latency: float | None = None
    max_ttft: float | None = None
    min_tokens_per_s: float | None = None
    warn_latency: float | None = None  # crossing a warn_ threshold passes the case, marked degraded
    warn_ttft: float | None = None
    options: Options = Options()
    # (error class, reason) of a case that fails without sending a request: a discovery whose listing failed
    failure: tuple[str, str] | None = None

    @property
    def id(self) -> str:
        return f"{self.endpoint.name}/{self.model_id}"

    @property
    def stream(self) -> bool:
        """Whether the reply is read as an SSE stream (only types that stream have the field)."""
        return isinstance(self.options, StreamOptions) and self.options.stream

    @property
    def expect(self) -> Mapping[str, Any]:
        """What the reply's text must hold (only types that reply with text have the field)."""
        return self.options.expect if isinstance(self.options, ExpectOptions) else {}


def monitor_key(text: str) -> str:
    """A path-safe, stable heartbeat monitor key: lower case, [a-z0-9_-] only.

    Accents fold away (café -> cafe); a name in another script (模型, an emoji) keeps what is left and gains a
    short hash of the whole name, so that two such names never share a key and none is left empty."""
    # ASCII has nothing to fold (most names): the walk below costs a case a few microseconds, thousands of them.
    folded = (
        text
        if text.isascii()
        else "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    )
    key = _UNSAFE_KEY_CHARS.sub("-", folded.lower()).strip("-")
    if not folded.isascii():
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        key = f"{key[:91]}-{digest}" if key else digest
    return key[:100]
