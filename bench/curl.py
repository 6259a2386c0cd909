"""The original chart's approach: one curl per model, all started at once, each timing itself in whole seconds.

The chart made one CronJob per endpoint/model; on schedule each started a pod whose shell script did
`start=$(date +%s); curl ...; end=$(date +%s); duration=$((end-start))` and reported that duration. Here every
case gets its own `sh -c` running that same script (the Cronitor ping left out, as it is in the other rows),
all forked at once by one launcher, as the CronJobs' pods would start together.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .suite import Request

# $1 case id, $2 URL, $3 file holding the request body.
POD_SCRIPT = r"""start=$(date +%s)
status=$(curl -s -N -o /dev/null -w '%{http_code}' --max-time 60 -X POST \
  -H 'Content-Type: application/json' --data-binary @"$3" "$2")
end=$(date +%s)
duration=$((end-start))
echo "$1 $status $duration"
"""


def write_launcher(requests: tuple[Request, ...], folder: Path) -> Path:
    """A shell script that starts one pod script per case in the background, then waits for all of them."""
    bodies = folder / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    lines = ["#!/bin/sh"]
    for i, request in enumerate(requests):
        body = bodies / f"{i:04d}.json"
        body.write_text(json.dumps(request.body, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        args = " ".join(shlex.quote(a) for a in (request.case, request.url, str(body)))
        lines.append(f"sh -c {shlex.quote(POD_SCRIPT)} pod {args} &")
    lines.append("wait")
    launcher = folder / "launch.sh"
    launcher.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return launcher


def parse(stdout: str) -> dict[str, tuple[int, float]]:
    """case id -> (HTTP status, duration in whole seconds) from the pods' output lines."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].lstrip("-").isdigit():
            out[parts[0]] = (int(parts[1]), float(parts[2]))
    return out
