"""The benchmark's server as seen from the benchmark: start it in its own process, clear and read its records."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the environment


@dataclass(frozen=True)
class Record:
    model: str | None
    path: str
    received: float  # the server's monotonic clock
    duration: float | None
    headers_s: float | None = None  # a stream's: seconds from receiving it to sending its headers
    first_event_s: float | None = None  # and to sending its first event


class Target:
    """`python -m bench.server` as a child process; closing its stdin stops it."""

    def __init__(self, latency: float, root: Path) -> None:
        self.latency, self.root = latency, root
        self.url = ""
        self.pid = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.server", "--latency", str(self.latency)],
            cwd=self.root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.__exit__(None, None, None)
            raise RuntimeError("the benchmark server did not start (see its output above)")
        self.pid = self._proc.pid
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def clear(self) -> None:
        self._call("POST", "/bench/clear")

    def records(self) -> list[Record]:
        """Every request answered since the last clear (waits until none is in flight)."""
        data = self._call("GET", "/bench/records")
        return [
            Record(r["model"], r["path"], r["received"], r["duration"], r.get("headers_s"), r.get("first_event_s"))
            for r in data["records"]
        ]

    def _call(self, method: str, path: str) -> dict:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with _NO_PROXY.open(request, timeout=30) as response:
            return json.load(response)
