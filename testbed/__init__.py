"""Loopback test servers: a fault-injecting OpenAI-compatible server and a telemetry receiver."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testbed.openai_server import FakeOpenAI, RequestRecord
    from testbed.receiver import Ping, Receiver

__all__ = ["FakeOpenAI", "Ping", "Receiver", "RequestRecord"]
_HOMES = {"FakeOpenAI": "openai_server", "RequestRecord": "openai_server", "Ping": "receiver", "Receiver": "receiver"}


def __getattr__(name: str) -> Any:
    """Import lazily, so `python -m testbed.openai_server` runs without a double import."""
    if name not in _HOMES:
        raise AttributeError(f"module 'testbed' has no attribute {name!r}")
    return getattr(importlib.import_module(f"testbed.{_HOMES[name]}"), name)
