"""Run an aiohttp application on 127.0.0.1 in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import tempfile
import threading
from types import TracebackType
from typing import Self

from aiohttp import web


def self_signed_context() -> tuple[ssl.SSLContext, str]:
    """Return a server SSL context with a fresh self-signed cert for 127.0.0.1/localhost, and that cert (PEM), which
    a client given it as its CA bundle trusts."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=testbed",
                "-keyout",
                key,
                "-out",
                cert,
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        with open(cert, encoding="ascii") as pem:
            return ctx, pem.read()


class BackgroundServer:
    """Base class: subclasses build the app; this runs it in a thread with its own loop."""

    def __init__(self, *, port: int = 0, tls: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.tls = tls
        self.cert_pem: str | None = None  # with tls: the server's certificate, to trust it as a CA (SSL_CERT_FILE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def build_app(self) -> web.Application:
        """Return the aiohttp application to serve."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start serving; returns once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []
        ssl_ctx = None
        if self.tls:
            ssl_ctx, self.cert_pem = self_signed_context()

        async def boot() -> None:
            runner = web.AppRunner(
                self.build_app(), handle_signals=False, access_log=None, shutdown_timeout=0.1, handler_cancellation=True
            )
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, ssl_context=ssl_ctx)
            await site.start()
            self._runner = runner
            self.port = runner.addresses[0][1]

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(boot())
            except BaseException as exc:  # surfaced to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving, aborting requests still in flight."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None or runner is None or thread is None:
            return
        self._runner = None

        async def shutdown() -> None:
            await runner.cleanup()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        future = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=2)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=2)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
