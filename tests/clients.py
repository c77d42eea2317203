"""Test support: a small GraphQL client over HTTP, and a graphql-transport-ws client
over a real websocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx

from models.write_path import Committed


class GraphQLError(AssertionError):
    pass


@dataclass
class Client:
    """Posts GraphQL over HTTP with a bearer token; raises on GraphQL errors."""

    url: str
    token: str | None
    http: httpx.AsyncClient

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.post(query, **variables)
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def post(self, query: str, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = await self.http.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            headers=headers,
        )
        result: dict[str, Any] = response.json()
        result["_status"] = response.status_code
        return result

    def as_(self, token: str | None) -> Client:
        return replace(self, token=token)


WAIT = 10  # seconds a websocket test waits for a message


class Subscription:
    """A graphql-transport-ws client over a real websocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = 0
        self._status: str | None = None  # the status of the last message read

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        http: httpx.AsyncClient,
        token: str | None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[Subscription]:
        from httpx_ws import aconnect_ws

        url = base_url.replace("http://", "ws://") + "/graphql"
        async with aconnect_ws(
            url, http, subprotocols=["graphql-transport-ws"], headers=headers or {}
        ) as ws:
            payload = {"Authorization": f"Bearer {token}"} if token else {}
            await ws.send_json({"type": "connection_init", "payload": payload})
            yield cls(ws)

    async def ack(self) -> None:
        message = await self.receive()
        assert message["type"] == "connection_ack", message

    async def subscribe(self, query: str, **variables: Any) -> str:
        self._ids += 1
        return await self.subscribe_as(str(self._ids), query, **variables)

    async def subscribe_as(self, op_id: str, query: str, **variables: Any) -> str:
        """Subscribe under an id of the caller's choosing (one used before, say)."""
        await self.ws.send_json(
            {"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables}}
        )
        return op_id

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = await asyncio.wait_for(self.ws.receive_json(), WAIT)
        return message

    async def next(self) -> dict[str, Any]:
        """The next data message's payload data; fails on an error or completion."""
        while True:
            message = await self.receive()
            if message["type"] == "ping":
                await self.ws.send_json({"type": "pong"})
                continue
            assert message["type"] == "next", message
            assert not message["payload"].get("errors"), message
            data: dict[str, Any] = message["payload"]["data"]
            change = data.get("paymentStatusChanged")
            if isinstance(change, dict) and "status" in change:
                self._status = change["status"]
            return data

    async def next_move(self) -> dict[str, Any]:
        """The next message whose status differs from the one before it: changes that
        leave the status where it was (a refund reserved, a webhook noted, …) are
        skipped. For tests about status moves; the others read every message."""
        before = self._status
        while True:
            data = await self.next()
            if data["paymentStatusChanged"]["status"] != before:
                return data

    async def refusal(self, op_id: str | None = None) -> str:
        """The error code of a refused subscription (an `error`, or a `next` with errors);
        with `op_id`, that subscription's (others' messages are passed over)."""
        message = await self.receive()
        while op_id is not None and message.get("id") != op_id:
            message = await self.receive()
        if message["type"] == "error":
            errors = message["payload"]
        else:
            assert message["type"] == "next", message
            errors = message["payload"].get("errors")
            assert errors, message
        code: str = errors[0]["extensions"]["code"]
        return code


def cursor_number(cursor: str) -> int:
    """The event number in a cursor (evt_<installation>_<number>)."""
    return int(cursor.rsplit("_", 1)[-1])


async def status_reaches(client: Client, payment_id: str, status: str) -> None:
    """Wait until the payment has `status` (webhooks arrive a moment after their cause)."""
    query = "query ($id: ID!) { paymentStatus(id: $id) }"
    deadline = time.monotonic() + WAIT
    while (await client(query, id=payment_id))["paymentStatus"] != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{payment_id} never became {status}")
        await asyncio.sleep(0.02)


class MemoryLog:
    """A log kept in memory, for tests of the hub's own work (queues, the broadcast):
    what the write path appends to payment_event, without a database. Two hubs given
    one MemoryLog stand for two workers on one database."""

    def __init__(self) -> None:
        self.changes: list[Any] = []

    def append(self, payment_id: str = "pay_x") -> Committed:
        from datetime import UTC, datetime

        from models.rules import PaymentStatus
        from resolvers.live import Change

        number = len(self.changes) + 1
        self.changes.append(
            Change(
                position=(0, number),
                event_id=number,
                type="payment.status_changed",
                payment_id=payment_id,
                order_id="ord_x",
                customer_id="cus_x",
                previous=PaymentStatus.PENDING,
                status=PaymentStatus.COMPLETED,
                occurred_at=datetime.now(UTC),
                as_of=None,  # type: ignore[arg-type]
            )
        )
        return Committed(xid=0, event_id=number, payment_id=payment_id, type="payment.x")

    async def end(self) -> tuple[int, int]:
        return self.changes[-1].position if self.changes else (0, 0)

    async def read(self, mark: tuple[int, int], limit: int) -> tuple[list[Any], bool]:
        return [c for c in self.changes if c.position > mark][:limit], False


class EventIds:
    """A selection for tests of the hub alone: renders a change as its event id."""

    key = "event-ids"

    async def render(self, change: Any, context: Any) -> tuple[str, bool]:
        return json.dumps({"data": change.event_id}), True


class Listening:
    """A subscriber held by a hub, its connection in memory: the event ids the hub
    writes to it, in order, and how it was ended (get raises that error)."""

    context = None

    def __init__(self) -> None:
        self.ids: deque[int] = deque()
        self.error: Exception | None = None
        self._arrived = asyncio.Event()

    def deliver(self, subscriber: Any, payload: str) -> None:
        self.ids.append(json.loads(payload)["data"])
        self._arrived.set()

    def end(self, subscriber: Any, error: Exception) -> None:
        self.error = error
        self._arrived.set()

    async def get(self) -> int:
        while not self.ids:
            if self.error is not None:
                raise self.error
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), WAIT)
        return self.ids.popleft()


@asynccontextmanager
async def listening(hub: Any, live: bool = True, scope: Any = None) -> AsyncIterator[Listening]:
    """Hold a subscriber in `hub`: to every change, or to those of `scope`; live at
    once unless `live` is False (then as if its backlog were still being sent)."""
    from models.access import Actor
    from resolvers.live import Subscriber
    from resolvers.subscriptions import Scope

    connection = Listening()
    scope = scope or Scope(Actor("admin", "admin"), None, None)
    subscriber = Subscriber(connection, "1", scope, EventIds())
    await hub.add(subscriber)
    if live:
        await hub.go_live(subscriber)
    try:
        yield connection
    finally:
        hub.remove(subscriber)
