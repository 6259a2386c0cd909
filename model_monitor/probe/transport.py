"""How a request reaches an endpoint: its connection pool (TLS, proxy) and the headers every request carries.
Shared by the probes (prober.py, with the headers built in engine.py) and the model listing (discovery.py)."""

from __future__ import annotations

import os
import ssl
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .. import USER_AGENT
from ..case import Endpoint
from ..errors import ErrorClass, ProbeError
from .exchange import ACCEPT_ENCODING

if TYPE_CHECKING:  # loaded with the first session: a process that never probes never loads aiohttp
    import aiohttp

__all__ = ["proxy_for", "request_headers", "session_for", "tls_context"]


def session_for(limit: int, tls: ssl.SSLContext | None) -> aiohttp.ClientSession:
    """A connection pool for one endpoint (at most `limit` connections, its max_concurrency), made on the loop
    that uses it: no cookies kept, replies handed on undecoded (exchange.body_chunks decodes them in bounded steps),
    no deadline but the exchange's own. `tls` is None for a plain-HTTP endpoint, which sends nothing through TLS
    (aiohttp's verifying default stands)."""
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=True if tls is None else tls),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None),
    )


def tls_context(verify: bool) -> ssl.SSLContext:
    """What a request trusts: SSL_CERT_FILE or SSL_CERT_DIR when set (an internal CA), else certifi's bundle;
    nothing at all when the endpoint turns verification off. Made once per setting: each costs tens of ms."""
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def request_headers(
    endpoint: Endpoint, monitor: str, own: Mapping[str, str] | None = None, key_header: str | None = None
) -> list[tuple[str, str]]:
    """Ours and the model type's (`own`, and the API key also in `key_header`), then the user's: a header of the
    same name in the endpoints file replaces ours in its place (names are case-insensitive). `monitor` is the probe
    header's value unless the file sets one."""
    headers: dict[str, tuple[str, str]] = {}

    def put(name: str, value: str) -> None:
        headers[name.lower()] = (name, value)

    put("user-agent", USER_AGENT)
    put("accept", "application/json, text/event-stream")
    put("accept-encoding", ACCEPT_ENCODING)  # what exchange.body_chunks undoes, in bounded steps
    for name, value in (own or {}).items():
        put(name, value)
    if endpoint.probe_header:
        put(endpoint.probe_header.name, endpoint.probe_header.value or monitor)
    if endpoint.api_key:
        put("authorization", f"Bearer {endpoint.api_key.reveal()}")
        if key_header:
            put(key_header, endpoint.api_key.reveal())
    for name, secret in endpoint.headers:
        put(name, secret.reveal())
    return list(headers.values())


def proxy_for(url: str) -> str | None:
    """The environment's proxy for this URL, as curl and httpx would pick it (NO_PROXY honoured). One that no
    proxy can have raises ProbeError naming its variable (its value may hold credentials: never shown)."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    if problem := _proxy_problem(proxy):
        variable = f"{parts.scheme.upper()}_PROXY (or {parts.scheme}_proxy)"
        raise ProbeError(ErrorClass.CONNECT, f"{variable} is not a proxy URL: {problem}; no request was sent")
    return proxy


def _proxy_problem(proxy: str) -> str | None:
    """Why the environment's proxy is not one a request can go through (aiohttp sends through http and https
    proxies), or None."""
    if not (proxy.isascii() and proxy.isprintable()):  # urlsplit drops a newline; aiohttp quotes the rest back
        return "it holds a control, non-ASCII or bidi character, which no URL holds as it is"
    try:
        parts = urlsplit(proxy)
        parts.port  # noqa: B018  # a port that is not a number, or out of range, raises here
    except ValueError:
        return "it does not parse (an unclosed [ or a port that is not a number from 0 to 65535)"
    if parts.scheme.lower() not in ("http", "https"):
        return "only http:// and https:// proxies are supported"
    if not parts.hostname:
        return "it names no host"
    return None
