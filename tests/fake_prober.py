"""A stand-in for the probing process (`python -m tests.fake_prober CAP`) that answers the engine as a broken one
would, as FAKE_PROBER says: `garbage` (bytes that are no frame), `misshapen` (a reply frame per job, of the
wrong shape), `overflow` (one whose start is 10**400) or `nan` (one whose duration is NaN). Either way it then
waits for its stdin to end, as the real one does; `dies` exits at once."""

from __future__ import annotations

import math
import os
import sys

from model_monitor.probe.wire import frame, read_frame


def main() -> None:
    mode = os.environ["FAKE_PROBER"]
    out = sys.stdout.buffer
    if mode == "dies":
        sys.exit(3)
    if mode == "garbage":
        out.write(b"\xff" * 64)
        out.flush()
    while (got := read_frame(sys.stdin.buffer)) is not None:
        meta, _ = got
        if mode == "misshapen" and meta["kind"] == "probe":
            out.write(frame({"kind": "done", "id": meta["id"], "attempts": [], "status": "200"}))
            out.flush()
        if mode == "overflow" and meta["kind"] == "probe":
            out.write(frame({"kind": "failed", "id": meta["id"], "attempts": [], "started": 10**400}))
            out.flush()
        if mode == "nan" and meta["kind"] == "probe":  # JSON's NaN, which Python's json reads as a float
            done = {"kind": "done", "id": meta["id"], "attempts": [], "started": 1.0, "ended": 2.0, "status": 200}
            out.write(frame({**done, "headers": [], "duration": math.nan, "ttfb": None, "chunks": None}))
            out.flush()


if __name__ == "__main__":
    main()
