"""The monitor's one test: each endpoint/model from the endpoints file answers correctly and in time."""

from collections.abc import Callable

import pytest

from model_monitor.case import Case
from model_monitor.outcome import Outcome


def test_endpoint(case: Case, check_case: Callable[[Case], Outcome]) -> None:
    outcome = check_case(case)
    if not outcome.passed:
        pytest.fail(outcome.reason, pytrace=False)
