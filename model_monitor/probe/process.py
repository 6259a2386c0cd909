"""The engine's side of the probing process (prober.py): start it, write jobs to it, read what it sends on a
thread of its own, and end it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .wire import WireError, read_frame

__all__ = ["ProberProcess"]

PROBER = "model_monitor.probe.prober"
EXIT_WAIT_S = 5.0  # how long a closing engine waits for its prober to finish before it kills it


class ProberProcess:
    """One probing process, started on first use. `take` gets each frame it sends, on the reader thread (a
    WireError from it means the prober cannot be trusted any more); `ended` gets, once, why it ended before
    close() or kill() asked it to."""

    def __init__(
        self, max_concurrency: int, take: Callable[[dict[str, Any], bytes], None], ended: Callable[[str], None]
    ) -> None:
        self._max_concurrency = max_concurrency
        self._take, self._ended = take, ended
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._writing = threading.Lock()
        self._closing = False

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        with self._writing:
            self._start()

    def send(self, data: bytes) -> None:
        """Write to the prober; one that is gone is the reader's to report."""
        with self._writing:
            process = self._start()
            with contextlib.suppress(OSError, ValueError):
                process.stdin.write(data)  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]

    def kill(self) -> None:
        """End the prober at once (from a signal handler too): its requests end with it."""
        self._closing = True
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Close the prober's stdin, which lets it close its pools and exit; one that does not in time is killed."""
        process = self._process
        if process is None:
            return
        self._closing = True
        with contextlib.suppress(OSError, ValueError), self._writing:
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
        if self._reader is not None:
            self._reader.join(EXIT_WAIT_S)

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            package_root = str(Path(__file__).resolve().parents[2])  # the prober imports this very package
            path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
            self._process = subprocess.Popen(
                [sys.executable, "-m", PROBER, str(self._max_concurrency)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # it prints nothing; a traceback there could carry a URL's key
                env={**os.environ, "PYTHONPATH": path},
            )
            self._reader = threading.Thread(target=self._read, name="model-monitor-prober", daemon=True)
            self._reader.start()
        return self._process

    def _read(self) -> None:
        """Hand on each frame until the prober's stdout ends. A frame that cannot be read ends the prober."""
        process = self._process
        assert process is not None and process.stdout is not None
        why = None
        try:
            while (got := read_frame(process.stdout)) is not None:
                self._take(*got)
        except (WireError, OSError) as exc:
            why = f"the probing process sent {exc}"
            self.kill()
            self._closing = False  # killed for what it sent: that is news
        code = process.wait()
        if not self._closing:
            self._ended(why or f"the probing process exited ({_exit_status(code)})")


def _exit_status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
