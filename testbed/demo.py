"""The quick-start demo: the monitor end to end against a built-in local OpenAI-compatible target.

Starts a FakeOpenAI server on 127.0.0.1, writes an endpoints file with one model of each type (one streaming),
and runs the monitor on it exactly as a user would (`python -m pytest checks --endpoints=...`), with telemetry
in dry-run mode so the pings it would send to Cronitor are printed, key redacted. Extra arguments go to pytest.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from testbed.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
DEMO_CRONITOR_URL = "https://cronitor.link/p/demo-api-key/demo"


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
                ],
            }
        ]
    }


def main(argv: list[str]) -> int:
    with FakeOpenAI(latency=0.05) as server, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "endpoints.yaml"
        path.write_text(yaml.safe_dump(endpoints_for(server.url), sort_keys=False), encoding="utf-8")
        print(f"demo: local target {server.url}, endpoints file {path}", flush=True)
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "checks"),
            f"--endpoints={path}",
            "-p",
            "no:cacheprovider",
            "--cronitor-url",
            DEMO_CRONITOR_URL,
            "--telemetry-dry-run",
            *argv,
        ]
        return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
