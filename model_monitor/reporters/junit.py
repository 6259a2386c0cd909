"""pytest's JUnit XML, the same bytes in less memory: each finished testcase is held as its XML text, compressed.

pytest's writer (_pytest.junitxml.LogXML) keeps every finished testcase as an element tree until the session's end,
then builds the whole document as one more tree and one string: at 5,000 cases, each with its dozen properties,
that was 30 MB held through the run and 12 MB more at its end. This plugin serializes each testcase as it is
finished (its text, compressed, is a fortieth of the tree) and, at the end, lets pytest write the document around a
placeholder, then writes the cases' texts in its place, one at a time. The text is what pytest's own serializer
makes of the testcase; only when it is made changes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zlib
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import pytest
from _pytest.junitxml import xml_key

__all__ = ["NAME", "HeldAsText", "written_from_text"]

NAME = "model_monitor.junit"
PLACEHOLDER = "model-monitor-testcases"  # an element pytest writes where the testcases go


class _Text:
    """A finished testcase's place in pytest's list of them: its XML text, compressed against the run's first
    testcase (they differ in a few values: 1.1 KB of text is 140 bytes), and the element again for anyone else who
    asks for it."""

    __slots__ = ("_compressed", "_like")

    def __init__(self, text: str, like: bytes) -> None:
        squeeze = zlib.compressobj(zdict=like)
        self._compressed = squeeze.compress(text.encode()) + squeeze.flush()
        self._like = like

    @property
    def text(self) -> str:
        unsqueeze = zlib.decompressobj(zdict=self._like)
        return (unsqueeze.decompress(self._compressed) + unsqueeze.flush()).decode()

    def to_xml(self) -> ET.Element:
        return ET.fromstring(self.text)


class _Placeholder:
    """The one testcase pytest writes at the end: the element the texts replace."""

    def to_xml(self) -> ET.Element:
        return ET.Element(PLACEHOLDER)


class HeldAsText:
    """Serializes each testcase pytest's JUnit writer has finished (on the process that writes JUnit)."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._held = 0  # the testcases before this index are all held as text
        self._like = b""  # the first testcase's text: the others are compressed against it

    @pytest.hookimpl(trylast=True)  # after pytest's writer has finished the testcase
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        xml = self._config.stash.get(xml_key, None)
        if xml is None or report.when != "teardown":
            return
        # A testcase is finished when its reporter has left the open ones; under xdist they finish out of order.
        testcases: list[Any] = xml.node_reporters_ordered
        still_open = {id(reporter) for reporter in xml.node_reporters.values()}
        for index in range(self._held, len(testcases)):
            testcase = testcases[index]
            if not isinstance(testcase, _Text) and id(testcase) not in still_open:
                text = ET.tostring(testcase.to_xml(), encoding="unicode")
                self._like = self._like or text.encode()
                testcases[index] = _Text(text, self._like)
        while self._held < len(testcases) and isinstance(testcases[self._held], _Text):
            self._held += 1


@contextmanager
def written_from_text(config: pytest.Config) -> Generator[None, None, None]:
    """Around pytest's end: its writer writes the document with the placeholder for the testcases, then the
    testcases replace it (also when another plugin's end failed after the writer's)."""
    xml = config.stash.get(xml_key, None)
    if xml is None:
        yield
        return
    testcases = xml.node_reporters_ordered
    placeholder: list[Any] = [_Placeholder()]  # pytest's list holds its own reporters: this stands in for them
    xml.node_reporters_ordered = placeholder
    try:
        yield
    finally:
        xml.node_reporters_ordered = testcases
        _fill(xml.logfile, testcases)


def _fill(path: str, testcases: list[Any]) -> None:
    """Write the testcases where pytest's document has the placeholder; nothing when it has none (the writer did
    not run)."""
    try:
        with open(path, encoding="utf-8", newline="") as written:
            document = written.read()
    except FileNotFoundError:
        return
    before, found, after = document.partition(ET.tostring(ET.Element(PLACEHOLDER), encoding="unicode"))
    if not found:
        return
    with open(path, "w", encoding="utf-8") as out:  # as pytest's writer opens it
        out.write(before)
        for testcase in testcases:
            out.write(testcase.text if isinstance(testcase, _Text) else ET.tostring(testcase.to_xml(), "unicode"))
        out.write(after)
