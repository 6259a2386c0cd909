"""Keep secrets (API keys, the key inside a heartbeat URL) out of every text the monitor produces."""

from __future__ import annotations

import logging
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


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
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


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
