"""The idioms every reporter that speaks HTTP shares, written once: a URL read with its secrets held as Secret,
Basic auth, a bounded read of a reply, and a text cut to one line."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import TelemetryConfigError
from ..redact import Secret

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ATTEMPTS",
    "MONITOR",
    "PAST_BUDGET_S",
    "REPLY_READ_CAP",
    "Overrun",
    "SplitUrl",
    "basic_auth",
    "skim",
    "skim_blocking",
    "split_url",
    "within",
]

T = TypeVar("T")

ATTEMPTS = 3  # of each request a reporter sends
REPLY_READ_CAP = (
    4096  # bytes of a reply read, never decoded: the status says it all; a small reply keeps the connection
)
MONITOR = "{monitor}"  # where a heartbeat URL template takes the case's monitor key: only ever in a URL's path


class _Segments(tuple[str, ...]):
    """A URL's decoded path segments in the open: one may be a key, so their repr (a traceback's locals) hides them."""

    def __repr__(self) -> str:
        return f"<{len(self)} path segments>"


@dataclass(frozen=True)
class SplitUrl:
    """A URL split once: the path still in the open (masked repr) until its reader says where a key is."""

    origin: str  # scheme://host[:port], without userinfo
    segments: _Segments
    query: tuple[tuple[str, Secret], ...]
    auth: Secret | None  # Basic credentials from the URL's userinfo


def split_url(url: Secret, shape: str) -> SplitUrl:
    """The one place a reporter's URL is read in the open: urllib.parse splits it, its secret parts become Secrets."""
    __tracebackhide__ = True  # its locals hold the whole URL: pytest never prints this frame
    try:
        parts = urlsplit(url.reveal())
        parts.port  # noqa: B018 - a malformed port raises here, at start-up, not on every request
    except ValueError:
        raise TelemetryConfigError(f"not a valid URL; {shape}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelemetryConfigError(shape)
    if MONITOR in parts.netloc or MONITOR in unquote(parts.query):
        raise TelemetryConfigError("{monitor} belongs in the URL's path")
    auth = None
    if parts.username is not None:
        # Userinfo is sent as Basic auth (as an HTTP client would), never in the URL, and never printed.
        auth = basic_auth(unquote(parts.username), unquote(parts.password or ""))
    return SplitUrl(
        origin=f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}",
        segments=_Segments(unquote(s) for s in parts.path.split("/") if s),
        query=tuple((name, Secret(value)) for name, value in parse_qsl(parts.query, keep_blank_values=True)),
        auth=auth,
    )


def basic_auth(user: str, password: str) -> Secret:
    """The Authorization header's value for HTTP Basic auth, held as a Secret."""
    __tracebackhide__ = True  # its locals hold the password
    return Secret("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


async def skim(response: httpx.Response) -> None:
    """Read at most REPLY_READ_CAP raw bytes of a reply: a 100 MB body or a gzip bomb costs nothing."""
    read = 0
    raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())  # httpx's is a generator; it is typed as an iterator
    async with contextlib.aclosing(raw) as chunks:
        async for chunk in chunks:
            read += len(chunk)
            if read >= REPLY_READ_CAP:
                return


def skim_blocking(response: httpx.Response) -> None:
    """skim() for a blocking client."""
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if read >= REPLY_READ_CAP:
            return


# An export's own timeouts reach this far past its budget, so that `within` is the one bound that ends it (and names
# it): a timeout as long as what is left would race it, and could say ReadTimeout where the budget ran out.
PAST_BUDGET_S = 1.0


class Overrun(Exception):
    """Work that did not finish within its wall-clock budget (within)."""


def within(budget: float, work: Callable[[], T]) -> T:
    """`work()`, waited for at most `budget` seconds in all, whatever its own timeouts say: a receiver that drips
    one byte every few seconds never trips a per-read timeout. Past the budget raise Overrun; the work's thread is a
    daemon and is left behind (it holds nothing the run still needs, and cannot keep the process alive)."""
    done: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            done.append((True, work()))
        except BaseException as exc:  # handed to the caller below
            done.append((False, exc))

    thread = threading.Thread(target=run, name="model-monitor-export", daemon=True)
    thread.start()
    thread.join(max(0.0, budget))
    if not done:
        raise Overrun(f"no reply within {budget:g} s")
    finished, value = done[0]
    if finished:
        return cast(T, value)
    raise value
