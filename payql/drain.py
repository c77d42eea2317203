"""A graceful stop: on SIGTERM, refuse new work, let the work in flight finish, then
let the server exit.

A deploy's stop (a supervisor's SIGTERM) would otherwise have uvicorn close its
listening socket at once and cancel whatever is still running after its timeout: a
payment waiting on its gateway would lose the answer (reconciliation finds it later,
but the shopper waits). Instead payql first drains: every new HTTP request gets 503
with Retry-After (so /readyz fails, and a load balancer sends shoppers elsewhere),
websockets are refused, and requests already running, gateway calls included, go on
and record their outcome. Once none is left, or after PAYQL_SHUTDOWN_GRACE_S, the
server is told to exit as SIGTERM would have told it (`payql serve` then cancels what
still runs a second later). A second SIGTERM stops without waiting; SIGINT is as it
was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("payql")

BODY = json.dumps(
    {
        "errors": [
            {
                "message": "payql is stopping: try again in a moment",
                "extensions": {"code": "UNAVAILABLE"},
            }
        ]
    }
).encode()


class Drain:
    """The app's graceful stop: the HTTP requests in flight, counted by DrainGuard,
    and whether new ones are refused."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None

    async def guard(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.draining:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1012})  # service restart
            return
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if self.draining:
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", b"1"),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": BODY})
            return
        self.in_flight += 1
        self._idle.clear()
        try:
            await app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    def begin(self, stop: Callable[[], None]) -> None:
        """Start draining; `stop` (the server's own exit) once nothing is in flight,
        or after the grace."""
        if self.draining:  # a second SIGTERM: stop now
            stop()
            return
        self.draining = True
        log.info(
            "stopping: %d requests in flight, new ones refused (at most %.0f s)",
            self.in_flight,
            self.grace_s,
        )
        self._stopping = asyncio.get_running_loop().create_task(self._stop_when_idle(stop))

    async def _stop_when_idle(self, stop: Callable[[], None]) -> None:
        if self.in_flight:
            try:
                async with asyncio.timeout(self.grace_s):
                    await self._idle.wait()
            except TimeoutError:
                log.warning(
                    "stopping with %d requests still in flight after %.0f s "
                    "(PAYQL_SHUTDOWN_GRACE_S): reconciliation settles their payments",
                    self.in_flight,
                    self.grace_s,
                )
        stop()

    def on_sigterm(self) -> None:
        """Take SIGTERM from the server (uvicorn, which handles it by then): drain
        first, then hand it on. Only in the main thread: elsewhere (an app served in
        a test's thread) signals are not ours to take."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError):  # not the main thread
            previous = signal.getsignal(signal.SIGTERM)
            if not callable(previous):
                return

            def handle(signum: int, frame: Any) -> None:
                loop.call_soon_threadsafe(self.begin, lambda: previous(signum, frame))

            signal.signal(signal.SIGTERM, handle)


class DrainGuard:
    """ASGI middleware: every request passes the app's Drain."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.drain.guard(self.app, scope, receive, send)
