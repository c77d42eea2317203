"""HTTP and websocket guards, as plain ASGI middleware, one job each.

- RequestLog: a request id for every request (X-Request-ID), one log line when done.
- BodyLimit: bodies over the limit get 413, whether or not they announce a length.
- SecurityHeaders: no-sniff, no framing, a strict CSP, HSTS in production.
- WebsocketGuard: one client IP may hold only so many websockets.

CORS is Starlette's CORSMiddleware with the explicit PAYQL_ALLOWED_ORIGINS list; the
same list bounds the origins of browser websockets (payql/graphql_ws.py checks them).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.carddata import contains_pan
from payql.logs import request_id

log = logging.getLogger("payql.request")

_GOOD_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# The API answers JSON only: nothing in it may run, load or be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def client_ip(scope: Scope) -> str:
    """The caller's address (uvicorn has already applied X-Forwarded-For from the
    proxies FORWARDED_ALLOW_IPS trusts)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def new_request_id() -> str:
    """16 hex digits holding no run that looks like a card number: such an id would be
    redacted from the very log line meant to find it."""
    while True:
        rid = secrets.token_hex(8)
        if not contains_pan(rid):
            return rid


class RequestLog:
    def __init__(
        self,
        app: ASGIApp,
        observe: Callable[[str, str | None, int, float], None] | None = None,
    ) -> None:
        self.app = app
        # Told of each request when it ends (kind, operation, status, seconds): metrics.
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # Always our own id; one the caller sent (a proxy's, say) is logged beside it.
        given = Headers(scope=scope).get("x-request-id", "")
        rid = new_request_id()
        token = request_id.set(rid)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        notes: dict[str, Any] = {}
        state["log"] = notes
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # A bug outside GraphQL (a route, a middleware): logged here with its id
            # and traceback; the client gets a JSON 500 with the id and nothing else.
            log.exception("unhandled error in %s", scope["path"])
            if scope["type"] != "http" or status:
                raise  # the response has begun: nothing more can be said
            status = 500
            body = json.dumps({"error": "Unexpected error.", "requestId": rid}).encode()
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            kind = "WS" if scope["type"] == "websocket" else scope["method"]
            operation = notes.get("operation")
            log.info(
                "%s %s %s %.1fms%s",
                kind,
                scope["path"],
                status or "-",
                elapsed,
                f" {operation}" if operation else "",
                extra={
                    "request_id": rid,
                    "method": kind,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed, 1),
                    "operation": operation,
                    "client": client_ip(scope),
                    "client_request_id": given if _GOOD_ID.match(given) else None,
                },
            )
            if self.observe is not None:
                self.observe(kind, notes.get("root"), status, elapsed / 1000)
            request_id.reset(token)


class BodyLimit:
    # A refused body is read and dropped up to this size, so the client can read the
    # 413 rather than a reset connection; past it, the connection is just closed.
    DRAIN = 4 * 1024 * 1024

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, self._bounded_messages(receive, send), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(receive, send, 0, more=True)
            return
        seen = 0
        more = True
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, more
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                more = message.get("more_body", False)
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(receive, send, seen, more)

    def _bounded_messages(self, receive: Receive, send: Send) -> Receive:
        """Websocket messages over the limit close the connection (1009: too big),
        whatever server runs payql (`payql serve` also sets uvicorn's ws_max_size)."""

        async def bounded() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                text = message.get("text") or ""
                size = len(message.get("bytes") or b"") + (
                    len(text) if text.isascii() else len(text.encode())
                )
                if size > self.max_bytes:
                    await send({"type": "websocket.close", "code": 1009})
                    return {"type": "websocket.disconnect", "code": 1009}
            return message

        return bounded

    async def _refuse(self, receive: Receive, send: Send, seen: int, more: bool) -> None:
        while more and seen <= self.DRAIN:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = json.dumps(
            {"error": f"the request body is over the limit of {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class SecurityHeaders:
    def __init__(self, app: ASGIApp, production: bool) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        ]
        if production:
            self.headers.append(
                (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in self.headers if k not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", API_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WebsocketGuard:
    """Connection floods, refused at the handshake: one client IP may hold only so many
    websockets (per process). Origins are checked by the websocket endpoint itself."""

    def __init__(self, app: ASGIApp, per_ip: int) -> None:
        self.app = app
        self.per_ip = per_ip
        self.open: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        ip = client_ip(scope)
        if self.open[ip] >= self.per_ip:
            log.warning("refused a websocket: %s already has %d open", ip, self.open[ip])
            await _deny(receive, send)
            return
        self.open[ip] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open[ip] -= 1
            if self.open[ip] <= 0:
                del self.open[ip]


async def _deny(receive: Receive, send: Send) -> None:
    message = await receive()  # websocket.connect
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})
