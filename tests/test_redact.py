"""Redaction: every known secret becomes *** in any text and in every log record, whoever logs it."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator

import pytest

from model_monitor.redact import CUT, MASK, RedactingRecords, Redactor, Secret
from model_monitor.reply import one_line

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


@pytest.mark.parametrize("kept", range(2, len(KEY) - 1))  # each side keeps two characters or more
def test_a_cut_through_a_secret_leaves_no_piece_of_it(kept: int) -> None:
    """Cut first (as a server's message is, deep in the probe), redacted after: as if the whole text were masked."""
    text = "x" * 20 + KEY + " more words"
    head = one_line(text, 20 + kept + 1)
    assert head == "x" * 20 + KEY[:kept] + CUT
    tail = one_line(text, len(KEY) - kept + len(" more words") + 1, tail=True)
    assert tail == CUT + KEY[kept:] + " more words"
    redact = Redactor([KEY])
    assert redact(head) == "x" * 20 + MASK + CUT
    assert redact(tail) == CUT + MASK + " more words"


def test_a_cut_beside_no_secret_changes_nothing() -> None:
    redact = Redactor([KEY, "hunter2-pw"])
    assert redact(f"a tas{CUT} and{CUT}w") == f"a tas{CUT} and{CUT}w", "one shared character is not a piece"
    assert redact(f"a task{CUT} and{CUT}pw") == f"a ta{MASK}{CUT} and{CUT}{MASK}", "two are"


def test_a_transformed_form_registered_is_masked_whole_and_at_a_cut() -> None:
    """A key as a URL carries it (percent-encoded) is a secret of its own, masked also where it is cut."""
    encoded = "a%2Fb%3Dc-0123"
    redact = Redactor(["a/b=c-0123", encoded])
    assert redact(f"GET /t/{encoded}/x and a/b=c-0123") == f"GET /t/{MASK}/x and {MASK}"
    assert redact(f"GET /t/{encoded[:6]}{CUT}") == f"GET /t/{MASK}{CUT}"


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
