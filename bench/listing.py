"""The listing row: a gateway whose GET /v1/models lists 400,000 ids (about 8 MB, under the monitor's 8 MiB reply
cap), one endpoint with `discover: true`. max_discovered (2,000 by default) stops the fan-out: the row prints the
time and peak RSS of `--collect-only` and of the full run, whose one case, the discovery case, fails and says how
many models were listed."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.openai_server import FakeOpenAI

from .procs import Measured, measure
from .rows import ROOT, child_env, loadavg

IDS = 400_000
SAID = re.compile(r"lists [\d,]+ models[^\n]*?more than max_discovered [\d,]+")  # the discovery case's reason


@dataclass(frozen=True)
class ListingRow:
    collect: Measured
    run: Measured
    probes: int  # requests other than the listing: 0 when the cap held
    listing_bytes: int
    load: str  # the 1-minute load average as the row started


def run(work: Path) -> ListingRow:
    """Both commands against a FakeOpenAI in this process (it builds the listing per request, in about a second)."""
    work.mkdir(parents=True, exist_ok=True)
    ids = tuple(f"m-{n:06d}" for n in range(IDS))
    with FakeOpenAI(models=ids, listing="bare") as gateway:
        path = work / "listing.yaml"
        path.write_text(
            yaml.safe_dump({"endpoints": [{"name": "gateway", "url": gateway.url, "discover": True}]}), encoding="utf-8"
        )
        checks, endpoints = str(ROOT / "checks"), f"--endpoints={path}"
        command = [sys.executable, "-m", "pytest", checks, endpoints, "-p", "no:cacheprovider"]
        load = loadavg()
        collect = measure([*command, "-q", "--collect-only"], cwd=ROOT, logs=work / "listing-collect", env=child_env())
        full = measure([*command, "-rA"], cwd=ROOT, logs=work / "listing-run", env=child_env())
        probes = sum(r.path != "/v1/models" for r in gateway.requests)
    size = len(json.dumps({"object": "list", "data": [{"id": i} for i in ids]}))  # the body the gateway sent
    return ListingRow(collect, full, probes, size, load)


def describe(row: ListingRow) -> list[str]:
    mb = 1024 * 1024
    said = SAID.search(row.run.stdout)
    return [
        f"listing: one gateway listing {IDS:,} ids ({row.listing_bytes / mb:.1f} MiB), load {row.load} as it started",
        f"  --collect-only: {row.collect.wall_s:.2f} s, peak RSS {row.collect.peak_rss_bytes / mb:.0f} MB "
        f"(exit {row.collect.returncode})",
        f"  full run: {row.run.wall_s:.2f} s, peak RSS {row.run.peak_rss_bytes / mb:.0f} MB, {row.probes} probes "
        f"(exit {row.run.returncode}): {said.group(0) if said else 'the discovery case did not say how many'}",
    ]
