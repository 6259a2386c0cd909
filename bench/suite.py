"""Generated endpoints files: N cases over ten (or more) endpoints on one server, mixed chat, embedding and streaming
chat.

Every case has its own model name (m0000, m0001, ...), so each client's measurement is matched to the server's
record of that very request. Next to each endpoints file goes a manifest: the exact request (method, URL, body)
the monitor's probe builds for every case, so the floor and the curl row send byte-for-byte the same bodies.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from model_monitor import config
from model_monitor.redact import Redactor

ENDPOINTS = 10
STREAM = "stream"


@dataclass(frozen=True)
class Request:
    case: str
    endpoint: str
    max_concurrency: int
    model: str
    kind: str  # chat, embedding or stream
    method: str
    url: str
    body: dict | None


@dataclass(frozen=True)
class Suite:
    size: int
    endpoint_count: int
    endpoints_file: Path
    manifest_file: Path
    requests: tuple[Request, ...]
    streaming: bool

    def by_case(self) -> dict[str, Request]:
        return {r.case: r for r in self.requests}

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.requests:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        return counts


def streaming_supported() -> bool:
    """Whether this checkout's endpoints schema accepts `stream: true` on a chat model."""
    document = {
        "endpoints": [
            {"name": "probe", "url": "http://127.0.0.1:9", "models": [{"name": "m", "type": "chat", "stream": True}]}
        ]
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "endpoints.yaml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        try:
            config.load(path, environ={})
        except config.ConfigError:
            return False
    return True


def model_entry(index: int, kind: str) -> dict:
    entry: dict = {"name": f"m{index:04d}", "type": "embedding" if kind == "embedding" else "chat"}
    if kind == STREAM:
        entry["stream"] = True
    return entry


def generate(size: int, url: str, folder: Path, streaming: bool, endpoint_count: int = ENDPOINTS) -> Suite:
    """Write endpoints.yaml and manifest.json for `size` cases over `endpoint_count` endpoints into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = ("chat", "embedding", STREAM) if streaming else ("chat", "embedding")
    per_endpoint = [size // endpoint_count + (1 if e < size % endpoint_count else 0) for e in range(endpoint_count)]
    endpoints, kind_of, index = [], {}, 0
    for e, count in enumerate(per_endpoint):
        if not count:
            continue
        models = []
        for position in range(count):
            kind = kinds[position % len(kinds)]
            models.append(model_entry(index, kind))
            kind_of[f"ep{e}/m{index:04d}"] = kind
            index += 1
        # max_concurrency is left at the default (20): the run is measured at the default caps.
        endpoints.append({"name": f"ep{e}", "url": url, "models": models})
    endpoints_file = folder / "endpoints.yaml"
    endpoints_file.write_text(yaml.safe_dump({"endpoints": endpoints}, sort_keys=False), encoding="utf-8")

    loaded = config.load(endpoints_file, environ={})
    requests = []
    for case in loaded.resolve(loaded.cases, Redactor(), environ={}):
        probe = case.type
        body = probe.body(case)
        if kind_of[case.id] == STREAM and isinstance(body, dict):
            body.setdefault("stream", True)
        requests.append(
            Request(
                case=case.id,
                endpoint=case.endpoint.name,
                max_concurrency=case.endpoint.max_concurrency,
                model=case.model,
                kind=kind_of[case.id],
                method=probe.method,
                url=case.endpoint.base_url + probe.path,
                body=body,
            )
        )
    manifest_file = folder / "manifest.json"
    manifest_file.write_text(json.dumps([asdict(r) for r in requests], indent=1), encoding="utf-8")
    return Suite(size, endpoint_count, endpoints_file, manifest_file, tuple(requests), streaming)
