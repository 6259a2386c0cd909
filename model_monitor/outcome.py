"""What a case found, as plain data: the verdict, its attempts and metrics, and their encoding as pytest
user_properties (the form in which they travel from xdist workers and land in JUnit XML).

The bottom of the data flow: it imports nothing of ours, so reporters read outcomes without the engine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROPERTY_PREFIX", "Attempt", "Outcome", "property_name"]

PROPERTY_PREFIX = "model_monitor."


def property_name(name: str) -> str:
    """`model_monitor.<name>`, one string for the whole run: a case's properties stay on its reports and in JUnit
    until the run ends, and a copy of each of their names per case held 4 MB at 5,000 cases."""
    return sys.intern(PROPERTY_PREFIX + name)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a case: None for error_class means it passed."""

    error_class: str | None
    status_code: int | None
    duration_s: float

    def __str__(self) -> str:
        what = self.error_class or "ok"
        return f"{what}{f' {self.status_code}' if self.status_code else ''} {self.duration_s:.3f}s"

    @classmethod
    def parse(cls, text: str) -> Attempt:
        """The attempt back from its str() (how attempts travel as one user property): `server_error 503 0.054s`."""
        what, *status, duration = text.split()
        return cls(None if what == "ok" else what, int(status[0]) if status else None, float(duration.rstrip("s")))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a case found: the verdict, a one-line reason, the measured duration and metrics. Plain data only."""

    passed: bool
    reason: str
    error_class: str | None = None
    duration_s: float | None = None  # the last attempt's request, sending to last byte
    status_code: int | None = None
    attempts: tuple[Attempt, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    started_at: float | None = None  # Unix time the first attempt was sent
    ended_at: float | None = None  # Unix time the last attempt ended (or the run stopped waiting for it)
    degraded: tuple[str, ...] = ()  # why a passing case is degraded: a retry, a warning threshold crossed

    @property
    def elapsed_s(self) -> float | None:
        """The case's total time over every attempt and the waits between them; `duration_s` is the last attempt's
        request alone, the one duration every output shows."""
        return None if self.started_at is None or self.ended_at is None else self.ended_at - self.started_at

    def properties(self) -> list[tuple[str, Any]]:
        """As pytest user_properties: they travel from xdist workers and land in JUnit XML."""
        props: list[tuple[str, Any]] = [
            ("verdict", "pass" if self.passed else "fail"),
            ("reason", self.reason),
            ("class", self.error_class or ""),
            ("duration_s", None if self.duration_s is None else round(self.duration_s, 6)),
            ("status_code", self.status_code),
            ("attempts", "; ".join(map(str, self.attempts))),
            ("started_at", self.started_at),
            ("ended_at", self.ended_at),
            ("degraded", "; ".join(self.degraded) or None),
            *((f"metric.{name}", value) for name, value in self.metrics.items()),
        ]
        return [(property_name(name), value) for name, value in props if value is not None]

    @classmethod
    def from_properties(cls, properties: Iterable[tuple[str, Any]]) -> Outcome | None:
        props = {k[len(PROPERTY_PREFIX) :]: v for k, v in properties if k.startswith(PROPERTY_PREFIX)}
        if "verdict" not in props:
            return None
        return cls(
            passed=props["verdict"] == "pass",
            reason=props.get("reason", ""),
            error_class=props.get("class") or None,
            duration_s=props.get("duration_s"),
            status_code=props.get("status_code"),
            attempts=tuple(Attempt.parse(text) for text in props.get("attempts", "").split("; ") if text),
            metrics={sys.intern(k[len("metric.") :]): v for k, v in props.items() if k.startswith("metric.")},
            started_at=props.get("started_at"),
            ended_at=props.get("ended_at"),
            degraded=tuple(props["degraded"].split("; ")) if props.get("degraded") else (),
        )
