"""Cronitor's Monitor API: one request that creates or updates the job monitor of every case a run selects."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from ...case import Case
from ...redact import Secret
from .._http import basic_auth
from .targets import Cronitor, Ping

__all__ = ["provisioning"]


def provisioning(api_url: str, api_key: Secret, target: Cronitor, cases: Iterable[Case], schedule: str | None) -> Ping:
    """One Monitor API request that creates or updates every case's job monitor, so a run that never comes pages."""
    monitors = []
    for case in cases:
        monitor: dict[str, object] = {
            "type": "job",
            "key": target.monitor(case),
            "name": case.id,
            "assertions": [f"metric.duration < {math.ceil(case.timeout)} seconds"],
        }
        if schedule or case.schedule:  # the schedule this run is on wins over the file's
            monitor["schedule"] = schedule or case.schedule
        if target.group:
            monitor["group"] = target.group
        monitors.append(monitor)
    url = api_url.rstrip("/") + "/monitors"
    auth = basic_auth(api_key.reveal(), "")
    body = json.dumps({"monitors": monitors}).encode()
    return Ping("cronitor-api", "PUT", Secret(url), url, body, (("content-type", "application/json"),), auth)
