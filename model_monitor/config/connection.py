"""An endpoint's connection: its URL, headers and API key as the file writes them, checked at load where they are
fixed and read from the environment only when a request needs the endpoint (Connection.resolve), which registers
every secret among them with the run's Redactor before any request can carry it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit, urlunsplit

from ..case import ENDPOINT_MAX_CONCURRENCY, Endpoint, ProbeHeader
from ..redact import Redactor, Secret
from .document import VAR, Document, Problems, breaking_char, variable_values

__all__ = ["Connection", "base_url"]

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)


@dataclass(frozen=True)
class Connection:
    """An endpoint's URL, headers and API key as the file writes them, read from the environment only when a
    selected case needs the endpoint (resolve). Written values are held as Secret: a file may hold a key."""

    document: Document = field(repr=False)
    endpoint: Endpoint  # its name and caps; base_url is empty until resolved when the URL holds a ${VAR}
    url: tuple[tuple[Any, ...], Secret]  # (its place, its text)
    headers: tuple[tuple[tuple[Any, ...], str, Secret], ...]  # (place, name, value), the endpoint's over the defaults'
    api_key_env: tuple[tuple[Any, ...], str] | None  # (its place, the variable's name)

    @property
    def variables(self) -> tuple[str, ...]:
        """The environment variables resolve() reads: the ${VAR}s of the URL and headers, and api_key_env."""
        texts = [self.url[1].reveal(), *(value.reveal() for _, _, value in self.headers)]
        found = [name for text in texts for name in VAR.findall(text)]
        return tuple(dict.fromkeys(found + ([self.api_key_env[1]] if self.api_key_env else [])))

    def resolve(self, environ: Mapping[str, str], redact: Redactor) -> Endpoint:
        """The endpoint with its URL, headers and API key, their secrets registered with `redact` (the one way to
        an endpoint that can send, so no request carries a secret the run would print); raise ConfigError
        listing each problem."""
        problems = Problems()
        resolved: dict[str, Any] = {}
        with problems.catch():
            url = _url(self.document, *self.url, environ)
            resolved.update(base_url=base_url(urlunsplit(url._replace(query=""))), query=Secret(url.query) or None)
        headers = []
        for parts, name, value in self.headers:
            with problems.catch():
                headers.append((name, _header_value(self.document, parts, value, environ)))
        with problems.catch():
            resolved["api_key"] = _api_key(self.document, *self.api_key_env, environ) if self.api_key_env else None
        problems.check()
        endpoint = replace(self.endpoint, headers=tuple(headers), **resolved)
        redact.add(*_secrets(endpoint), *self._variables(environ))
        return endpoint

    def _variables(self, environ: Mapping[str, str]) -> tuple[str, ...]:
        """The values ${VAR}s bring into the URL and headers, also as a URL's path carries them (percent-encoded):
        a variable there is where a deployment puts what the file must not hold, a tenant key in a path included."""
        texts = [self.url[1].reveal(), *(value.reveal() for _, _, value in self.headers)]
        values = [value for text in texts for value in variable_values(text, environ)]
        return (*values, *(quote(value) for value in values))

    @classmethod
    def from_entry(
        cls, document: Document, raw: dict[str, Any], defaults: dict[str, Any], where: tuple[Any, ...]
    ) -> Connection:
        """An endpoint's connection, its fixed values checked now (they stop every run), those with a ${VAR} when
        resolved (they stop only the runs that select the endpoint)."""
        url = (where + ("url",), Secret(raw["url"]))
        headers = []
        for name, value in {**defaults.get("headers", {}), **raw.get("headers", {})}.items():
            parts = (where if name in raw.get("headers", {}) else ("defaults",)) + ("headers", name)
            headers.append((parts, name, Secret(value)))
            with document.problems.catch():
                if not _HEADER_NAME.fullmatch(name):
                    raise document.error(
                        parts, f"{name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
                    )
        fixed_base = ""  # a URL without ${VAR} is known now: reporters on xdist's controller name its server
        if not VAR.search(url[1].reveal()):
            with document.problems.catch():
                fixed_base = base_url(urlunsplit(_url(document, *url, {})._replace(query="")))
        for parts, _, value in headers:
            if not VAR.search(value.reveal()):
                with document.problems.catch():
                    _header_value(document, parts, value, {})
        key_env = raw.get("api_key_env", defaults.get("api_key_env"))
        key_parts = where + ("api_key_env",) if "api_key_env" in raw else ("defaults", "api_key_env")
        endpoint = Endpoint(
            name=raw["name"],
            base_url=fixed_base,
            verify_tls=raw.get("verify_tls", defaults.get("verify_tls", True)),
            max_concurrency=raw.get("max_concurrency", defaults.get("max_concurrency", ENDPOINT_MAX_CONCURRENCY)),
            probe_header=_probe_header(document, raw, defaults, where),
            probe_metadata=raw.get("probe_metadata", defaults.get("probe_metadata", False)),
            probe_user=raw.get("probe_user", defaults.get("probe_user")),
        )
        return cls(document, endpoint, url, tuple(headers), (key_parts, key_env) if key_env else None)


def base_url(url: str) -> str:
    """The API root ending in /v1, whether the user wrote the bare host or the OpenAI SDK's .../v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _secrets(endpoint: Endpoint) -> tuple[str, ...]:
    """The secret values a resolved endpoint sends: its API key, header values, query and the query's values."""
    found: set[str] = {value.reveal() for _, value in endpoint.headers}
    if endpoint.api_key:
        found.add(endpoint.api_key.reveal())
    if endpoint.query:
        query = endpoint.query.reveal()
        found.update([query, *(value for _, value in parse_qsl(query))])
    return tuple(found)


def _probe_header(
    document: Document, raw: dict[str, Any], defaults: dict[str, Any], where: tuple[Any, ...]
) -> ProbeHeader | None:
    """The endpoint's probe header, else the defaults', else X-Model-Monitor-Probe with the case's monitor key;
    false turns it off."""
    field_path = where + ("probe_header",) if "probe_header" in raw else ("defaults", "probe_header")
    given = raw.get("probe_header", defaults.get("probe_header", {}))
    if given is False:
        return None
    header = ProbeHeader(**given)  # the schema checked the name
    if header.value is not None and (problem := _header_problem(header.value)):
        raise document.error(field_path + ("value",), problem)
    return header


def _url(document: Document, where: tuple[Any, ...], url: Secret, environ: Mapping[str, str]) -> SplitResult:
    """The endpoint URL, refused here when no request could use it (rather than failing in every case). The text
    is never echoed: its query or a ${VAR} in it may hold a key."""
    text = document.expand(where, url.reveal(), environ)
    try:
        split = urlsplit(text)
    except ValueError as exc:  # a bracket left open in an IPv6 host
        raise document.error(where, f"not a valid URL: {exc}") from None
    if split.scheme not in ("http", "https"):  # the schema checks a URL without ${VAR}; this, the one it becomes
        raise document.error(where, "not a valid URL: it does not start with http:// or https://")
    if "@" in split.netloc:  # never echo it: the part before @ is a password
        raise document.error(
            where,
            "credentials in the URL are not accepted; put the API key in the environment "
            "variable named by api_key_env, or other credentials in headers",
        )
    try:
        _ = split.port  # parsed lazily: a port that is not a number in 0-65535 raises here
    except ValueError as exc:
        raise document.error(where, f"not a valid URL: {exc}") from None
    if not split.hostname:
        raise document.error(where, "not a valid URL: no host")
    if split.fragment:
        raise document.error(where, "a fragment (#...) is never sent to a server; remove it")
    return split


def _api_key(document: Document, where: tuple[Any, ...], key_env: str, environ: Mapping[str, str]) -> Secret:
    """The API key from the environment variable named by api_key_env, without surrounding whitespace: a key
    file made with `kubectl create secret --from-file` usually ends with a newline."""
    key = environ.get(key_env, "").strip()
    if not key:
        raise document.error(where, f"environment variable {key_env} (the API key) is not set or empty")
    if problem := _header_problem(key):
        raise document.error(where, f"environment variable {key_env} (the API key) {problem}")
    return Secret(key)


def _header_value(document: Document, where: tuple[Any, ...], value: Secret, environ: Mapping[str, str]) -> Secret:
    """A header's value, without surrounding whitespace: HTTP itself ignores it (and a ${VAR} read from a key file
    often ends with a newline)."""
    text = document.expand(where, value.reveal(), environ).strip()
    if problem := _header_problem(text):
        raise document.error(where, problem)
    return Secret(text)


def _header_problem(text: str) -> str | None:
    """Why a header value cannot be sent, or None. The value may be a secret: never part of the answer."""
    if char := breaking_char(text):
        return f"contains a control character ({char})"
    if not text.isascii():
        return "contains a non-ASCII character; HTTP header values are ASCII"
    return None
