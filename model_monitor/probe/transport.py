"""How a request reaches an endpoint: its connection pool (TLS, proxy) and the headers every request carries.
Shared by the probes (engine.py) and the model listing (discovery.py)."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx

from .. import USER_AGENT
from ..case import Endpoint
from .exchange import ACCEPT_ENCODING

if TYPE_CHECKING:  # aiohttp beneath it is loaded with the first pool: a process that never probes never loads it
    from httpx_aiohttp import AiohttpTransport

__all__ = ["request_headers", "transport_for"]


def transport_for(endpoint: Endpoint, tls: ssl.SSLContext) -> AiohttpTransport:
    """A connection pool for one endpoint, through any proxy that HTTP(S)_PROXY / NO_PROXY name for it."""
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(
        verify=tls,
        limits=httpx.Limits(max_connections=endpoint.max_concurrency),
        proxy=_proxy_for(endpoint.base_url),
    )


def request_headers(
    endpoint: Endpoint, monitor: str, own: Mapping[str, str] | None = None, key_header: str | None = None
) -> httpx.Headers:
    """Ours and the model type's (`own`, and the API key also in `key_header`), then the user's: a header of the
    same name in the endpoints file replaces ours (names are case-insensitive). `monitor` is the probe header's
    value unless the file sets one."""
    headers = httpx.Headers(
        {
            "user-agent": USER_AGENT,
            "accept": "application/json, text/event-stream",
            "accept-encoding": ACCEPT_ENCODING,  # what exchange.body_chunks undoes, in bounded steps
            **(own or {}),
        }
    )
    if endpoint.probe_header:
        headers[endpoint.probe_header.name] = endpoint.probe_header.value or monitor
    if endpoint.api_key:
        headers["authorization"] = f"Bearer {endpoint.api_key.reveal()}"
        if key_header:
            headers[key_header] = endpoint.api_key.reveal()
    for name, value in endpoint.headers:
        headers[name] = value.reveal()
    return headers


def _proxy_for(url: str) -> httpx.Proxy | None:
    """The environment's proxy for this URL, as curl and httpx would pick it (NO_PROXY honoured)."""
    scheme, host = url.split("://", 1)[0], httpx.URL(url).host
    proxy = urllib.request.getproxies().get(scheme)
    return httpx.Proxy(proxy) if proxy and not urllib.request.proxy_bypass(host) else None
