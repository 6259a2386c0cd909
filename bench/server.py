"""The benchmark's target: testbed's FakeOpenAI with a fixed latency, in a process of its own.

Run as `python -m bench.server --latency 1.0`; it prints its base URL on one line and serves until stdin closes.
Server-side truth: GET /bench/records returns every request it answered since the last POST /bench/clear (model,
path, duration from the handler's start to the reply's last byte, and for a stream when its headers and its first
event went out), once no request is in flight.

The server runs on its own process's main thread (not FakeOpenAI's background thread and not inside the
benchmark), so it never shares a GIL with the clients it measures, and listens with a backlog large enough for
500 connections arriving at once (aiohttp's default of 128 would make the curl row wait on SYN retries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from aiohttp import web

from testbed.openai_server import FakeOpenAI

BACKLOG = 4096
IDLE_TIMEOUT_S = 10.0


class BenchServer(FakeOpenAI):
    """FakeOpenAI plus two routes of our own that expose and reset its request records, and the phases of each
    stream: when its headers went out and its first event (model name -> monotonic times)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phases: dict[str, dict[str, float]] = {}

    def build_app(self) -> web.Application:
        app = super().build_app()
        app.router.add_get("/bench/records", self._records)
        app.router.add_post("/bench/clear", self._clear)
        app.on_response_prepare.append(self._prepared)
        return app

    async def _prepared(self, request: web.Request, response: web.StreamResponse) -> None:
        """The headers go out now: a stream's first mark (every case's model name is its own)."""
        if isinstance(response, web.Response):  # a plain reply: its headers and body go out together
            return
        try:
            model = json.loads(await request.read()).get("model")  # read once already: aiohttp keeps it
        except (ValueError, AttributeError):
            return
        if isinstance(model, str):
            request["bench_model"] = model
            self.phases[model] = {"headers": time.monotonic()}

    def first_event(self, request: web.Request) -> None:
        model = request.get("bench_model")
        if model is not None and "first_event" not in self.phases.get(model, {"first_event": 0}):
            self.phases[model]["first_event"] = time.monotonic()

    async def _records(self, request: web.Request) -> web.Response:
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        with self._lock:
            records = [
                {
                    "model": r.model,
                    "method": r.method,
                    "path": r.path,
                    "received": r.received,
                    "duration": r.duration,
                    **{
                        f"{phase}_s": at - r.received
                        for phase, at in self.phases.get(r.model or "", {}).items()
                        if at >= r.received  # this request's, not an earlier attempt's
                    },
                }
                for r in self.requests
            ]
        return web.json_response({"inflight": self._inflight, "records": records})

    async def _clear(self, request: web.Request) -> web.Response:
        self.clear()
        self.phases.clear()
        return web.json_response({"cleared": True})


async def serve(latency: float, port: int) -> None:
    server = BenchServer(latency=latency, port=port)
    write = web.StreamResponse.write

    async def marked(response: web.StreamResponse, data: bytes) -> None:
        """A stream's first write after its headers is its first event (this process only serves the bench)."""
        if response._req is not None:
            server.first_event(response._req)
        await write(response, data)

    web.StreamResponse.write = marked  # type: ignore[method-assign]
    runner = web.AppRunner(server.build_app(), handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=BACKLOG)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"http://127.0.0.1:{bound}", flush=True)
    # Serve until the benchmark closes our stdin (or dies): no orphan server outlives it.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per client connection
    asyncio.run(serve(args.latency, args.port))


if __name__ == "__main__":
    main()
