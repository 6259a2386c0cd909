"""The discovery row: a gateway that lists 500 models, one endpoint with `discover: true`; the time of
`--collect-only` (the listing and 500 cases made from it, no probe) and of a full run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.openai_server import FakeOpenAI

from .procs import Measured, measure
from .rows import ROOT, checks_command, child_env

MODELS = 500
MAX_CONCURRENCY = 100  # the endpoint's cap: 500 cases in 5 waves of the server's latency


@dataclass(frozen=True)
class DiscoveryRow:
    collect: Measured
    run: Measured
    listings: int  # GET /v1/models requests the gateway answered over both commands
    cases: int  # requests other than the listing in the full run


def run(work: Path, latency: float) -> DiscoveryRow:
    """Both commands against a FakeOpenAI in this process (it only waits while they run)."""
    work.mkdir(parents=True, exist_ok=True)
    ids = tuple(f"gateway-model-{n:03d}" for n in range(MODELS))
    with FakeOpenAI(models=ids, latency=latency) as gateway:
        path = work / "discovery.yaml"
        endpoint = {"name": "gateway", "url": gateway.url, "discover": True, "max_concurrency": MAX_CONCURRENCY}
        path.write_text(yaml.safe_dump({"endpoints": [endpoint]}, sort_keys=False), encoding="utf-8")
        command = checks_command(path, "-q", "--max-concurrency", str(MAX_CONCURRENCY))
        collect = measure([*command, "--collect-only"], cwd=ROOT, logs=work / "discovery-collect", env=child_env())
        full = measure(command, cwd=ROOT, logs=work / "discovery-run", env=child_env())
        listings = sum(r.path == "/v1/models" for r in gateway.requests)
    return DiscoveryRow(collect, full, listings, len(gateway.requests) - listings)


def describe(row: DiscoveryRow, latency: float) -> list[str]:
    mb = 1024 * 1024
    return [
        f"discovery: a gateway listing {MODELS} models, server latency {latency:g} s, "
        f"max_concurrency {MAX_CONCURRENCY}",
        f"  --collect-only: {row.collect.wall_s:.2f} s (exit {row.collect.returncode})",
        f"  full run: {row.run.wall_s:.2f} s, peak RSS {row.run.peak_rss_bytes / mb:.0f} MB, {row.cases} probes "
        f"(exit {row.run.returncode}); {row.listings} listings over both commands",
    ]
