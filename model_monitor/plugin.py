"""The pytest plugin: endpoints.yaml in, one timed case per endpoint/model out, a summary table at the end.

Loading, probing and reporting live in their own modules; this one only wires them to pytest's hooks.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import subprocess
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from . import config as endpoints_config
from . import finish, scheduler, selection, settings, stop, stopped
from .case import Case
from .config import ConfigError, Suite, discovery
from .errors import TelemetryConfigError
from .outcome import Outcome
from .probe.engine import Engine, case_budget, shared
from .probe.process import end_spare, spawn
from .redact import RedactingRecords, Redactor
from .reporters import Destinations, Fanout, build, junit, results, verdicts
from .reporters.paths import report_paths
from .reporters.verdicts import CaseIndex
from .run import MONITOR, DegradedCount, Monitor
from .stop import STOPPER, Stopper

__all__ = [  # pytest's hooks, the fixture the suite uses and the run's stash key (console.py): the whole surface
    "MONITOR",
    "check_case",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "pytest_runtest_protocol",
    "pytest_runtestloop",
    "pytest_testnodedown",
    "pytest_unconfigure",
]

TIMEOUT_SLACK_S = 10.0
CONFIG_ERROR = "model_monitor_config_error"  # workeroutput key: why the selected cases could not be resolved
DISCOVERED = "model_monitor_discovered"  # workerinput key: the controller's model listings, one per run
KEYWORDS = pytest.StashKey[Mapping[str, Any]]()  # an item's keywords as its first report has them
SPARE = pytest.StashKey[subprocess.Popen[bytes]]()  # the prober started at configure, until the engine takes it


def pytest_configure(config: pytest.Config) -> None:
    """Loaded by the entry point (entry.py) only for runs that collect our suite."""
    resolved = settings.resolve(config)
    _spawn_prober(config, resolved.max_concurrency)
    stopper = config.stash[STOPPER] = stop.for_run(
        config, resolved.run_deadline, resolved.stop_grace
    )  # before any request, the listings' too
    reports = None if hasattr(config, "workerinput") else report_paths(config, resolved)  # before any request
    path = Path(resolved.endpoints)
    if not path.is_absolute():
        path = config.invocation_params.dir / path
    # Before the first request: each secret joins it where it is resolved (an endpoint's for its listing or its
    # cases, the telemetry URLs' below), so that nothing a server echoes is printed.
    redact = Redactor(resolved.secrets)
    # The imports and pytest's own objects, and at this hook's end the loaded suite, live until the run ends:
    # frozen, the garbage collector's full passes while the file is read and the cases collected walk only what
    # those make (at 5,000 cases they walked 0.25 s more).
    gc.freeze()
    try:
        suite = endpoints_config.load(path)
        listings = _listings(config, suite, redact, stopper)
        suite = discovery.apply(suite, listings)
    except ConfigError as exc:
        raise pytest.UsageError(f"endpoints file: {exc}") from None
    if stopper.reason is not None and stop.is_controller(config):
        _no_workers(config)
    case_by_id = {case.id: case for case in suite.cases}
    if (unknown := selection.unknown_only(resolved.only, suite.cases)) is not None:
        raise pytest.UsageError(f"--only {unknown!r} names no endpoint and no case id in the endpoints file")
    try:
        destinations = Destinations.from_settings(resolved)
    except TelemetryConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    for tag in sorted({tag for case in suite.cases for tag in case.tags}):
        config.addinivalue_line("markers", f"{tag}: model tag from the endpoints file")
    redact.add(*destinations.secrets)
    records = RedactingRecords(redact)
    records.install()
    monitor = Monitor(
        resolved,
        suite,
        redact,
        records,
        CaseIndex(case_by_id),
        stopper,
        destinations,
        listings=listings,
    )
    config.stash[MONITOR] = monitor
    config.pluginmanager.register(finish, "model_monitor.finish")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(scheduler, "model_monitor.scheduler")
    if stopper.role == "single":  # xdist's controller and workers keep their own loops
        loop = stopped.Loop(stopper, functools.partial(_unrun, monitor), functools.partial(_as_answered, monitor))
        config.pluginmanager.register(loop, stopped.NAME)
    if reports is not None and (reports.results_json or reports.step_summary):
        monitor.results = results.Results(config, reports, suite, monitor.cases, monitor.stopper)
        config.pluginmanager.register(monitor.results, stopped.RESULTS)
    if not hasattr(config, "workerinput"):  # the process that sees every verdict
        config.pluginmanager.register(DegradedCount(monitor), stopped.DEGRADED)
        if getattr(config.option, "xmlpath", None):  # --junitxml (-p no:junitxml removes the option)
            config.pluginmanager.register(junit.HeldAsText(config), junit.NAME)
        selected = (case for case in suite.cases if selection.runs_here(case, resolved))
        monitor.reporters = build(destinations, resolved, monitor.background, redact, selected)
        if monitor.reporters:
            config.pluginmanager.register(Fanout(monitor.reporters, monitor.cases), stopped.REPORTERS)
    gc.freeze()


def _listings(config: pytest.Config, suite: Suite, redact: Redactor, stopper: Stopper) -> dict[str, discovery.Listing]:
    """The discovering endpoints' model listings: made here (a stop ends them), or received from the xdist
    controller, which made them once for all its workers (each listing on its own could find other models, and
    workers must collect alike)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        lister = discovery.Lister(suite, redact)
        stopper.attach(lister)
        return lister.listings()
    return {name: discovery.Listing.from_plain(plain) for name, plain in workerinput.get(DISCOVERED, {}).items()}


def _no_workers(config: pytest.Config) -> None:
    """A controller stopped during discovery starts no xdist workers (they could take longer to start than the stop
    grace): it reports every case itself, at once. xdist's own configure, which comes after ours, reads these."""
    config.option.numprocesses, config.option.dist, config.option.tx = 0, "no", []


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: each worker counts the run deadline from the controller's start, not its own, collects the models the
    controller discovered, and starts stopped if the controller was stopped already."""
    monitor = node.config.stash.get(MONITOR, None)
    if monitor is not None:
        node.workerinput[stop.RUN_STARTED] = monitor.stopper.started
        node.workerinput[DISCOVERED] = {name: listing.plain() for name, listing in monitor.listings.items()}
        if (reason := monitor.stopper.reason) is not None:
            node.workerinput[stop.STOPPED] = [reason[0].value, reason[1]]


def pytest_unconfigure(config: pytest.Config) -> None:
    if (spare := config.stash.get(SPARE, None)) is not None:  # the run ended before the engine took it
        end_spare(spare)
    monitor = config.stash.get(MONITOR, None)
    if monitor is not None:
        monitor.close()
    elif (stopper := config.stash.get(STOPPER, None)) is not None:  # configuring failed before the monitor existed
        stopper.uninstall()


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    monitor = config.stash.get(MONITOR, None)
    return None if monitor is None else monitor.header_lines()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    monitor = metafunc.config.stash.get(MONITOR, None)
    if "case" not in metafunc.fixturenames or monitor is None:
        return
    metafunc.parametrize(
        "case",
        [
            pytest.param(case, id=case.id, marks=[getattr(pytest.mark, tag) for tag in case.tags])
            for case in monitor.suite.cases
        ],
    )


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected: what is left is the run's selection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    monitor = config.stash.get(MONITOR, None)
    if monitor is None:
        return
    keep, drop = [], []
    timeouts = _sets_timeouts(config)
    for item in items:
        case = case_of(item)
        if case is not None and not selection.runs_here(case, monitor.settings):
            drop.append(item)
            monitor.others_shards += selection.selected_elsewhere(case, monitor.settings)
            continue
        if case is not None:
            item.user_properties.extend(verdicts.identity_properties(case))
            if timeouts:
                item.add_marker(_timeout(_budget(case)))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    _resolve(config, monitor, items)


def _resolve(config: pytest.Config, monitor: Monitor, items: list[pytest.Item]) -> None:
    """Read the selected cases' URLs, headers and API keys from the environment, before any request: an unset
    variable stops the run only if a selected case needs it. Every xdist worker resolves the whole selection, so
    none starts a request when another's share would have failed; the controller raises a worker's error."""
    selected = [(item, case) for item in items if (case := case_of(item)) is not None]
    try:
        cases = monitor.suite.resolve((case for _, case in selected), monitor.redact)
    except ConfigError as exc:
        # No case is left to probe: pytest calls pytest_collection_finish, which starts the probes, even when this
        # hook raises.
        config.hook.pytest_deselected(items=items[:])
        items[:] = []
        if not hasattr(config, "workerinput"):
            raise pytest.UsageError(f"endpoints file: {exc}") from None
        config.workeroutput[CONFIG_ERROR] = f"endpoints file: {exc}"  # type: ignore[attr-defined]  # xdist's worker
        return
    for (item, _), case in zip(selected, cases, strict=True):
        item.callspec.params["case"] = case  # type: ignore[attr-defined]  # a parametrized Function: pytest passes it


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: keep a worker's configuration error (every worker finds the same one)."""
    monitor = node.config.stash.get(MONITOR, None)
    found = getattr(node, "workeroutput", {}).get(CONFIG_ERROR)
    if monitor is not None and found:
        monitor.config_error = found


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """xdist controller: a worker's configuration error ends the run as one raised here would (exit 4)."""
    result = yield
    monitor = session.config.stash.get(MONITOR, None)
    if monitor is not None and monitor.config_error:
        raise pytest.UsageError(monitor.config_error)
    return result


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the probing process now, so that its interpreter starts while the cases are being collected."""
    monitor = session.config.stash.get(MONITOR, None)
    if monitor is None or session.config.option.collectonly or stop.is_controller(session.config):
        return
    _engine(monitor, session.config).launch()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start every selected case's probe now, so that each case finds its answer ready.

    What collection and the start built (the items, the cases, their requests) lives until the run ends: frozen,
    the garbage collector no longer walks it on each full collection, nor five times over at pytest's end (at
    20,000 cases that was 2.5 s of a stopped run's exit; --collect-only's 0.3 s at 5,000)."""
    monitor = session.config.stash.get(MONITOR, None)
    if monitor is None:
        return
    if not session.config.option.collectonly and not stop.is_controller(session.config):
        items = scheduler.share(session.config, session.items)
        cases = [case for item in items if (case := case_of(item)) is not None]
        if cases:
            _engine(monitor, session.config).start(cases)
    gc.freeze()


@pytest.fixture
def check_case(request: pytest.FixtureRequest) -> Callable[[Case], Outcome]:
    """Wait for a case's outcome and record it on the test item (it travels to the controller under xdist)."""
    monitor = request.config.stash[MONITOR]

    def check(case: Case) -> Outcome:
        outcome = _engine(monitor, request.config).outcome(case)
        request.node.user_properties.extend(outcome.properties())
        return outcome

    return check


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Once the run is stopped, a case is reported without being run: its outcome (a verdict if its request had
    finished, else the stop's class) in the reports pytest would make, without fixtures, a call or a traceback. Each
    case run in full costs milliseconds, which at thousands of cases would outlast the stop grace."""
    monitor = item.config.stash.get(MONITOR, None)
    if monitor is None or monitor.stopper.reason is None:
        return None
    outcome = _unrun(monitor, item)
    if outcome is None:
        return None
    stopped.report_unrun(item, outcome)
    return True


def _as_answered(monitor: Monitor, items: Sequence[pytest.Item]) -> Iterator[tuple[pytest.Item, pytest.Item | None]]:
    """The cases whose answers have come, in the order they came, before those still waiting: pytest's work on a case
    (judging, reporting, its pings) then goes on while later requests are in flight, instead of waiting behind a
    slower endpoint's case and piling up for the run's end. With none answered, the first case in collection
    order runs and waits for its answer inside its own protocol, where pytest-timeout bounds the wait. A test that
    waits on no answer (not a case, one that failed on its own, one not handed to the prober) runs first. Each
    comes with the next one to run, or None."""
    engine = monitor.engine
    now: deque[pytest.Item] = deque()
    waiting: dict[str, pytest.Item] = {}
    for item in items:
        case = case_of(item)
        if engine is not None and case is not None and engine.pending(case):
            waiting[case.id] = item
        else:
            now.append(item)
    while now or waiting:
        if now:
            item = now.popleft()
        else:
            assert engine is not None
            item = waiting.pop(engine.first_answered(waiting) or next(iter(waiting)))
        yield item, now[0] if now else next(iter(waiting.values()), None)


def _unrun(monitor: Monitor, item: pytest.Item) -> Outcome | None:
    """The outcome of a stopped run's case, recorded on its item; None for a test that is not a case."""
    case = case_of(item)
    if case is None:
        return None
    outcome = _engine(monitor, item.config).outcome(case)
    item.user_properties.extend(outcome.properties())
    return outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A case's time in JUnit and --durations is its duration as every output shows it (the last attempt's
    request), not how long pytest waited for it: a case waits for its own probe, which may have queued behind the
    caps. Its setup and teardown are pytest's own work, not the case's: JUnit adds them to the time, so they count
    for nothing (on a loaded machine, and while the probing process starts beside the first case, they were seen
    to add 8 ms)."""
    report = yield
    if case_of(item) is None:
        return report
    # The terminal keeps a case's three reports to the run's end: they share one copy of its keywords (a dict of a
    # dozen names) where they are equal, as they are unless a fixture marked the item meanwhile.
    keywords = item.stash.setdefault(KEYWORDS, report.keywords)
    if keywords == report.keywords:
        report.keywords = keywords
    outcome = Outcome.from_properties(item.user_properties) if report.when == "call" else None
    if outcome is not None and outcome.duration_s is not None:
        report.duration = outcome.duration_s
    elif report.when != "call":
        report.duration = 0.0
    return report


def case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec is not None else None
    return case if isinstance(case, Case) else None


def _spawn_prober(config: pytest.Config, max_concurrency: int) -> None:
    """The probing process starts first, while the endpoints file is loaded and the cases collected: its
    interpreter and aiohttp take about 0.4 s, which otherwise came before the first request. Not for a run that
    sends none (--collect-only, xdist's controller); one that cannot start now is tried again, and said, later."""
    if config.option.collectonly or stop.is_controller(config):
        return
    with contextlib.suppress(OSError):
        config.stash[SPARE] = spawn(shared(max_concurrency, _workers(config)))


def _engine(monitor: Monitor, config: pytest.Config) -> Engine:
    """The run's engine; xdist's workers split its caps. It takes the probing process started at configure."""
    spare = config.stash.get(SPARE, None)
    if spare is not None:
        del config.stash[SPARE]
    return monitor.start_engine(share=_workers(config), spare=spare)


def _workers(config: pytest.Config) -> int:
    return int(getattr(config, "workerinput", {}).get("workercount", 1))


def _budget(case: Case) -> float:
    """pytest-timeout's backstop: the case's own budget and some slack."""
    return case_budget(case) + TIMEOUT_SLACK_S


@functools.cache
def _timeout(seconds: float) -> pytest.MarkDecorator:
    """The mark of one budget, made once: thousands of cases share a few budgets, and each mark made costs 15 us."""
    return pytest.mark.timeout(seconds)


def _sets_timeouts(config: pytest.Config) -> bool:
    """Each case gets pytest-timeout's backstop from its own budget, unless the user gave --timeout (or no plugin)."""
    return config.pluginmanager.hasplugin("timeout") and config.getoption("timeout", None) is None
