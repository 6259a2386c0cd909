"""Which cases this process runs: --only, then --shard I/K (pytest's -k and -m select around them)."""

from __future__ import annotations

from collections.abc import Iterable

from .case import Case
from .settings import Settings

__all__ = ["runs_here", "selected_elsewhere", "unknown_only"]


def _selected(case: Case, only: tuple[str, ...]) -> bool:
    return case.endpoint.name in only or case.id in only


def selected_elsewhere(case: Case, resolved: Settings) -> bool:
    """Selected, but owned by another shard."""
    return resolved.shard is not None and (not resolved.only or _selected(case, resolved.only))


def runs_here(case: Case, resolved: Settings) -> bool:
    """Chosen by --only (when given) and owned by this process's --shard (when given). A shard depends on the
    case id alone, so -k and -m, applied by pytest around this, select from each shard what they select overall."""
    only, shard = resolved.only, resolved.shard
    return (not only or _selected(case, only)) and (shard is None or shard.owns(case.id))


def unknown_only(only: tuple[str, ...], cases: Iterable[Case]) -> str | None:
    """The first --only name that is neither an endpoint nor a case id."""
    names = {name for case in cases for name in (case.endpoint.name, case.id)}
    return next((name for name in only if name not in names), None)
