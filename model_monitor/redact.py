"""Keep secrets (API keys, the key inside a heartbeat URL) out of every text the monitor produces."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NoReturn

__all__ = ["CUT", "MASK", "RedactingRecords", "Redactor", "Secret"]

MASK = "***"
CUT = "…"  # where a text was cut short: every cut in the monitor marks its place with it
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words
MIN_CUT_PIECE = 2  # of a secret beside a cut, masked: one character tells nothing, and would mask ordinary text


class Secret:
    """A value that cannot print itself: repr, str and format show ***, so locals, reprs and logs cannot leak it.

    `reveal()` is the one door, for the code that builds a request."""

    __slots__ = ("_value",)
    _value: str  # set once, in __init__, past the __setattr__ that refuses every later write

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Secret is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled: it would leave the process in the open")


class Redactor:
    """Replaces every known secret value in a text with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        new = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH} - set(self._secrets)
        # Longest first, so that a secret containing another is masked whole.
        self._secrets = sorted({*self._secrets, *new}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """The text with every secret masked, and every piece of one that touches a cut (CUT): a text cut before
        it reached here is masked as the whole text would have been, so an echo placed at the cut leaks nothing."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if CUT not in text or not self._secrets:
            return text
        pieces = text.split(CUT)
        for i in range(len(pieces) - 1):
            pieces[i] = self._cut_before(pieces[i])
            pieces[i + 1] = self._cut_after(pieces[i + 1])
        return CUT.join(pieces)

    def _cut_before(self, text: str) -> str:
        """The text with the longest start of a secret that it ends with masked (a head kept before a cut)."""
        starts = (k for s in self._secrets for k in range(MIN_CUT_PIECE, len(s)) if text.endswith(s[:k]))
        longest = max(starts, default=0)
        return text[: len(text) - longest] + MASK if longest else text

    def _cut_after(self, text: str) -> str:
        """The text with the longest end of a secret that it starts with masked (a tail kept after a cut)."""
        ends = (k for s in self._secrets for k in range(MIN_CUT_PIECE, len(s)) if text.startswith(s[-k:]))
        longest = max(ends, default=0)
        return MASK + text[longest:] if longest else text


class RedactingRecords:
    """Redacts every log record at creation, whatever logger or handler (httpx's request lines included)."""

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact
        self._previous = logging.getLogRecordFactory()

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record = self._previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call is logging's to report, not ours
            return record
        clean = self._redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    def install(self) -> None:
        logging.setLogRecordFactory(self)

    def uninstall(self) -> None:
        if logging.getLogRecordFactory() is self:
            logging.setLogRecordFactory(self._previous)
