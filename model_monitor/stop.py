"""An orderly stop: a signal or the run deadline fails what is left, and the run still reports all of it.

Kubernetes stops a job with SIGTERM (activeDeadlineSeconds, eviction, a node drain), then SIGKILL after the pod's
grace period; a cancelled CI job and Ctrl-C send SIGINT; a closed terminal sends SIGHUP; SIGQUIT asks to quit. All
four stop alike. The handlers are in place before the first request of any kind (the discovery listings included),
and the run deadline bounds those too. On the first signal whatever is under way (listings, probes) stops: a case whose
request had finished keeps its verdict, every other one fails as `interrupted`, and the run goes on as usual, only
fast: verdicts, pings, the summary and JUnit are all written, within `--stop-grace` seconds, and the exit code is
pytest's 2 (interrupted). A second signal ends the process at once, by that signal. The run deadline does the same
with `timeout` (exit 1: the cases failed). Under xdist the controller passes the signal on to its workers, which stop
the same way and report to it; a second signal, or workers still busy when the grace runs out, kill them.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol

import pytest

from .errors import ErrorClass

__all__ = ["RUN_STARTED", "STOPPED", "STOPPER", "WRITING_SHARE", "Role", "Stopper", "for_run", "is_controller"]

# Of the stop grace: the part a stopped run keeps, after its last pings, to write its reports and exit.
WRITING_SHARE = 0.3
RUN_STARTED = "model_monitor_run_started"  # workerinput key: the controller's start, for the run deadline
STOPPED = "model_monitor_stopped"  # workerinput key: why the controller's run was stopped before its workers started

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
Role = Literal["single", "controller", "worker"]


STOPPER = pytest.StashKey["Stopper"]()  # the run's, in place before any request (the plugin's configure sets it)


class Stoppable(Protocol):
    def stop(self, error_class: ErrorClass, why: str) -> None: ...


class Stopper:
    """Turns a signal or the run deadline into one stop() of what is under way (the listings, then the engine),
    whenever it comes (even before either exists), and bounds what the stopped run may still take."""

    def __init__(self, role: Role, started: float, grace: float) -> None:
        self.role = role
        self.started = started  # Unix time the run started (the controller's, under xdist)
        self.grace = grace
        self.signal_name: str | None = None
        self.reason: tuple[ErrorClass, str] | None = None
        self._stopped_at: float | None = None  # monotonic
        self._attached: list[Stoppable] = []
        self._previous: dict[int, Any] = {}
        self._timers: list[threading.Timer] = []

    def install(self) -> None:
        """Take the stopping signals (only the main thread may)."""
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def arm(self, deadline: float | None) -> None:
        """Stop the run `deadline` seconds after it started."""
        if deadline is not None:
            self._later(
                deadline - (time.time() - self.started),
                self._stop,
                ErrorClass.TIMEOUT,
                f"the run deadline of {deadline:g} s passed",
            )

    def attach(self, stoppable: Stoppable) -> None:
        """Stop this one too, now if the run was stopped already."""
        self._attached.append(stoppable)
        if self.reason is not None:
            stoppable.stop(*self.reason)

    def stopped_elsewhere(self, error_class: ErrorClass, why: str) -> None:
        """The stop the xdist controller made before this worker started (during discovery)."""
        self._stop(error_class, why)

    def grace_left(self, keep: float = 0.0) -> float:
        """What is left of the stop grace but the share `keep` of it (unbounded while the run has not been stopped)."""
        if self._stopped_at is None:
            return math.inf
        return max(0.0, self.grace * (1 - keep) - (time.monotonic() - self._stopped_at))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None:
            if self.role != "worker":  # a worker may get a signal twice (its group's, and the one passed on)
                self._exit_now(signum)
            return
        self.signal_name = name
        self._stop(ErrorClass.INTERRUPTED, f"run interrupted by {name} after {time.time() - self.started:.1f} s")
        if self.role == "controller":
            _signal_children(signum)  # the same signal, so that every case names what stopped the run
            self._later(self.grace, _signal_children, signal.SIGKILL)  # workers still busy then are ended

    def _stop(self, error_class: ErrorClass, why: str) -> None:
        if self.reason is None:
            self.reason, self._stopped_at = (error_class, why), time.monotonic()
        for stoppable in self._attached:
            stoppable.stop(*self.reason)

    def _later(self, seconds: float, action: Any, *args: Any) -> None:
        timer = threading.Timer(max(0.0, seconds), action, args)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    @staticmethod
    def _exit_now(signum: int) -> None:
        _signal_children(signal.SIGKILL)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _signal_children(sig: int) -> None:
    """Signal this process's children (xdist's workers). Linux's /proc lists them; elsewhere a signal to the
    process group reaches the workers anyway."""
    for pid in _children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _children() -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                pids += [int(pid) for pid in (task / "children").read_text().split()]
    return pids


def for_run(config: pytest.Config, run_deadline: float | None, stop_grace: float) -> Stopper:
    """The stopping signals and the run deadline, counted from the controller's start under xdist; a worker of a
    controller stopped already (during discovery) starts stopped."""
    workerinput = getattr(config, "workerinput", {})
    role: Role = "worker" if hasattr(config, "workerinput") else "controller" if is_controller(config) else "single"
    stopper = Stopper(role, float(workerinput.get(RUN_STARTED, time.time())), stop_grace)
    stopper.install()
    if (stopped := workerinput.get(STOPPED)) is not None:
        stopper.stopped_elsewhere(ErrorClass(stopped[0]), stopped[1])
    stopper.arm(run_deadline)  # a controller's bounds discovery and the last pings: workers stop themselves
    return stopper


def is_controller(config: pytest.Config) -> bool:
    """The xdist controller runs no cases itself; its workers do."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")
