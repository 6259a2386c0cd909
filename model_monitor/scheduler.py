"""Under pytest-xdist, give each worker a fixed share of the cases up front, so it can probe its share at once.

xdist's default `load` scheduling hands out tests a few at a time, so a worker cannot know which cases it will
run and would have to probe them one by one. With this scheduler worker gwK runs every case whose index i has
i % N == K, sent in one batch; the worker computes the same share and prefetches exactly those. A worker that
gets a case outside its share (one re-sent after another worker crashed) simply probes it when it runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import pytest
from xdist.scheduler import LoadScheduling

__all__ = ["FLAG", "pytest_configure_node", "pytest_xdist_make_scheduler", "share"]

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
        count = len(self.nodes)
        for node in self.nodes:
            share = list(range(_index(node.gateway.id) % count, len(self.collection), count))
            if share:
                self.node2pending[node].extend(share)
                node.send_runtest_some(share)
        self.pending[:] = []
        for node in self.nodes:
            node.shutdown()


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
