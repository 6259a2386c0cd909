"""The rerank type end to end: POST /v1/rerank against FakeOpenAI and its faults."""

from __future__ import annotations

from testbed.openai_server import FakeOpenAI

from .faults import RERANK_FAULTS
from .helpers import endpoint, model


def test_a_healthy_rerank_passes_and_each_fault_fails_with_its_class(openai_server: FakeOpenAI, run_monitor) -> None:
    faults = [model(name, "rerank", id=name) for name, _, _ in RERANK_FAULTS]
    models = [model("rr-ok", "rerank", id="ok", rank_check=True), *faults]
    run = run_monitor({"endpoints": [endpoint(openai_server.url, *models)]})
    assert run.ret == 1, run.output
    assert run.reason("svc/ok") == "3 documents scored, relevant one ranked 1"
    for name, error_class, piece in RERANK_FAULTS:
        run.assert_fault(f"svc/{name}", error_class, piece)
