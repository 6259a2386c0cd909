"""What the docs promise about reaching an endpoint (docs/endpoints.md, "TLS" and "Proxies") holds, in-process:
SSL_CERT_FILE makes a probe trust an internal CA, HTTP_PROXY carries it through a proxy and NO_PROXY keeps a host
out of it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.openai_server import FakeOpenAI

from .helpers import endpoint, model, probe_endpoints

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def internal_ca_server() -> Iterator[FakeOpenAI]:
    """A server whose certificate no public bundle holds: the internal CA's stand-in."""
    with FakeOpenAI(tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def proxy() -> Iterator[FakeOpenAI]:
    """Answers the absolute-form requests a client sends its HTTP proxy as if it were the endpoint."""
    with FakeOpenAI() as server:
        yield server


def test_ssl_cert_file_makes_a_probe_trust_an_internal_ca(
    internal_ca_server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "internal-ca.pem"
    assert internal_ca_server.cert_pem is not None
    bundle.write_text(internal_ca_server.cert_pem)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    outcome = probe_endpoints(tmp_path, [endpoint(internal_ca_server.url, model("m"))])["svc/m"]
    assert outcome.passed, outcome.reason


def test_without_the_bundle_the_same_server_fails_as_tls(
    internal_ca_server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    outcome = probe_endpoints(tmp_path, [endpoint(internal_ca_server.url, model("m"))])["svc/m"]
    assert (outcome.passed, outcome.error_class) == (False, "tls"), outcome.reason


def test_http_proxy_carries_the_probe(proxy: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    # Port 1 has no server: only the proxy can answer for it.
    outcome = probe_endpoints(tmp_path, [endpoint("http://localhost:1/v1", model("via-proxy"))])["svc/via-proxy"]
    assert outcome.passed, outcome.reason
    assert len(proxy.requests_for("via-proxy")) == 1


def test_no_proxy_keeps_a_host_out_of_the_proxy(
    proxy: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAI() as direct:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        outcome = probe_endpoints(tmp_path, [endpoint(direct.url, model("direct"))])["svc/direct"]
        assert outcome.passed, outcome.reason
        assert (len(direct.requests_for("direct")), len(proxy.requests_for("direct"))) == (1, 0)


def test_a_proxy_url_with_credentials_logs_in_to_the_proxy(
    proxy: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user and password in HTTP_PROXY (percent-encoded as a URL holds them) reach the proxy as
    Proxy-Authorization, and only the proxy: they are not part of the URL the request is sent to."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://ops:p%40ss@"))
    outcome = probe_endpoints(tmp_path, [endpoint("http://localhost:1/v1", model("logged-in"))])["svc/logged-in"]
    assert outcome.passed, outcome.reason
    (seen,) = proxy.requests_for("logged-in")
    assert seen.headers["proxy-authorization"] == "Basic " + base64.b64encode(b"ops:p@ss").decode()
    assert "authorization" not in seen.headers


@pytest.mark.parametrize(
    "proxy",
    [
        "http://user:s3cret-proxy@[::1:3128",  # an unclosed IPv6 bracket
        "http://user:s3cret-proxy@proxy.internal:31x8",  # a port that is not a number
        "socks5://user:s3cret-proxy@proxy.internal:1080",  # a scheme aiohttp cannot proxy through
        "http://",  # no host
        "http://user:s3cret-proxy@pro\nxy.internal:3128",  # a newline (urlsplit drops it: another host)
        "http://user:s3cret-proxy@pro\u202exy.internal:3128",  # a bidi control
    ],
    ids=["bracket", "port", "scheme", "no-host", "newline", "bidi"],
)
def test_a_proxy_variable_that_is_no_proxy_url_fails_the_case_naming_it(
    proxy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is outside data: one that no proxy can have fails the cases it applies to with one line that names
    the variable, not the connection that never was, and never shows the credentials it may hold."""
    monkeypatch.setenv("HTTP_PROXY", proxy)
    outcome = probe_endpoints(tmp_path, [endpoint("http://localhost:1/v1", model("via-proxy"))])["svc/via-proxy"]
    assert not outcome.passed
    assert outcome.error_class == "connect"
    assert "HTTP_PROXY" in outcome.reason and "not a proxy URL" in outcome.reason, outcome.reason
    assert "s3cret" not in outcome.reason and "\n" not in outcome.reason
