"""The floor: a bare asyncio + aiohttp client, no pytest, sending the manifest's requests at the monitor's caps.

`python -m bench.floor MANIFEST OUT [--max-concurrency 100]`. Same bodies, same caps (each endpoint's
max_concurrency as a semaphore and its own connection pool, then one global semaphore, taken in that order as
the monitor takes them), and the same clock: started after the slots are held, just before the request is sent,
stopped at the reply's last byte. It checks nothing but the HTTP status, so it is the least a client can cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp

JSON_STYLE = {"ensure_ascii": False, "separators": (",", ":")}  # as httpx writes json=: the same bytes


async def run(manifest: list[dict], max_concurrency: int) -> list[dict]:
    overall = asyncio.Semaphore(max_concurrency)
    slots: dict[str, asyncio.Semaphore] = {}
    sessions: dict[str, aiohttp.ClientSession] = {}
    for request in manifest:
        name = request["endpoint"]
        if name not in sessions:
            slots[name] = asyncio.Semaphore(request["max_concurrency"])
            connector = aiohttp.TCPConnector(limit=request["max_concurrency"])
            sessions[name] = aiohttp.ClientSession(connector=connector, headers={"user-agent": "bench-floor"})

    async def one(request: dict) -> dict:
        name = request["endpoint"]
        data = None if request["body"] is None else json.dumps(request["body"], **JSON_STYLE).encode()
        headers = {"content-type": "application/json"} if data is not None else {}
        streamed = isinstance(request["body"], dict) and request["body"].get("stream") is True
        marks: dict = {}
        async with slots[name], overall:
            start = time.monotonic()
            try:
                sent = sessions[name].request(request["method"], request["url"], data=data, headers=headers)
                async with sent as resp:
                    if streamed:  # when its headers came, and its first event (the server's first write)
                        marks["headers_s"] = time.monotonic() - start
                        async for _ in resp.content.iter_any():
                            marks.setdefault("first_event_s", time.monotonic() - start)
                    else:
                        await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, OSError) as exc:
                return {"case": request["case"], "duration": time.monotonic() - start, "ok": False, "error": repr(exc)}
            return {
                "case": request["case"],
                "duration": time.monotonic() - start,
                "ok": 200 <= status < 300,
                "status": status,
                **marks,
            }

    try:
        return await asyncio.gather(*(one(r) for r in manifest))
    finally:
        await asyncio.gather(*(s.close() for s in sessions.values()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("out")
    parser.add_argument("--max-concurrency", type=int, default=100)
    args = parser.parse_args(argv)
    with open(args.manifest, encoding="utf-8") as f:
        manifest = json.load(f)
    results = asyncio.run(run(manifest, args.max_concurrency))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
