"""The quick-start demo: the monitor end to end against a built-in local OpenAI-compatible target.

Starts a FakeOpenAI server on 127.0.0.1, writes an endpoints file with one model of each type (one streaming) and
one that fails on purpose (the server answers 503), and runs the monitor on it exactly as a user would (the
`model-monitor` command), with telemetry in dry-run mode so the pings it would send to Cronitor are printed, key
redacted. Extra arguments go to the command.

The demo exits 0 when the run went as shown: every case passed but the one that fails on purpose (the results
document says which failed); anything else exits with the run's own code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from testbed.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
DEMO_CRONITOR_URL = "https://cronitor.link/p/demo-api-key/demo"
FAILS_ON_PURPOSE = "local/broken"  # what a failure looks like: one line, in the run and in the table
TESTS_FAILED = 1  # pytest's exit code when a case failed
YOUR_OWN = (
    "demo: your own endpoints next: model-monitor init endpoints.yaml, keep your servers, "
    "model-monitor validate --resolve, then model-monitor"
)


def endpoints_for(url: str) -> dict:
    return {
        "endpoints": [
            {
                "name": "local",
                "url": url,
                "models": [
                    {"name": "chat-model", "type": "chat", "tags": ["critical"]},
                    {
                        "name": "chat-model+tokens=16+token_delay=0.01",
                        "id": "chat-stream",
                        "type": "chat",
                        "stream": True,
                    },
                    {"name": "completion-model", "type": "completion"},
                    {"name": "embed-model", "type": "embedding"},
                    {"name": "rerank-model", "type": "rerank"},
                    {"name": "chat-model", "id": "listed", "type": "models"},
                    {"name": "chat-model+status=503", "id": "broken", "type": "chat"},
                ],
            }
        ]
    }


def main(argv: list[str]) -> int:
    with FakeOpenAI(latency=0.05) as server, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "endpoints.yaml"
        path.write_text(yaml.safe_dump(endpoints_for(server.url), sort_keys=False), encoding="utf-8")
        results = Path(tmp) / "results.json"
        print(
            f"demo: local target {server.url}, endpoints file {path}; {FAILS_ON_PURPOSE} fails on purpose", flush=True
        )
        command = [
            sys.executable,
            "-m",
            "model_monitor",
            f"--endpoints={path}",
            "--cronitor-url",
            DEMO_CRONITOR_URL,
            "--telemetry-dry-run",
            f"--results-json={results}",
            *argv,
        ]
        code = subprocess.call(command, cwd=ROOT)
        failed = _failed(results)
        if code == TESTS_FAILED and failed == [FAILS_ON_PURPOSE]:
            print(f"demo: as expected, only {FAILS_ON_PURPOSE} failed (the server answered 503)", flush=True)
            code = 0
        print(YOUR_OWN, flush=True)
        return code


def _failed(results: Path) -> list[str] | None:
    """The ids of the cases that failed, from the run's results document (None when the run wrote none)."""
    try:
        cases = json.loads(results.read_text(encoding="utf-8"))["cases"]
    except (OSError, ValueError, KeyError):
        return None
    return [case["id"] for case in cases if case["verdict"] == "fail"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
