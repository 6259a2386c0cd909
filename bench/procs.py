"""Run a command and measure it: wall time, and peak RSS summed over its whole process tree (read from /proc)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Measured:
    """One finished command: exit code, wall time from spawn to exit, peak tree RSS, and its output files."""

    returncode: int
    wall_s: float
    peak_rss_bytes: int
    peak_processes: int
    stdout: str
    stderr: str


def _parents() -> dict[int, int]:
    """pid -> ppid for every process now alive."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        out[int(name)] = int(fields[1])
    return out


def tree(root: int) -> list[int]:
    """The root and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


class PeakRss(threading.Thread):
    """Samples a process tree's summed RSS until stopped; keeps the peak."""

    def __init__(self, root: int, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(name="peak-rss", daemon=True)
        self.root, self.interval = root, interval
        self.peak, self.processes = 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            pids = self.sample()
            # A tree of hundreds of processes (the curl row) costs ~10 ms a sample: sample it less often.
            if self._stop_event.wait(self.interval if pids < 50 else 2 * self.interval):
                return

    def sample(self) -> int:
        pids = tree(self.root)
        total = sum(rss_bytes(pid) for pid in pids)
        self.peak = max(self.peak, total)
        self.processes = max(self.processes, len(pids))
        return len(pids)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(
    command: Sequence[str], *, cwd: Path, logs: Path, env: dict[str, str] | None = None, timeout: float = 900.0
) -> Measured:
    """Run `command` to completion, output to `logs`.out/.err, sampling its tree's memory meanwhile."""
    out_path, err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        sampler = PeakRss(proc.pid)
        sampler.start()
        try:
            returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            returncode = proc.wait()
        wall = time.monotonic() - start
        sampler.stop()
    return Measured(
        returncode=returncode,
        wall_s=wall,
        peak_rss_bytes=sampler.peak,
        peak_processes=sampler.processes,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
    )
