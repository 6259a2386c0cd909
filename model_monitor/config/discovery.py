"""Discovery: an endpoint with `discover: true` gets one case per model its GET /models lists.

The listing is made once per run, before collection (the xdist controller makes it and hands the result to its
workers as plain data, so that every worker collects the same cases), all endpoints' listings at once on one
event loop. A listing that fails, or lists nothing the filters keep, becomes one failing case `<endpoint>/discovery`
rather than a crash or an empty run: an alert, where a quiet gap in monitoring would otherwise be.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from ..case import Case, monitor_key
from ..errors import ConfigError, ErrorClass, ProbeError
from ..probe.exchange import Sent, read_body, timed
from ..probe.transport import proxy_for, request_headers, session_for, tls_context
from ..redact import Redactor
from ..reply import parse_json
from ..types.models import model_ids
from .build import Discovery, Suite
from .document import name_problem

__all__ = ["DISCOVERY", "Lister", "Listing", "apply"]

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
    def gated(cls, listed: list[str], discovery: Discovery, redact: Redactor) -> Listing:
        """The listing's ids through the filters, then the name rules a file's model name passes, and none that
        holds a secret the run knows (a server echoing the key it was sent): a case id is printed everywhere."""
        kept = sorted({i for i in listed if _kept(i, discovery)})
        if len(kept) > discovery.max_discovered:
            return cls(
                failure=(ErrorClass.EXPECTATION.value, _too_many(len(listed), len(kept), discovery)), listed=len(listed)
            )
        problems = {i: problem for i in kept if (problem := _id_problem(i, redact))}
        refused = [f"{_shown(redact(i))} ({problem})" for i, problem in problems.items()]
        return cls(tuple(i for i in kept if i not in problems), refused=tuple(refused), listed=len(listed))


class Lister:
    """Makes every discovering endpoint's listing, all at once: the run waits for the slowest, not for their sum.

    stop() (the run's Stopper calls it, from a signal handler or the run deadline's thread) ends the listings still
    under way; each fails with the stop's class, and so does its endpoint's discovery case. The secrets each listing
    sends are registered with the run's Redactor, and its failure is redacted before it travels (an xdist worker
    never resolves a discovery case's endpoint, so it could not mask them)."""

    def __init__(self, suite: Suite, redact: Redactor, environ: Mapping[str, str] | None = None) -> None:
        self._suite = suite
        self._redact = redact
        self._environ = os.environ if environ is None else environ
        self._stop: tuple[ErrorClass, str] | None = None
        self._stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: float | None = None  # monotonic, as the listings were sent
        self._stopped_at = 0.0  # monotonic
        # One TLS context per verify setting for all the listings: each costs about 60 ms of the loop's time, which
        # 50 discovering endpoints turned into 3 s before the last listing was sent.
        self._tls = functools.cache(tls_context)

    def listings(self) -> dict[str, Listing]:
        if not self._suite.discoveries:
            return {}
        found = zip(self._suite.discoveries, asyncio.run(self._all()), strict=True)
        return {name: listing or self._stopped_listing() for name, listing in found}

    def stop(self, error_class: ErrorClass, why: str) -> None:
        """Safe from a signal handler and from another thread; only the first call counts."""
        if self._stop is None:
            self._stop, self._stopped_at = (error_class, why), time.monotonic()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the listings are over and their loop closed: nothing to stop
                loop.call_soon_threadsafe(self._stopped.set)

    async def _all(self) -> list[Listing | None]:
        """Every listing, or None for one that the stop ended."""
        self._loop = asyncio.get_running_loop()  # before looking at _stop: a stop in between still wakes the loop
        if self._stop is not None:
            return [None] * len(self._suite.discoveries)
        self._started = time.monotonic()
        tasks = [
            asyncio.create_task(_listing(self._suite, name, self._redact, self._environ, self._tls))
            for name in self._suite.discoveries
        ]
        stopped = asyncio.create_task(self._stopped.wait())
        either: list[asyncio.Future[Any]] = [asyncio.gather(*tasks, return_exceptions=True), stopped]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        for task in (*tasks, stopped):
            task.cancel()
        await asyncio.wait(either)  # each listing closes its connection
        return [None if task.cancelled() else task.result() for task in tasks]

    def _stopped_listing(self) -> Listing:
        assert self._stop is not None
        error_class, why = self._stop
        sent = self._started
        state = "not sent" if sent is None else f"in flight for {self._stopped_at - sent:.1f} s"
        return Listing(failure=(error_class.value, f"{why}; listing GET {LISTING_PATH} {state}"))


async def _listing(
    suite: Suite, name: str, redact: Redactor, environ: Mapping[str, str], tls: Callable[[bool], ssl.SSLContext]
) -> Listing:
    """One endpoint's listing, bounded by its discover_timeout and the body cap; every fault becomes its failure.

    An unset API key variable is such a fault, not a configuration error that stops the run (exit 4): the listing
    runs before selection, so it cannot know whether this run selects the endpoint; a run that selects only other
    endpoints must not stop for a secret it does not need (see Suite.resolve)."""
    try:
        endpoint = suite.connections[name].resolve(environ, redact)
    except ConfigError as exc:
        return Listing(failure=(ErrorClass.CLIENT_ERROR.value, f"cannot list the models: {exc}"))
    discovery = suite.discoveries[name]
    url = endpoint.url_for(LISTING_PATH)
    session = session_for(endpoint.max_concurrency, tls(endpoint.verify_tls))
    try:
        request = Sent("GET", url, request_headers(endpoint, _monitor(name)), b"", proxy_for(url))
        reply = await timed(
            session, request, discovery.timeout, lambda r, clock: read_body(r, clock, MAX_LISTING_BYTES)
        )
        return Listing.gated(model_ids(parse_json(reply)), discovery, redact)
    except ProbeError as error:
        why = redact(f"listing GET {urlsplit(url).path} failed: {error.message}")
        return Listing(failure=(error.error_class.value, why))
    finally:
        await session.close()


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


def _id_problem(model_id: str, redact: Redactor) -> str | None:
    if redact(model_id) != model_id:
        return "it holds a secret this run sends"
    return name_problem(model_id)


def _shown(model_id: str) -> str:
    """A listed id as a reason shows it: escaped (repr), and cut, whatever the server sent."""
    return repr(model_id[:SHOWN_ID_CHARS]) + ("…" if len(model_id) > SHOWN_ID_CHARS else "")


def _monitor(name: str) -> str:
    """The discovery case's monitor key, which the listing sends as its probe header."""
    return monitor_key(f"{name}-{DISCOVERY}")
