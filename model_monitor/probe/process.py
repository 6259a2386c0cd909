"""The engine's side of the probing process (prober.py): start it, write jobs to it, read what it sends on a
thread of its own, and end it."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .wire import WireError, read_frame

__all__ = [
    "DESCRIPTOR_RESERVE",
    "DESCRIPTOR_ROOM",
    "ProberProcess",
    "descriptor_cap",
    "end_spare",
    "grow_descriptor_table",
    "spawn",
]

PROBER = "model_monitor.probe.prober"
# File descriptors kept for what is not a probe: the pipes to the engine, the interpreter's own files.
DESCRIPTOR_RESERVE = 24
DESCRIPTOR_ROOM = 4096  # descriptors the prober's table holds from its start (grow_descriptor_table)
EXIT_WAIT_S = 5.0  # how long a closing engine waits for its prober to finish before it kills it


class ProberProcess:
    """The probing process, started on first use and again after finish(). `take` gets each frame it sends, on
    the reader thread (a WireError from it means the prober cannot be trusted any more); `ended` gets why one
    ended that finish(), close() or kill() did not end."""

    def __init__(
        self,
        max_concurrency: int,
        take: Callable[[dict[str, Any], bytes], None],
        ended: Callable[[str], None],
        spare: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self._max_concurrency = max_concurrency
        self._spare = spare  # one spawn() started ahead, for the same cap: the first start takes it
        self._take, self._ended = take, ended
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._writing = threading.RLock()  # `ended` may come back to finish() from inside send()
        self._let_go: set[int] = set()  # the pids we ended or told to end
        self._killed = False  # by kill(): no prober is started again

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
            if process is None:
                return
            with contextlib.suppress(OSError, ValueError):
                process.stdin.write(data)  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]

    def finish(self) -> None:
        """Let the prober end once it has nothing to do (it holds memory a run's end could use): closing its
        stdin ends it; the next send() starts another."""
        with self._writing:
            process = self._process
            if process is not None and process.pid not in self._let_go:
                self._let_go.add(process.pid)
                with contextlib.suppress(OSError, ValueError):
                    process.stdin.close()  # type: ignore[union-attr]

    def kill(self) -> None:
        """End the prober at once (from a signal handler too): its requests end with it, and none is started
        after it (a send that was under way when the stop came would otherwise start another)."""
        self._killed = True
        self._drop_spare()
        process = self._process
        if process is not None and process.returncode is None:
            self._let_go.add(process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Close the prober's stdin, which lets it close its pools and exit; one that does not in time is killed."""
        self._drop_spare()
        process = self._process
        if process is None:
            return
        self.finish()
        try:
            process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
        if self._reader is not None:
            self._reader.join(EXIT_WAIT_S)

    def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            end_spare(spare)

    def _start(self) -> subprocess.Popen[bytes] | None:
        """The prober, started now if there is none; None when it cannot start (said to `ended`) or was killed."""
        if self._killed:
            return None
        # One that ended on its own (its end was said to `ended`) is replaced too: a send to it would be lost, and its
        # case would wait for an answer nobody will send.
        if self._process is None or self._process.pid in self._let_go or self._process.poll() is not None:
            spare, self._spare = self._spare, None
            try:
                self._process = spare if spare is not None and spare.poll() is None else spawn(self._max_concurrency)
            except OSError as exc:  # no memory, no descriptors, no interpreter
                self._ended(f"the probing process could not start ({exc.strerror or type(exc).__name__})")
                return None
            self._reader = threading.Thread(
                target=self._read, args=(self._process,), name="model-monitor-prober", daemon=True
            )
            self._reader.start()
        return self._process

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        """Hand on each frame until the prober's stdout ends. A frame that cannot be read ends the prober."""
        assert process.stdout is not None
        why = None
        try:
            while (got := read_frame(process.stdout)) is not None:
                self._take(*got)
        except Exception as exc:  # whatever handing it on raised, the prober can no longer be trusted
            why = (
                f"the probing process sent {exc}"
                if isinstance(exc, WireError | OSError)
                else (f"the probing process sent what could not be read ({type(exc).__name__})")
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)  # not kill(): this end is news
        code = process.wait()
        if why is not None or process.pid not in self._let_go:
            self._ended(why or f"the probing process exited ({_exit_status(code)})")


def _exit_status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def grow_descriptor_table(max_concurrency: int) -> None:
    """Give this process's descriptor table room for every connection its requests may hold, now, while it has
    one thread. Linux doubles the table when a new descriptor does not fit, and when threads share it, each
    doubling waits for an RCU grace period: 10-20 ms in which the loop stops with every request in flight timed
    through it. Sockets open by the hundred in a run's first waves (a wave's new connections open before the last
    wave's close), so the first two waves' tail was the table growing: at N=500 their p99 timing error was 41-69 ms,
    and 28-37 (the floor's 27-31) with the room made first. A few thousand descriptors are some 32 KB."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(DESCRIPTOR_ROOM, 4 * max_concurrency) - 1
    if soft != resource.RLIM_INFINITY:
        highest = min(highest, soft - 1)
    if highest > 2:
        os.dup2(0, highest, inheritable=False)
        os.close(highest)


def descriptor_cap() -> int | None:
    """The most requests this process can hold open at once: its open-file limit (ulimit -n) less what is open
    already and the reserve; None when there is no limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: count only the reserve
        open_now = 0
    return max(1, soft - open_now - DESCRIPTOR_RESERVE)


def spawn(max_concurrency: int) -> subprocess.Popen[bytes]:
    """A probing process for at most `max_concurrency` requests at once; OSError when it cannot start."""
    # It imports this very package, wherever it was imported from: its root is searched last, so that nothing
    # there can stand in for a module of the standard library.
    root = str(Path(__file__).resolve().parents[2])
    start = f"import runpy, sys; sys.path.append({root!r}); runpy.run_module({PROBER!r}, run_name='__main__')"
    return subprocess.Popen(
        [sys.executable, "-c", start, str(max_concurrency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # it prints nothing; a traceback there could carry a URL's key
    )


def end_spare(spare: subprocess.Popen[bytes]) -> None:
    """A spare no engine took (the run ended before its cases, or never had any): it holds no request."""
    with contextlib.suppress(OSError):
        spare.kill()
    spare.wait()
