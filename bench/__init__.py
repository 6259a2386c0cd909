"""The scale benchmark: one loopback server with fixed latency, N generated cases, five ways to check them.

`python -m bench` (or `./dev bench`) prints one table per size: wall time, per-case timing error against the
server's own record of each request, and peak memory, for our default run, `-n auto`, a sequential run, the
original chart's one-curl-per-model approach and a bare asyncio client (the floor). Nothing here is imported by
the monitor; the modules only need the standard library, except the server and the floor (aiohttp).
"""
