"""The xdist share: each worker prefetches exactly the cases the shard scheduler will send it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from model_monitor.scheduler import FLAG, ShardScheduling, share

ITEMS = [f"case-{i}" for i in range(10)]


def worker(index: int, count: int, sharded: bool = True) -> Any:
    return SimpleNamespace(workerinput={"workerid": f"gw{index}", "workercount": count, FLAG: sharded})


@pytest.mark.parametrize("count", [1, 2, 3, 4, 10, 11])
def test_the_workers_shares_are_disjoint_and_cover_every_item_in_order(count: int) -> None:
    shares = [share(worker(i, count), ITEMS) for i in range(count)]
    assert sorted(item for s in shares for item in s) == sorted(ITEMS)
    assert sum(len(s) for s in shares) == len(ITEMS)
    assert all(s == sorted(s, key=ITEMS.index) for s in shares)
    assert shares[0][:2] == ITEMS[0 : 2 * count : count][:2], "worker gwK takes every index i with i % N == K"


def test_the_only_process_or_an_unsharded_worker_runs_everything() -> None:
    assert share(SimpleNamespace(), ITEMS) == ITEMS
    assert share(worker(1, 2, sharded=False), ITEMS) == ITEMS


def test_a_worker_beyond_the_count_gets_nothing() -> None:
    assert share(worker(3, 3), ITEMS) == []


class Node:
    """What the scheduler uses of xdist's WorkerController."""

    def __init__(self, worker_id: str) -> None:
        self.gateway = SimpleNamespace(id=worker_id)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += indices

    def shutdown(self) -> None:
        self.shutting_down = True


def test_a_case_put_back_goes_to_a_replacement_worker() -> None:
    """After the first distribution, LoadScheduling's own takes over (a case put back by a plugin, as
    pytest-rerunfailures does after a crash, sent to the worker that replaced the dead one): it needs the
    maxschedchunk that LoadScheduling's first distribution would have set."""
    config = SimpleNamespace(getvalue=lambda name: ["2*popen"], getoption=lambda name: None)
    sched = ShardScheduling(config)  # type: ignore[arg-type]
    nodes = [Node("gw0"), Node("gw1")]
    for node in nodes:
        sched.add_node(node)  # type: ignore[arg-type]
        sched.add_node_collection(node, ITEMS)  # type: ignore[arg-type]
    sched.schedule()
    assert [node.sent for node in nodes] == [list(range(0, 10, 2)), list(range(1, 10, 2))]
    replacement = Node("gw2")
    sched.add_node(replacement)  # type: ignore[arg-type]
    sched.add_node_collection(replacement, ITEMS)  # type: ignore[arg-type]
    sched.mark_test_pending(ITEMS[3])
    sched.schedule()
    assert replacement.sent == [3]
