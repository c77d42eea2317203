"""graphql-transport-ws, spoken by payql itself: the one place that speaks the protocol.

The protocol is the graphql-ws library's (PROTOCOL.md in enisdenjo/graphql-ws), which
Apollo and urql use: `connection_init` (with the bearer token in its payload) is
answered with `connection_ack`; `ping` with `pong`; `subscribe` starts an operation,
answered with `next` messages and a `complete`, or one `error`; the client's
`complete` stops one. The socket is closed with the protocol's codes: 4400 for a
message the protocol does not allow, 4401 for a subscribe before the ack, 4403 for a
connection refused, 4408 when no `connection_init` came in time, 4409 for an id
already running, 4429 for a second `connection_init`.

Strawberry stays the schema and the executor: queries and mutations sent here run
through `schema.execute`, with every guard HTTP has; a subscription is checked once
at subscribe (PayqlSchema.open_subscription) and then held by the hub as a record
(resolvers/live.py), which writes its frames here. A connection is this object and
the task uvicorn gives it; nothing else lives as long as it does. Frames go out in
order through `push`: written at once while the client reads, queued while it does
not, and a client that lets too many wait has its subscriptions ended ("resubscribe
with `after`").
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import types
from collections import deque
from collections.abc import Awaitable, Generator
from functools import lru_cache
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError, OperationType, get_operation_ast, parse
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.http.websocket_origin import is_same_origin, normalize_origin
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType as Operation

from models.errors import PublicError
from models.event_log import START
from models.write_path import PaymentService
from payql.security import client_ip
from resolvers.auth import AuthError, actor_from_header
from resolvers.context import Context
from resolvers.live import Hub, Subscriber, too_slow
from resolvers.subscriptions import backlog
from schema.guards import masked
from schema.schema import PayqlSchema, Unreadable
from schema.trusted import DocumentRefused

log = logging.getLogger("payql.ws")

PROTOCOL = "graphql-transport-ws"
# For connection_init: Strawberry's default, which payql had before (graphql-ws's own
# server waits 3 s).
INIT_WAIT_S = 60.0
# Subscriptions opened at once per process (each reads the database: its check and its
# backlog): when thousands of dashboards reconnect together (a deploy, a network blip),
# they queue here rather than take every pooled connection from payments, and the
# memory their opening takes stays that of a few.
OPENING_AT_ONCE = 16


class GraphQLWebsocket:
    """The ASGI endpoint for websockets on /graphql."""

    def __init__(
        self,
        schema: PayqlSchema,
        service: PaymentService,
        hub: Hub,
        jwt_secret: str,
        allowed_origins: frozenset[str] | tuple[str, ...] | list[str],
        operations_per_connection: int = 20,
        outbox_size: int = 1000,
    ) -> None:
        self.schema = schema
        self.service = service
        self.hub = hub
        self.jwt_secret = jwt_secret
        normalized = (o if o == "*" else normalize_origin(o) for o in allowed_origins)
        self.allowed_origins = {origin for origin in normalized if origin is not None}
        self.operations_per_connection = operations_per_connection
        self.outbox_size = outbox_size  # frames a connection may have waiting
        self.init_wait_s = INIT_WAIT_S
        self.opening = asyncio.Semaphore(OPENING_AT_ONCE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        if (await receive())["type"] != "websocket.connect":
            return
        if not self._origin_allowed(Headers(scope=scope)):
            await send({"type": "websocket.close", "code": 1008})  # before accept: a 403
            return
        if PROTOCOL not in scope.get("subprotocols", ()):
            # as graphql-ws's server does: accepted, then closed saying why
            await send({"type": "websocket.accept"})
            await send(
                {"type": "websocket.close", "code": 4406, "reason": "Subprotocol not acceptable"}
            )
            return
        await send({"type": "websocket.accept", "subprotocol": PROTOCOL})
        state = scope.get("state", {})
        context = Context(
            service=self.service,
            actor=None,
            live=self.hub,
            request_id=state.get("request_id"),
            client_ip=client_ip(scope),
            notes=state.get("log", {}),
            streaming=True,  # its loaders never cache: the context lives as long as this
        )
        await Connection(self, send, context).serve(receive)

    def _origin_allowed(self, headers: Headers) -> bool:
        """Cross-site websocket hijacking: a browser's page must be ours or allowed.
        (Browsers always send Origin; a client that sends none is not one.)"""
        origin = headers.get("origin")
        if origin is None or headers.get("sec-fetch-site") == "same-origin":
            return True
        if is_same_origin(origin, headers.get("host")):
            return True
        if "*" in self.allowed_origins:
            return True
        normalized = normalize_origin(origin)
        if normalized is not None and normalized in self.allowed_origins:
            return True
        log.warning("refused a websocket from origin %r", origin)
        return False


class Connection:
    """One graphql-transport-ws connection: its state, its operations, its frames."""

    __slots__ = (
        "acknowledged",
        "closing",
        "context",
        "endpoint",
        "init_received",
        "operations",
        "outbox",
        "send",
        "tasks",
        "timer",
        "writer",
    )

    def __init__(self, endpoint: GraphQLWebsocket, send: Send, context: Context) -> None:
        self.endpoint = endpoint
        self.send = send
        self.context = context
        self.init_received = False
        self.acknowledged = False
        self.closing = False
        # By id: a subscription the hub holds, or the task running an operation.
        self.operations: dict[str, Subscriber | asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] | None = None  # running; made when needed
        self.outbox: deque[Any] | None = None  # frames waiting behind a slow write
        self.writer: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    async def serve(self, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(
            self.endpoint.init_wait_s, self.close, 4408, "Connection initialisation timeout"
        )
        disconnected = False
        try:
            # (No message is held by a local while the next is awaited: an idle
            # connection keeps none of what it was sent.)
            while not self.closing:
                disconnected = self.take(await receive())
                if disconnected:
                    break
        finally:
            self._shutdown()
            writer = self.writer
            if writer is not None:
                if disconnected:
                    writer.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await writer  # what was queued before our close goes out

    # -- messages ----------------------------------------------------------------------

    def take(self, message: Any) -> bool:
        """One ASGI message; True when the client has gone."""
        if message["type"] == "websocket.disconnect":
            return True
        if message["type"] == "websocket.receive":
            text = message.get("text")
            if text is None:
                self.close(4400, "WebSocket message type must be text")
                return False
            try:
                data = json.loads(text)
            except (ValueError, RecursionError):
                self.close(4400, "WebSocket message must be valid JSON")
                return False
            self.handle(data)
        return False

    def handle(self, data: Any) -> None:
        kind = data.get("type") if isinstance(data, dict) else None
        if not isinstance(kind, str):
            self.close(4400, "Failed to parse message")
        elif kind == "connection_init":
            self._init(data.get("payload"))
        elif kind == "ping":
            self.push('{"type":"pong"}')
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            self._subscribe(data)
        elif kind == "complete":
            self._complete(data.get("id"))
        else:
            self.close(4400, f"Unknown message type: {kind}")

    def _init(self, payload: Any) -> None:
        if self.init_received:
            self.close(4429, "Too many initialisation requests")
            return
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            self.close(4400, "Invalid connection init payload")
            return
        self.init_received = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        header = payload.get("Authorization") or payload.get("authorization")
        try:
            self.context.actor = actor_from_header(
                self.endpoint.jwt_secret, header if isinstance(header, str) else None
            )
        except AuthError:
            self.close(4403, "Forbidden")
            return
        self.acknowledged = True
        self.push('{"type":"connection_ack"}')

    def _subscribe(self, data: dict[str, Any]) -> None:
        if not self.acknowledged:
            self.close(4401, "Unauthorized")
            return
        op_id, payload = data.get("id"), data.get("payload")
        # (An id that is not a string would dodge the per-id checks below.)
        if not isinstance(op_id, str) or not isinstance(payload, dict):
            self.close(4400, "a subscribe needs a string id and an object payload")
            return
        if op_id in self.operations:
            self.close(4409, f"Subscriber for {op_id} already exists")
            return
        if len(self.operations) >= self.endpoint.operations_per_connection:
            most = self.endpoint.operations_per_connection
            self._error(
                op_id,
                [
                    GraphQLError(
                        f"this connection already has {most} operations open, the most it "
                        "may: end one, or open another connection",
                        extensions={"code": "RATE_LIMITED"},
                    ).formatted
                ],
            )
            return
        try:  # a trusted document named by its id: its text (schema/trusted.py)
            query = self.endpoint.schema.trusted.query_for(
                payload.get("query"), payload.get("documentId"), payload.get("extensions")
            )
        except DocumentRefused as refused:
            self._error(op_id, [refused.graphql_error().formatted])
            return
        variables, name = payload.get("variables"), payload.get("operationName")
        if not isinstance(query, str):
            self.close(4400, "a subscribe needs a query (or a trusted document's id)")
        elif variables is not None and not isinstance(variables, dict):
            self.close(4400, "variables must be an object")
        elif name is not None and not isinstance(name, str):
            self.close(4400, "operationName must be a string")
        else:
            self.operations[op_id] = self._start(self._run(op_id, query, variables, name))

    def _complete(self, op_id: Any) -> None:
        if not isinstance(op_id, str):
            self.close(4400, "a complete needs a string id")
            return
        entry = self.operations.pop(op_id, None)
        if isinstance(entry, Subscriber):
            self._stop(entry)
        elif entry is not None:
            entry.cancel()

    def _stop(self, subscriber: Subscriber) -> None:
        """The hub lets it go, and the task sending its backlog, if any, stops."""
        self.endpoint.hub.remove(subscriber)
        if subscriber.opening is not None:
            subscriber.opening.cancel()

    # -- operations ----------------------------------------------------------------------

    async def _run(
        self, op_id: str, query: str, variables: dict[str, Any] | None, name: str | None
    ) -> None:
        try:
            if operation_kind(query, name, self.endpoint.schema.limits.max_tokens) is (
                OperationType.SUBSCRIPTION
            ):
                await self._open(op_id, query, variables, name)
            else:
                await self._execute(op_id, query, variables, name)
        except Unreadable as unreadable:
            self.close(4400, unreadable.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an outage: masked, and logged in full
            if self.operations.get(op_id) is asyncio.current_task():  # else not ours now
                self._fail(op_id, exc)

    def _fail(self, op_id: str, exc: Exception) -> None:
        log.error("operation %s failed (request %s)", op_id, self.context.request_id, exc_info=exc)
        error = masked(GraphQLError(str(exc), original_error=exc), self.context.request_id)
        self._error(op_id, [error.formatted])

    async def _execute(
        self, op_id: str, query: str, variables: dict[str, Any] | None, name: str | None
    ) -> None:
        """A query or mutation: one `next`, then `complete` (or one `error`)."""
        try:
            result = await self.endpoint.schema.execute(
                query,
                variable_values=variables,
                context_value=self.context,
                operation_name=name,
                allowed_operation_types=(Operation.QUERY, Operation.MUTATION),
            )
        except CannotGetOperationTypeError as error:
            raise Unreadable(error.as_http_error_reason()) from None
        except (MissingQueryError, InvalidOperationTypeError) as error:
            raise Unreadable(str(error) or type(error).__name__) from None
        if self.operations.get(op_id) is not asyncio.current_task():
            return  # completed by the client meanwhile
        errors = [error.formatted for error in result.errors or ()]
        if isinstance(result, PreExecutionError):
            first = result.errors[0] if result.errors else None
            if isinstance(first, GraphQLSyntaxError):
                raise Unreadable(first.message)
            self._error(op_id, errors)
            return
        body: dict[str, Any] = {"data": result.data}
        if errors:
            body["errors"] = errors
        if result.extensions:
            body["extensions"] = result.extensions
        self.push(json.dumps({"id": op_id, "type": "next", "payload": body}))
        del self.operations[op_id]
        self.push(json.dumps({"id": op_id, "type": "complete"}))

    async def _open(
        self, op_id: str, query: str, variables: dict[str, Any] | None, name: str | None
    ) -> None:
        """A subscription: checked once, then its backlog, then held by the hub."""
        hub = self.endpoint.hub
        async with self.endpoint.opening:
            opened = await self.endpoint.schema.open_subscription(
                query, variables, self.context, name
            )
        if self.operations.get(op_id) is not asyncio.current_task():
            return
        if isinstance(opened, list):
            self._error(op_id, [error.formatted for error in opened])
            return
        opening = opened.opening
        subscriber = Subscriber(
            self, op_id, opening.scope, opened.selection, opening.after or START
        )
        # Held first, then the backlog read: a change committed in between is in both
        # and sent once (its mark); none falls between (resolvers/subscriptions.py).
        await hub.add(subscriber)
        if self.operations.get(op_id) is not asyncio.current_task():
            hub.remove(subscriber)  # completed meanwhile
            return
        self.operations[op_id] = subscriber  # from here the hub holds it
        subscriber.opening = asyncio.current_task()
        try:
            # Its pages are read a few subscriptions at a time (the opening gate).
            async for change in backlog(opening, self.endpoint.opening):
                payload, _ = await subscriber.selection.render(change, self.context)
                if not subscriber.held:
                    return  # completed, or ended (too far behind)
                subscriber.mark = change.position
                self.deliver(subscriber, payload)
            await hub.go_live(subscriber)
        except asyncio.CancelledError:
            hub.remove(subscriber)
            raise
        except Exception as exc:
            hub.remove(subscriber)
            if self.operations.get(op_id) is subscriber:  # not a newer one under its id
                self._fail(op_id, exc)
        finally:
            subscriber.opening = None

    def end(self, subscriber: Subscriber, error: PublicError) -> None:
        """The hub let a subscriber go (too far behind, live status interrupted)."""
        if subscriber.opening is not None:
            subscriber.opening.cancel()
        if self.operations.get(subscriber.id) is subscriber:
            self._error(subscriber.id, [_public(error)])

    def _error(self, op_id: str, errors: list[Any]) -> None:
        self.operations.pop(op_id, None)
        self.push(_error_frame(op_id, errors))

    def _start(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        if self.tasks is None:
            self.tasks = set()
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        if self.tasks is not None:
            self.tasks.discard(task)
            if not self.tasks:
                self.tasks = None
        for op_id, entry in list(self.operations.items()):
            if entry is task:  # ended without a last message (cancelled)
                del self.operations[op_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("a websocket operation failed", exc_info=task.exception())

    def _shutdown(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for entry in self.operations.values():
            if isinstance(entry, Subscriber):
                self._stop(entry)
        self.operations.clear()
        for task in list(self.tasks or ()):
            task.cancel()

    # -- frames ------------------------------------------------------------------------

    def deliver(self, subscriber: Subscriber, payload: str) -> None:
        """A subscriber's `next` (the hub's shared payload in its own frame). A client
        that lets too many frames wait has its subscriptions ended instead."""
        outbox = self.outbox
        if outbox is not None and len(outbox) >= self.endpoint.outbox_size:
            self._fell_behind()
        elif self.operations.get(subscriber.id) is subscriber:
            self.push(subscriber.frame(payload))

    def push(self, frame: str) -> None:
        """Send a frame after those before it: written at once when the socket takes
        it (almost always: no task, no queue), else queued behind the write that
        waits. Past twice the bound (a client that sends but never reads) the
        connection is closed."""
        if self.closing:
            return
        outbox = self.outbox
        if outbox is None:
            self._write({"type": "websocket.send", "text": frame})
        elif len(outbox) < 2 * self.endpoint.outbox_size:
            outbox.append(frame)
        else:  # it sends and never reads: what waits is dropped, and it is closed
            outbox.clear()
            self.close(1008, "too many messages waiting to be read")

    def close(self, code: int, reason: str) -> None:
        """Close the socket after what is already queued; nothing is sent after. (A
        close is always sent from the writer task, never by hand: a server's close may
        wait on a timeout, which belongs to the task that entered it.)"""
        if self.closing:
            return
        self.closing = True
        message = {"type": "websocket.close", "code": code, "reason": _fit(reason)}
        if self.outbox is None:
            self.outbox = deque()
            self.writer = asyncio.ensure_future(self._drain(None, None))
        self.outbox.append(message)  # after what is queued; _drain sends it last

    def _fell_behind(self) -> None:
        for entry in list(self.operations.values()):
            if isinstance(entry, Subscriber) and self.endpoint.hub.remove(entry):
                # queued past the bound: the client must learn why it hears no more
                self.operations.pop(entry.id, None)
                assert self.outbox is not None
                self.outbox.append(_error_frame(entry.id, [_public(too_slow())]))

    def _write(self, message: dict[str, Any]) -> None:
        """Start the ASGI send by hand: when it finishes without waiting (the socket's
        buffer has room), that was all; when it must wait for the client to read, a
        task finishes it and writes whatever is queued meanwhile."""
        sending: Any = self.send(message)
        if not inspect.iscoroutine(sending):  # another kind of awaitable: in a task
            self.outbox = deque()
            self.writer = asyncio.ensure_future(self._drain(sending, None))
            return
        try:
            waiting = sending.send(None)
        except StopIteration:
            return
        except Exception:  # the client is gone: its disconnect ends the connection
            self.closing = True
            return
        self.outbox = deque()
        self.writer = asyncio.ensure_future(self._drain(sending, waiting))

    async def _drain(self, sending: Any, waiting: Any) -> None:
        """Finish the send that had to wait (`sending`, started by hand and now
        `waiting`, or not started), then write what was queued behind it."""
        try:
            if sending is not None:
                await (sending if waiting is None else _resume(sending, waiting))
            while self.outbox:
                item = self.outbox.popleft()
                if isinstance(item, dict):  # the close: the last thing sent
                    await self.send(item)
                    return
                await self.send({"type": "websocket.send", "text": item})
        except Exception:
            self.closing = True  # the client is gone
        finally:
            self.outbox = None
            self.writer = None


@types.coroutine
def _resume(coroutine: Any, waiting: Any) -> Generator[Any, Any, Any]:
    """Go on with a coroutine started by hand (`send(None)`) that is now waiting on
    `waiting`: what `await coroutine` would have done from there (delegation, as
    `yield from` does it: what the task sends or throws in is passed on)."""
    while True:
        try:
            sent = yield waiting
        except BaseException as exc:
            try:
                waiting = coroutine.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value


@lru_cache(maxsize=256)
def operation_kind(query: str, name: str | None, max_tokens: int) -> OperationType | None:
    """The operation's type, to know which path runs it; None when the document does
    not parse or has no such operation (the path it then takes says why)."""
    try:
        operation = get_operation_ast(parse(query, max_tokens=max_tokens), name)
    except (GraphQLError, RecursionError):
        return None
    return operation.operation if operation is not None else None


def _error_frame(op_id: str, errors: list[Any]) -> str:
    return json.dumps({"id": op_id, "type": "error", "payload": errors})


def _public(error: PublicError) -> dict[str, Any]:
    """A PublicError as a GraphQL error: its message as it is, and its code."""
    return {"message": str(error), "extensions": {"code": getattr(error, "code", "ENDED")}}


def _fit(reason: str) -> str:
    """A close frame's reason holds at most 123 bytes of UTF-8."""
    encoded = reason.encode()
    if len(encoded) <= 123:
        return reason
    return encoded[:120].decode(errors="ignore") + "…"
