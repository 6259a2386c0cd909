"""Redaction: every known secret becomes *** in any text and in every log record, whoever logs it."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator

import pytest

from model_monitor.redact import MASK, RedactingRecords, Redactor, Secret

KEY = "sk-live-0123456789"


def test_every_occurrence_of_every_secret_is_masked() -> None:
    redact = Redactor([KEY, "hunter2-pw"])
    assert redact(f"Bearer {KEY} then {KEY}; password hunter2-pw") == f"Bearer {MASK} then {MASK}; password {MASK}"


def test_a_secret_containing_another_is_masked_whole() -> None:
    redact = Redactor(["abcd", "abcd-efgh-ijkl"])
    assert redact("key abcd-efgh-ijkl and abcd") == f"key {MASK} and {MASK}"


def test_short_and_empty_values_are_not_secrets_that_would_mask_ordinary_words() -> None:
    redact = Redactor(["", "a", "ok"])
    assert redact("a reply: ok") == "a reply: ok"


def test_secrets_added_later_count_too() -> None:
    redact = Redactor()
    redact.add(KEY)
    assert redact(f"url /p/{KEY}/x") == f"url /p/{MASK}/x"


def test_a_secret_never_shows_itself() -> None:
    secret = Secret(KEY)
    assert KEY not in f"{secret} {secret!r} {[secret]} {dict(k=secret)}"
    assert secret.reveal() == KEY
    with pytest.raises(TypeError):
        pickle.dumps(secret)


@pytest.fixture
def records() -> Iterator[RedactingRecords]:
    installed = RedactingRecords(Redactor([KEY]))
    previous = logging.getLogRecordFactory()
    installed.install()
    try:
        yield installed
    finally:
        installed.uninstall()
    assert logging.getLogRecordFactory() is previous, "uninstall puts the earlier factory back"


def test_a_log_record_is_redacted_whatever_logger_and_arguments(
    records: RedactingRecords, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("httpx").info("HTTP Request: GET %s %r", f"https://h/p/{KEY}", "200 OK")
        logging.getLogger("anything").warning(f"inline {KEY}")
    assert [r.getMessage() for r in caplog.records] == [
        f"HTTP Request: GET https://h/p/{MASK} '200 OK'",
        f"inline {MASK}",
    ]
    assert KEY not in caplog.text


def test_a_malformed_log_call_is_left_to_logging(records: RedactingRecords) -> None:
    record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    assert record.msg == "%d" and record.args == ("not a number",)
