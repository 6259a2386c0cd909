"""Discovery: an endpoint with `discover: true` gets one case per model its GET /models lists.

The listing is made once per run, before collection (the xdist controller makes it and hands the result to its
workers as plain data, so that every worker collects the same cases), all endpoints' listings at once on one
event loop. A listing that fails, or lists nothing the filters keep, becomes one failing case `<endpoint>/discovery`
rather than a crash or an empty run: an alert, where a quiet gap in monitoring would otherwise be.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from ..case import Case, monitor_key
from ..errors import ConfigError, ErrorClass, ProbeError
from ..probe.exchange import read_body, timed
from ..probe.transport import request_headers, transport_for
from ..redact import Redactor
from ..reply import parse_json
from ..types.models import model_ids
from .build import Discovery, Suite
from .document import name_problem

__all__ = ["DISCOVERY", "Listing", "apply", "list_models"]

DISCOVERY = "discovery"  # the model part of the failing case's id: <endpoint>/discovery
MAX_LISTING_BYTES = 8 * 1024 * 1024  # a listing of thousands of models is a few hundred KB
LISTING_PATH = "/models"
SHOWN_ID_CHARS = 60  # of a refused id in the discovery case's reason


@dataclass(frozen=True)
class Listing:
    """What one endpoint's listing found: the model ids the filters keep and whose names pass the file's name rules,
    the ones refused (each escaped and cut, with why), how many were listed; or why there are none (an ErrorClass
    value and a line). Only checked text travels on: to xdist's workers, into ids, reports and pings."""

    ids: tuple[str, ...] = ()
    failure: tuple[str, str] | None = None
    refused: tuple[str, ...] = ()
    listed: int = 0

    def plain(self) -> dict[str, Any]:
        """As plain data, the form in which it travels to xdist workers."""
        return {
            "ids": list(self.ids),
            "failure": list(self.failure) if self.failure else None,
            "refused": list(self.refused),
            "listed": self.listed,
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> Listing:
        failure = data.get("failure")
        return cls(
            tuple(data["ids"]),
            (failure[0], failure[1]) if failure else None,
            tuple(data["refused"]),
            int(data["listed"]),
        )

    @classmethod
    def gated(cls, listed: list[str], discovery: Discovery) -> Listing:
        """The listing's ids through the filters, then the name rules a file's model name passes."""
        kept = sorted({i for i in listed if _kept(i, discovery)})
        if len(kept) > discovery.max_discovered:
            return cls(
                failure=(ErrorClass.EXPECTATION.value, _too_many(len(listed), len(kept), discovery)), listed=len(listed)
            )
        refused = [f"{_shown(i)} ({problem})" for i in kept if (problem := name_problem(i))]
        return cls(tuple(i for i in kept if not name_problem(i)), refused=tuple(refused), listed=len(listed))


def list_models(suite: Suite, redact: Redactor, environ: Mapping[str, str] | None = None) -> dict[str, Listing]:
    """Every discovering endpoint's listing, all at once: the run waits for the slowest, not for their sum. The
    secrets each listing sends are registered with `redact`, and its failure is redacted before it travels (an
    xdist worker never resolves a discovery case's endpoint, so it could not mask them)."""
    if not suite.discoveries:
        return {}
    environ = os.environ if environ is None else environ

    async def all_listings() -> list[Listing]:
        return await asyncio.gather(*(_listing(suite, name, redact, environ) for name in suite.discoveries))

    return dict(zip(suite.discoveries, asyncio.run(all_listings()), strict=True))


async def _listing(suite: Suite, name: str, redact: Redactor, environ: Mapping[str, str]) -> Listing:
    """One endpoint's listing, bounded by its discover_timeout and the body cap; every fault becomes its failure.

    An unset API key variable is such a fault, not a configuration error that stops the run (exit 4): the listing
    runs before selection, so it cannot know whether this run selects the endpoint; a run that selects only other
    endpoints must not stop for a secret it does not need (see Suite.resolve)."""
    try:
        endpoint = suite.connections[name].resolve(environ, redact)
    except ConfigError as exc:
        return Listing(failure=(ErrorClass.CLIENT_ERROR.value, f"cannot list the models: {exc}"))
    discovery = suite.discoveries[name]
    request = httpx.Request("GET", endpoint.url_for(LISTING_PATH), headers=request_headers(endpoint, _monitor(name)))
    transport = transport_for(endpoint, httpx.create_ssl_context(verify=endpoint.verify_tls))
    try:
        reply = await timed(
            transport, request, discovery.timeout, lambda r, clock: read_body(r, clock, MAX_LISTING_BYTES)
        )
        return Listing.gated(model_ids(parse_json(reply)), discovery)
    except ProbeError as error:
        why = redact(f"listing GET {request.url.path} failed: {error.message}")
        return Listing(failure=(error.error_class.value, why))
    finally:
        await transport.aclose()


def apply(suite: Suite, listings: Mapping[str, Listing]) -> Suite:
    """The suite with each discovering endpoint's cases after the ones the file lists, in id order; an endpoint
    whose listing failed, or kept nothing, gets its failing `<endpoint>/discovery` case instead."""
    if not suite.discoveries:
        return suite
    cases: dict[str, list[Case]] = {name: [] for name in suite.connections}  # file order
    for case in suite.cases:
        cases[case.endpoint.name].append(case)
    taken = {case.id for case in suite.cases} | {case.monitor for case in suite.cases}
    taken |= {key for name in suite.discoveries for key in (f"{name}/{DISCOVERY}", _monitor(name))}  # its own case
    for name, discovery in suite.discoveries.items():
        cases[name].extend(_cases(discovery, listings.get(name, Listing()), taken))
    return replace(suite, cases=tuple(case for endpoint_cases in cases.values() for case in endpoint_cases))


def _cases(discovery: Discovery, listing: Listing, taken: set[str]) -> list[Case]:
    """An endpoint's discovered cases; its failing discovery case for what went wrong."""
    if listing.failure is not None:
        return [_failed(discovery, listing.failure)]
    if not listing.ids and not listing.refused:
        return [_failed(discovery, (ErrorClass.EXPECTATION.value, _nothing_kept(listing, discovery)))]
    found, refused = [], list(listing.refused)
    for model_id in (i for i in listing.ids if i not in discovery.explicit):
        try:
            case = discovery.case(model_id, discovery.type_of(model_id))
        except ConfigError as exc:
            refused.append(f"{_shown(model_id)} ({exc.detail.partition(': names become')[0]})")
            continue
        if case.id in taken or case.monitor in taken:
            refused.append(f"{_shown(model_id)} (its case id or monitor key {case.monitor!r} is taken)")
            continue
        taken.update((case.id, case.monitor))
        found.append(case)
    if refused:  # the others still run; this case keeps the gap from going unnoticed
        why = f"{len(refused)} listed models get no case: {', '.join(refused[:5])}" + (
            ", …" if len(refused) > 5 else ""
        )
        found.append(_failed(discovery, (ErrorClass.EXPECTATION.value, why)))
    return found


def _kept(model_id: str, discovery: Discovery) -> bool:
    """Whether the filters keep a listed id: one include glob matches (or there are none), no exclude glob does."""

    def matches(globs: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(model_id, glob) for glob in globs)

    return (not discovery.include or matches(discovery.include)) and not matches(discovery.exclude)


def _nothing_kept(listing: Listing, discovery: Discovery) -> str:
    """`lists 37 models, none matches include ['gpt-*'] (exclude ['*-old'])`."""
    if not listing.listed:
        return f"GET {LISTING_PATH} lists no models"
    filters = [
        f"{what} {list(globs)}"
        for what, globs in (("include", discovery.include), ("exclude", discovery.exclude))
        if globs
    ]
    return f"GET {LISTING_PATH} lists {listing.listed} models, none kept by " + " and ".join(filters)


def _failed(discovery: Discovery, failure: tuple[str, str]) -> Case:
    """The `<endpoint>/discovery` case: it sends no request and fails with the listing's reason."""
    return replace(discovery.case(DISCOVERY, "models"), failure=failure)


def _too_many(listed: int, kept: int, discovery: Discovery) -> str:
    """`GET /models lists 400,000 models (400,000 kept by the filters), more than max_discovered 2,000: ...`."""
    filtered = f" ({kept:,} kept by include/exclude)" if (discovery.include or discovery.exclude) else ""
    return (
        f"GET {LISTING_PATH} lists {listed:,} models{filtered}, more than max_discovered {discovery.max_discovered:,}: "
        "none is probed; narrow the listing with include/exclude or raise max_discovered"
    )


def _shown(model_id: str) -> str:
    """A listed id as a reason shows it: escaped (repr), and cut, whatever the server sent."""
    return repr(model_id[:SHOWN_ID_CHARS]) + ("…" if len(model_id) > SHOWN_ID_CHARS else "")


def _monitor(name: str) -> str:
    """The discovery case's monitor key, which the listing sends as its probe header."""
    return monitor_key(f"{name}-{DISCOVERY}")
