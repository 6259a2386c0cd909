"""The xdist share: each worker prefetches exactly the cases the shard scheduler will send it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from model_monitor.scheduler import FLAG, share

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
