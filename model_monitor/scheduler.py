"""Under pytest-xdist, give each worker a fixed share of the cases up front, so it can probe its share at once.

xdist's default `load` scheduling hands out tests a few at a time, so a worker cannot know which cases it will
run and would have to probe them one by one. With this scheduler worker gwK runs every case whose index i has
i % N == K, sent in one batch; the worker computes the same share and prefetches exactly those.

A worker that dies (SIGKILL, the OOM killer) had its whole share in flight: every case it had not reported fails
here as crashed (or, if the run was stopped, with the stop's class: the controller kills a worker still busy when
the stop grace ends) (reporters/verdicts.py reads xdist's words), and none is sent again. xdist would report the first
and hand the rest to a replacement, probing them twice, or, with restarts off, leave them unreported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import pytest
from xdist.scheduler import LoadScheduling

from .outcome import Outcome
from .reporters.verdicts import outcome_of
from .stop import STOPPER

__all__ = ["FLAG", "ShardScheduling", "pytest_configure_node", "pytest_xdist_make_scheduler", "share"]

T = TypeVar("T")
FLAG = "model_monitor_shard"


def _index(worker_id: str) -> int:
    return int(worker_id.removeprefix("gw"))


class ShardScheduling(LoadScheduling):
    """LoadScheduling whose first distribution is every worker's whole share, fixed by its index."""

    collection: list[str] | None  # LoadScheduling's: the node ids every worker collected, once they agree

    def schedule(self) -> None:
        if self.collection is not None or not self._check_nodes_have_same_collection():
            super().schedule()
            return
        self.collection = next(iter(self.node2collection.values()))
        # LoadScheduling's own first distribution sets this, and its later ones need it: a case put back with
        # mark_test_pending (as pytest-rerunfailures does after a crash) sent to a worker that replaced a dead one.
        if self.config.getoption("maxschedchunk") is None:
            self.maxschedchunk = len(self.collection)
        count = len(self.nodes)
        for node in self.nodes:
            share = list(range(_index(node.gateway.id) % count, len(self.collection), count))
            if share:
                self.node2pending[node].extend(share)
                node.send_runtest_some(share)
        self.pending[:] = []
        for node in self.nodes:
            node.shutdown()

    def remove_node(self, node: Any) -> str | None:
        """A worker is gone: the cases it still held, if it died, are reported here; none is left for xdist."""
        for index in self.node2pending.pop(node):
            assert self.collection is not None
            _report_crash(self.config, node, self.collection[index])
        return None


def _report_crash(config: pytest.Config, node: Any, nodeid: str) -> None:
    """A case whose worker died, reported as xdist reports its crash item, then closed by a teardown report that
    carries the case's outcome as properties (JUnit writes an item's properties when its teardown comes)."""
    fspath = nodeid.split("::")[0]
    said = f"worker {node.gateway.id!r} crashed while running {nodeid!r}"
    crash = pytest.TestReport(nodeid, (fspath, None, fspath), {}, "failed", said, "???")  # type: ignore[arg-type]
    crash.user_properties = _outcome(config, node, crash)  # for the summary, which reads the crash report
    close = pytest.TestReport(
        nodeid, (fspath, None, fspath), {}, "passed", None, "teardown", user_properties=crash.user_properties
    )
    for report in (crash, close):
        report.node = node  # type: ignore[attr-defined]  # as xdist marks its reports: JUnit pairs them by it
        config.hook.pytest_runtest_logreport(report=report)


def _outcome(config: pytest.Config, node: Any, crash: pytest.TestReport) -> list[tuple[str, object]]:
    """A dead worker's case fails as crashed; in a stopped run, whose grace ended with the worker still busy, as
    the stop's class (interrupted, timeout), as its other unjudged cases do."""
    stopper = config.stash.get(STOPPER, None)
    if stopper is None or stopper.reason is None:
        return outcome_of(crash).properties()
    error_class, why = stopper.reason
    said = f"{error_class}: {why}; worker {node.gateway.id} was ended at the end of the stop grace"
    return Outcome(passed=False, reason=said, error_class=error_class.value).properties()


def _applies(config: pytest.Config) -> bool:
    dist: str = config.getvalue("dist")
    return dist == "load"


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScheduling | None:
    return ShardScheduling(config, log) if _applies(config) else None


def pytest_configure_node(node: Any) -> None:
    node.workerinput[FLAG] = _applies(node.config)


def share(config: pytest.Config, items: Sequence[T]) -> list[T]:
    """The items this process will run: all of them, or on a sharded xdist worker only its share."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput or not workerinput.get(FLAG):
        return list(items)
    index, count = _index(workerinput["workerid"]), int(workerinput["workercount"])
    return list(items[index::count]) if index < count else []
