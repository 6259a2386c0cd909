"""--shard I/K: this process runs a stable share of the selected cases, so that K processes run each exactly once.

A case belongs to shard sha256(case id) mod K. That depends on the case id alone, not on the order of the cases
nor on which others exist or are selected: every process computes the same partition from its own collection,
the shares of a selection (--only, -k, -m) are the selection's partition, and adding or removing a model moves
only that model. (pytest-xdist's spread of cases over the workers of one process is model_monitor/xdist_shard.py.)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["Shard", "parse", "shard_of"]

SHAPE = re.compile(r"(\d+)/(\d+)")
USAGE = "expected I/K with 0 <= I < K, e.g. 0/3 for the first of 3 shards"


def shard_of(case_id: str, count: int) -> int:
    """The shard (0 to count-1) that runs a case, from its id alone."""
    digest = hashlib.sha256(case_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, case_id: str) -> bool:
        return shard_of(case_id, self.count) == self.index


def parse(text: str) -> Shard:
    """`I/K` as given to --shard or MODEL_MONITOR_SHARD; ValueError says the expected shape."""
    match = SHAPE.fullmatch(text.strip())
    if match is None:
        raise ValueError(USAGE)
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise ValueError(USAGE)
    return Shard(index, count)
