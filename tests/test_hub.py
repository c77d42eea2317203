"""The live hub: one broadcast subscription, subscribers held as records; and a
connection's frames: written at once, queued behind a slow client, bounded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from broadcaster import Broadcast
from clients import EventIds, MemoryLog, listening

from models.access import Actor
from models.write_path import Committed
from payql.graphql_ws import Connection
from resolvers.live import Hub, SlowSubscriber, Subscriber
from resolvers.subscriptions import Scope


async def test_a_subscriber_whose_backlog_is_still_sent_may_have_only_so_many_waiting() -> None:
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), queue_size=3, log=log)
    await hub.start()
    try:
        # given one subscriber whose backlog is still being sent, and one live
        async with listening(hub, live=False) as slow, listening(hub) as keeping_up:
            # when five changes are committed meanwhile
            for number in range(1, 6):
                await hub.publish(log.append())
                assert await keeping_up.get() == number
            # then the live one got all, and the other is ended with a clear message
            with pytest.raises(SlowSubscriber, match="resubscribe with `after`"):
                await slow.get()
        assert hub.count == 0
    finally:
        await hub.stop()


async def test_a_change_whose_message_was_lost_still_arrives_by_the_poll() -> None:
    # given a hub that looks at the log every 50 ms while anyone listens
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), log=log, poll_s=0.05)
    await hub.start()
    try:
        async with listening(hub) as listener:
            # when a change is committed and its message never sent (its process died)
            log.append()
            # then the subscriber gets it all the same
            assert await listener.get() == 1
    finally:
        await hub.stop()


async def test_a_hub_with_no_subscribers_moves_to_the_end_and_replays_nothing_old() -> None:
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), log=log)
    await hub.start()
    try:
        # given changes committed while no one listened
        for _ in range(3):
            await hub.publish(log.append())
        await asyncio.sleep(0.05)
        # (a hub no one listens to does not read the log at all)
        assert hub.position == (0, 0)
        # when someone listens and one more change comes
        async with listening(hub) as listener:
            await hub.publish(log.append())
            # then they get that one, not the three before they came
            assert await listener.get() == 4
    finally:
        await hub.stop()


class Watching(Scope):
    """A scope that counts the changes it was asked about."""

    asked: list[str] = []

    def matches(self, change: Any) -> bool:
        Watching.asked.append(f"{self.payment_id} <- {change.payment_id}")
        return super().matches(change)


async def test_a_change_is_looked_at_only_by_its_own_payments_subscribers() -> None:
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), log=log)
    await hub.start()
    admin = Actor("admin", "admin")
    Watching.asked.clear()
    try:
        async with (
            listening(hub, scope=Watching(admin, "pay_a", None)) as a,
            listening(hub, scope=Watching(admin, "pay_b", None)) as b,
        ):
            # when changes to the two payments are committed
            await hub.publish(log.append("pay_a"))
            await hub.publish(log.append("pay_b"))
            # then each subscriber gets its own payment's
            assert await a.get() == 1
            assert await b.get() == 2
            # and was not even asked about the other's
            assert Watching.asked == ["pay_a <- pay_a", "pay_b <- pay_b"]
    finally:
        await hub.stop()


async def test_messages_are_small_json_strings() -> None:
    text = Committed(xid=812, event_id=7, payment_id="pay_x", type="refund.succeeded").to_json()
    assert isinstance(text, str) and len(text) < 200
    assert '"id":7' in text and '"xid":812' in text


# -- a connection's frames ---------------------------------------------------------------


class Socket:
    """An ASGI send whose client reads only when told to (`reading`)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.reading = asyncio.Event()
        self.reading.set()

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.reading.wait()
        self.sent.append(message)

    def frames(self) -> list[Any]:
        return [json.loads(m["text"]) if "text" in m else m for m in self.sent]


class Endpoint:
    def __init__(self, hub: Hub, outbox_size: int) -> None:
        self.hub = hub
        self.outbox_size = outbox_size


def connection(hub: Hub, socket: Socket, outbox_size: int = 3) -> Connection:
    return Connection(Endpoint(hub, outbox_size), socket, None)  # type: ignore[arg-type]


async def test_frames_are_written_at_once_while_the_client_reads() -> None:
    socket = Socket()
    conn = connection(Hub(Broadcast("memory://"), log=MemoryLog()), socket)
    # when three frames are pushed to a client that reads
    for n in range(3):
        conn.push(json.dumps({"n": n}))
    # then all three were written before anything awaited, with nothing queued
    assert socket.frames() == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert conn.outbox is None and conn.writer is None


async def test_frames_wait_in_order_behind_a_slow_client_and_its_close_comes_last() -> None:
    socket = Socket()
    conn = connection(Hub(Broadcast("memory://"), log=MemoryLog()), socket)
    # given a client that stopped reading
    socket.reading.clear()
    conn.push('{"n":0}')
    conn.push('{"n":1}')
    conn.close(4400, "bye")
    conn.push('{"n":2}')  # after the close: never sent
    assert socket.sent == []
    # when it reads again
    socket.reading.set()
    assert conn.writer is not None
    await conn.writer
    # then the frames went in order, the close last
    assert socket.frames() == [
        {"n": 0},
        {"n": 1},
        {"type": "websocket.close", "code": 4400, "reason": "bye"},
    ]
    assert conn.outbox is None


async def test_a_client_that_lets_too_many_frames_wait_has_its_subscriptions_ended() -> None:
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), log=log)
    await hub.start()
    try:
        socket = Socket()
        conn = connection(hub, socket, outbox_size=3)
        subscriber = Subscriber(conn, "s1", Scope(Actor("admin", "admin"), None, None), EventIds())
        await hub.add(subscriber)
        conn.operations["s1"] = subscriber
        await hub.go_live(subscriber)
        # given a client that stopped reading
        socket.reading.clear()
        # when more changes come than may wait for it (one being written, three queued)
        for _ in range(6):
            await hub.publish(log.append())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if hub.count == 0:
                break
        # then its subscription is ended, and the hub no longer holds it
        assert hub.count == 0 and conn.operations == {}
        # and once it reads, it gets what was queued, then why it hears no more
        socket.reading.set()
        assert conn.writer is not None
        await conn.writer
        frames = socket.frames()
        assert [f["payload"]["data"] for f in frames[:-1]] == [1, 2, 3, 4]
        assert frames[-1]["type"] == "error" and frames[-1]["id"] == "s1"
        assert "resubscribe with `after`" in frames[-1]["payload"][0]["message"]
        assert frames[-1]["payload"][0]["extensions"]["code"] == "SUBSCRIBER_TOO_SLOW"
    finally:
        await hub.stop()


class Failing:
    """A selection whose renders come back with errors (each then its subscriber's own),
    or raise."""

    key = "failing"

    def __init__(self, raises: bool = False) -> None:
        self.raises = raises
        self.renders: list[Any] = []

    async def render(self, change: Any, context: Any) -> tuple[str, bool]:
        self.renders.append(context)
        if self.raises:
            raise RuntimeError("the database went away")
        return json.dumps({"data": None, "errors": [{"message": str(context)}]}), False


class Recording:
    """A connection that records the payloads delivered to it, and how it was ended."""

    def __init__(self, name: str) -> None:
        self.context = name
        self.payloads: list[Any] = []
        self.ended: list[Exception] = []

    def deliver(self, subscriber: Any, payload: str) -> None:
        self.payloads.append(json.loads(payload))

    def end(self, subscriber: Any, error: Exception) -> None:
        self.ended.append(error)


async def test_a_render_with_errors_is_not_handed_on_each_subscriber_renders_its_own() -> None:
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), log=log)
    await hub.start()
    try:
        # given two subscribers with the same selection, whose renders have errors
        selection = Failing()
        connections = [Recording("first"), Recording("second")]
        scope = Scope(Actor("admin", "admin"), None, None)
        for n, connection in enumerate(connections):
            subscriber = Subscriber(connection, f"s{n}", scope, selection)  # type: ignore[arg-type]
            await hub.add(subscriber)
            await hub.go_live(subscriber)
        # when a change comes
        await hub.publish(log.append())
        for _ in range(200):
            if all(c.payloads for c in connections):
                break
            await asyncio.sleep(0.01)
        # then each was rendered for its own connection, and got its own errors
        assert sorted(selection.renders) == ["first", "second"]
        assert [c.payloads[0]["errors"][0]["message"] for c in connections] == [
            "first",
            "second",
        ]
    finally:
        await hub.stop()


async def test_a_change_that_cannot_be_rendered_ends_its_subscribers_clearly() -> None:
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), log=log)
    await hub.start()
    try:
        connection = Recording("only")
        scope = Scope(Actor("admin", "admin"), None, None)
        subscriber = Subscriber(connection, "s", scope, Failing(raises=True))  # type: ignore[arg-type]
        await hub.add(subscriber)
        await hub.go_live(subscriber)
        # when a change comes that its selection fails to render
        await hub.publish(log.append())
        for _ in range(200):
            if connection.ended:
                break
            await asyncio.sleep(0.01)
        # then it is ended, told to resubscribe, never left waiting for a lost change
        assert [str(e) for e in connection.ended] == [
            "live status could not send a change: resubscribe with `after`"
        ]
        assert hub.count == 0
    finally:
        await hub.stop()
