"""One xdist worker killed mid-run (SIGKILL, as the OOM killer does): the cases it held fail as crashed, every
other case keeps its verdict, every case is in JUnit and has its end ping, and the run ends as a failed one."""

from __future__ import annotations

import os
import signal

import pytest

from testbed.openai_server import FakeOpenAI
from testbed.receiver import Receiver

from .helpers import endpoint, junit_cases, model, wait_for_requests

HELD_S = 4  # long enough for the kill to find both workers waiting on the server
# Worker gwK holds every case whose index i has i % 2 == K (scheduler.py): each share has a held case or two.
MODELS = [
    model("ok"),
    model("bad+status=500", id="bad"),
    *(model(f"held{i}+delay={HELD_S}", id=f"held{i}", timeout=60) for i in range(4)),
]
SHARES = [{"svc/ok", "svc/held0", "svc/held2"}, {"svc/bad", "svc/held1", "svc/held3"}]
VERDICTS = {
    "svc/ok": ("pass", ""),
    "svc/bad": ("fail", "server_error"),
    **{f"svc/held{i}": ("pass", "") for i in range(4)},
}


@pytest.mark.parametrize("restarts", [[], ["--max-worker-restart=0"]], ids=["restarting", "no-restart"])
def test_a_killed_worker_fails_its_cases_as_crashed_and_the_rest_keep_their_verdicts(
    server: FakeOpenAI, start_monitor, restarts: list[str]
) -> None:
    """Whether xdist may replace the worker or not: nothing is probed twice and nothing goes unreported."""
    with Receiver() as receiver:
        run = start_monitor(
            [endpoint(server.url, *MODELS)], f"--cronitor-url={receiver.url}/p/deathkey1234", "-n", "2", *restarts
        )
        wait_for_requests(server, len(MODELS))
        workers = run.children()
        assert len(workers) == 2, run.output
        os.kill(workers[0], signal.SIGKILL)
        run.process.wait(timeout=HELD_S + 60)
        pings = [(p.path.rsplit("/", 1)[1], p.query["state"][0]) for p in receiver.pings]
    assert run.process.returncode == 1, run.output
    assert "INTERNALERROR" not in run.output
    cases = junit_cases(run.junit)
    assert set(cases) == set(VERDICTS), run.output
    crashed = {case_id for case_id, props in cases.items() if props["model_monitor.class"] == "crashed"}
    # The killed worker's held cases, and its answered one too unless it was judged before the kill.
    assert any(share - {"svc/ok", "svc/bad"} <= crashed <= share for share in SHARES), crashed
    for case_id in crashed:
        assert cases[case_id]["model_monitor.verdict"] == "fail"
        assert cases[case_id]["model_monitor.reason"].startswith("crashed: worker gw"), cases[case_id]
        assert "died while running this case (killed, out of memory?)" in cases[case_id]["model_monitor.reason"]
    for case_id in set(VERDICTS) - crashed:
        props = cases[case_id]
        assert (props["model_monitor.verdict"], props["model_monitor.class"]) == VERDICTS[case_id], props
    assert len(server.requests) == len(MODELS), "no case is probed a second time"
    ends = {key: state for key, state in pings if state != "run"}
    expected = {
        case_id.replace("/", "-"): "complete" if VERDICTS[case_id][0] == "pass" and case_id not in crashed else "fail"
        for case_id in VERDICTS
    }
    assert ends == expected, pings
    assert len(pings) == 2 * len(MODELS), "each case: its run and its end"
    run_summary = [line for line in run.output.splitlines() if line.startswith("svc/")]
    assert len(run_summary) == len(MODELS), run.output
