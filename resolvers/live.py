"""Live status: one broadcast subscription per process, fanned out to local listeners.

broadcaster's own per-subscriber queues are unbounded and its concurrent-subscribe
race loses subscribers (see the stack notes), so the hub subscribes once, for the
app's lifetime, and hands each message to bounded listener queues. A listener that
falls too far behind is closed rather than let memory grow. The hub is also the
publisher the write path calls after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from models.commands import StatusChange
from models.errors import PublicError
from models.tables import Payment
from resolvers.broadcast import CONNECTION_LOST

log = logging.getLogger("payql.live")

CHANNEL = "payql.payment-status"
RECONNECT_FIRST = 0.2  # seconds; doubling up to
RECONNECT_MAX = 5.0
# Payment reads shared between subscribers, kept for the most recent changes.
SHARED_READS = 256


@dataclass(frozen=True)
class LiveChange:
    cursor: int
    payment_id: str
    order_id: str
    customer_id: str
    previous: str | None
    status: str
    occurred_at: str

    @classmethod
    def parse(cls, message: str) -> LiveChange:
        d = json.loads(message)
        return cls(
            cursor=int(d["cursor"]),
            payment_id=d["paymentId"],
            order_id=d["orderId"],
            customer_id=d["customerId"],
            previous=d["previous"],
            status=d["status"],
            occurred_at=d["occurredAt"],
        )


class SlowSubscriber(PublicError):
    """The subscriber fell too far behind and was closed."""


class Interrupted(PublicError):
    """The broadcast connection was lost: changes may have been missed meanwhile."""


class Listener:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[LiveChange | None] = asyncio.Queue(maxsize=size)
        self.overflowed = False
        self.interrupted = False

    def offer(self, change: LiveChange) -> None:
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True

    def interrupt(self) -> None:
        self.interrupted = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)  # wakes a waiting reader

    async def get(self) -> LiveChange:
        if self.overflowed:
            raise SlowSubscriber(
                "this subscription fell too far behind and was closed: resubscribe with `after`"
            )
        change = None if self.interrupted else await self.queue.get()
        if change is None:
            raise Interrupted("live status lost its broadcast connection: resubscribe with `after`")
        return change


class Hub:
    def __init__(self, broadcast: Any, queue_size: int = 1000) -> None:
        self.broadcast = broadcast
        self.queue_size = queue_size
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._reads: dict[tuple[str, int], asyncio.Future[Payment]] = {}

    async def publish(self, change: StatusChange) -> None:
        await self.broadcast.publish(CHANNEL, change.to_json())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="payql-live-hub")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.broadcast.disconnect()

    async def _run(self) -> None:
        """Connect and hold the one subscription. When the connection is lost, end the
        listeners (they resume with `after`) and reconnect, backing off, until it is
        back. Queries and mutations never wait on this."""
        delay = RECONNECT_FIRST
        while True:
            try:
                await self.broadcast.connect()
                async with self.broadcast.subscribe(CHANNEL) as subscriber:
                    self._ready.set()
                    delay = RECONNECT_FIRST
                    async for event in subscriber:
                        if event.message == CONNECTION_LOST:
                            raise ConnectionError("the broadcast connection was lost")
                        self._deliver(event.message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live status lost its broadcast (%s); reconnecting", exc)
            for listener in list(self.listeners):
                listener.interrupt()
            self._ready.set()  # start() does not wait on a broadcast that is down
            with contextlib.suppress(Exception):
                await self.broadcast.disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def _deliver(self, message: str) -> None:
        try:
            change = LiveChange.parse(message)
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a malformed broadcast message")
            return
        for listener in list(self.listeners):
            listener.offer(change)

    async def payment_after(self, payment_id: str, cursor: int) -> Payment:
        """The payment as read after change `cursor` committed, read once per process
        however many subscribers send that change: the first asks the database, the
        others wait for the same answer. Any read made after the change arrived shows
        it (or something newer), so sharing it is as fresh as reading it again."""
        key = (payment_id, cursor)
        read = self._reads.get(key)
        if read is None:
            read = asyncio.ensure_future(Payment.get(id=payment_id))
            self._reads[key] = read
            read.add_done_callback(lambda done: self._forget_failed(key, done))
            while len(self._reads) > SHARED_READS:
                self._reads.pop(next(iter(self._reads)))
        # A subscriber that goes away must not cancel the read the others wait for.
        return await asyncio.shield(read)

    def _forget_failed(self, key: tuple[str, int], read: asyncio.Future[Payment]) -> None:
        failed = read.cancelled() or read.exception() is not None
        if failed and self._reads.get(key) is read:
            del self._reads[key]

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Listener]:
        listener = Listener(self.queue_size)
        self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)
