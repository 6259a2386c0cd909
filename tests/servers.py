"""Server processes that tests start on 127.0.0.1 (LiteLLM, llama.cpp, infinity): bounded start, certain stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

START_DEADLINE_S = 60


def free_port() -> int:
    """A loopback port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LoopbackServer:
    """A server process this test run started; its output goes to `log`."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def loopback_server(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    ready_path: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    deadline_s: float = START_DEADLINE_S,
) -> Iterator[LoopbackServer]:
    """Start `command`, wait until GET ready_path answers 200 (bounded), yield, and always stop it and its children."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,  # its own process group, so stopping it stops its workers too
        )
    server = LoopbackServer(name, url, process, log)
    try:
        _wait_ready(server, ready_path, headers or {}, deadline_s)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: LoopbackServer, path: str, headers: Mapping[str, str], deadline_s: float) -> None:
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < deadline_s:
        if server.process.poll() is not None:
            pytest.fail(
                f"{server.name} exited with {server.process.returncode} before it was ready:\n{server.log_tail()}"
            )
        try:
            response = httpx.get(server.url + path, headers=dict(headers), timeout=2)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    pytest.fail(f"{server.name} not ready within {deadline_s:g} s (GET {path}: {last}):\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group, SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
