"""An endpoint's URL, headers and API key are read only for the cases a run selects (--only, -k, -m), so a job
that holds one service's secrets can run that service's cases from an endpoints file shared with others."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.openai_server import FakeOpenAI

from .helpers import WORKERS

KEY_A, KEY_B, TEAM_B = "sk-sel-a-1234", "sk-sel-b-5678", "team-b-secret"
# Endpoint b's three values that wait for selection, each from a variable the job for a may not hold.
B_VARS = {"MM_SEL_URL_B": None, "MM_SEL_KEY_B": KEY_B, "MM_SEL_TEAM_B": TEAM_B}


@pytest.fixture
def servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    """One server per endpoint, each accepting only its own key."""
    with FakeOpenAI(api_key=KEY_A, models=("model-a",)) as a, FakeOpenAI(api_key=KEY_B, models=("model-b",)) as b:
        yield a, b


def shared_file(url_a: str) -> str:
    """Endpoint a is fixed but for its key; endpoint b takes URL (line 7), API key (line 8) and header (line 9)
    from the environment."""
    return f"""\
endpoints:
  - name: a
    url: {url_a}
    api_key_env: MM_SEL_KEY_A
    models: [{{name: model-a, type: chat, tags: [team_a]}}]
  - name: b
    url: ${{MM_SEL_URL_B}}
    api_key_env: MM_SEL_KEY_B
    headers: {{X-Team: "${{MM_SEL_TEAM_B}}"}}
    models: [{{name: model-b, type: chat}}]
"""


@pytest.fixture
def only_a_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MM_SEL_KEY_A", KEY_A)
    for name in B_VARS:
        monkeypatch.delenv(name, raising=False)


@WORKERS
@pytest.mark.parametrize("selection", [["--only", "a"], ["-k", "a/"], ["-m", "team_a"]], ids=["only", "k", "m"])
@pytest.mark.usefixtures("only_a_is_set")
def test_a_run_that_leaves_an_endpoint_out_needs_none_of_its_variables(
    servers: tuple[FakeOpenAI, FakeOpenAI], run_monitor, selection: list[str], workers: list[str]
) -> None:
    a, b = servers
    run = run_monitor(shared_file(a.url), *selection, *workers)
    assert run.ret == 0, run.output
    assert list(run.cases) == ["a/model-a"]
    assert [r.headers["authorization"] for r in a.requests] == [f"Bearer {KEY_A}"] and b.requests == []


@WORKERS
@pytest.mark.usefixtures("only_a_is_set")
def test_a_run_that_selects_it_stops_naming_each_unset_variable_before_any_request(
    servers: tuple[FakeOpenAI, FakeOpenAI], run_monitor, workers: list[str]
) -> None:
    a, b = servers
    run = run_monitor(shared_file(a.url), *workers)
    assert run.ret == 4, run.output
    errors = [line for line in run.result.stderr.lines if "endpoints.yaml:" in line]
    assert [line.split("endpoints.yaml:", 1)[1] for line in errors] == [
        "7: endpoints[1].url: environment variable MM_SEL_URL_B is not set (used as ${MM_SEL_URL_B})",
        "8: endpoints[1].api_key_env: environment variable MM_SEL_KEY_B (the API key) is not set or empty",
        "9: endpoints[1].headers.X-Team: environment variable MM_SEL_TEAM_B is not set (used as ${MM_SEL_TEAM_B})",
    ]
    assert errors[0].startswith("ERROR: endpoints file: ")
    assert a.requests == [] and b.requests == []


def test_a_run_that_selects_it_reads_them_all(
    servers: tuple[FakeOpenAI, FakeOpenAI], monkeypatch: pytest.MonkeyPatch, run_monitor
) -> None:
    a, b = servers
    monkeypatch.setenv("MM_SEL_KEY_A", KEY_A)
    for name, value in {**B_VARS, "MM_SEL_URL_B": b.url}.items():
        monkeypatch.setenv(name, value)
    run = run_monitor(shared_file(a.url))
    assert run.ret == 0, run.output
    (request,) = b.requests
    assert (request.headers["authorization"], request.headers["x-team"]) == (f"Bearer {KEY_B}", TEAM_B)
    assert len(a.requests) == 1 and KEY_B not in run.output + run.junit and TEAM_B not in run.output + run.junit
