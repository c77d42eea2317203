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
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opentelemetry.trace import SpanKind

from models.errors import PublicError
from models.spans import span
from models.tables import Payment
from models.write_path import StatusChange
from resolvers.broadcast import CONNECTION_LOST

log = logging.getLogger("payql.live")

CHANNEL = "payql.payment-status"
RECONNECT_FIRST = 0.2  # seconds; doubling up to
RECONNECT_MAX = 5.0
# Work shared between subscribers (payment reads, renders), kept for recent changes.
SHARED_READS = 256
SHARED_RENDERS = 1024

T = TypeVar("T")


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
    """One subscriber's bounded backlog of live changes: a deque and, while the
    subscriber waits, one future to wake it (lighter than an asyncio.Queue, which
    holds three deques and an Event per subscriber)."""

    __slots__ = ("interrupted", "items", "overflowed", "size", "waiter")

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: deque[LiveChange] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.interrupted = False

    def offer(self, change: LiveChange) -> None:
        if len(self.items) >= self.size:
            self.overflowed = True
        else:
            self.items.append(change)
        self._wake()

    def interrupt(self) -> None:
        self.interrupted = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self) -> LiveChange:
        while True:
            if self.overflowed:
                raise SlowSubscriber(
                    "this subscription fell too far behind and was closed: resubscribe with `after`"
                )
            if self.interrupted:
                raise Interrupted(
                    "live status lost its broadcast connection: resubscribe with `after`"
                )
            if self.items:
                return self.items.popleft()
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None


class Shared(Generic[T]):
    """Work done once per process however many subscribers need it: the first caller
    starts it, the others await the same answer. The most recent `size` answers are
    kept; one that failed is forgotten, so the next caller tries again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._work: dict[Hashable, asyncio.Future[T]] = {}

    async def get(self, key: Hashable, start: Callable[[], Awaitable[T]]) -> T:
        work = self._work.get(key)
        if work is None:
            work = asyncio.ensure_future(start())
            self._work[key] = work
            work.add_done_callback(lambda done: self._forget_failed(key, done))
            while len(self._work) > self.size:
                self._work.pop(next(iter(self._work)))
        # A subscriber that goes away must not cancel the work the others wait for.
        return await asyncio.shield(work)

    def _forget_failed(self, key: Hashable, work: asyncio.Future[T]) -> None:
        failed = work.cancelled() or work.exception() is not None
        if failed and self._work.get(key) is work:
            del self._work[key]


class Hub:
    def __init__(self, broadcast: Any, queue_size: int = 1000) -> None:
        self.broadcast = broadcast
        self.queue_size = queue_size
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.connected = False  # the broadcast subscription is up (/readyz)
        self._reads: Shared[Payment] = Shared(SHARED_READS)
        # Subscription results per (operation, variables, caller, change): see
        # schema/fanout.py.
        self.renders: Shared[Any] = Shared(SHARED_RENDERS)

    async def publish(self, change: StatusChange) -> None:
        attributes = {
            "messaging.operation.type": "send",
            "messaging.destination.name": CHANNEL,
            "payql.payment.id": change.payment_id,
            "payql.payment.status": change.status.value,
            "payql.cursor": change.cursor,
        }
        async with span("payql.publish", attributes, kind=SpanKind.PRODUCER):
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
                    self.connected = True
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
            self.connected = False
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
        return await self._reads.get((payment_id, cursor), lambda: Payment.get(id=payment_id))

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Listener]:
        listener = Listener(self.queue_size)
        self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)
