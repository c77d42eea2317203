"""Live status: the event log, read once per process and fanned out to local listeners.

Every committed change is an audit event with its position and its snapshot
(models/event_log.py, models/snapshots.py). The hub follows the log: after each
commit the write path broadcasts that the log grew (memory:// in one process, Redis
across many), and the hub reads what is new, in order, below the horizon that makes
positions final, and hands each change to every listener. A message is a doorbell,
never the data: a lost or late one delays a change, never reorders or loses it (the
hub also looks every second while anyone listens). broadcaster's own per-subscriber
queues are unbounded and its concurrent-subscribe race loses subscribers (see the
stack notes), so the hub subscribes once, for the app's lifetime; each listener has a
bounded backlog, and one that falls too far behind is closed rather than let memory
grow. The hub is also the publisher the write path calls after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry.trace import SpanKind

from models import event_log
from models.errors import PublicError
from models.event_log import Position
from models.rules import PaymentStatus
from models.snapshots import AsOf, as_of
from models.spans import span
from models.tables import PaymentEvent
from models.write_path import Committed
from resolvers.broadcast import CONNECTION_LOST

log = logging.getLogger("payql.live")

CHANNEL = "payql.payment-status"
RECONNECT_FIRST = 0.2  # seconds; doubling up to
RECONNECT_MAX = 5.0
# While anyone listens, the log is read at least this often (a doorbell lost with a
# process that died between its commit and its publish).
POLL_S = 1.0
# A newer change waits for an older transaction to end: looked at again after this,
# doubling up to HELD_MAX.
HELD_FIRST = 0.005
HELD_MAX = 0.2
# Held that long, the wait is said in the log (a transaction left open somewhere).
HELD_WARNING_S = 5.0
BATCH = 500
# Subscription results per (operation, variables, caller, change): see schema/fanout.py.
SHARED_RENDERS = 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One committed change, as subscribers are sent it: the audit event and the
    payment as it left it."""

    position: Position
    event_id: int
    type: str
    payment_id: str
    order_id: str
    customer_id: str
    previous: PaymentStatus | None
    status: PaymentStatus
    occurred_at: datetime
    as_of: AsOf
    live: bool = False  # read by the hub (shared by its listeners), not a replay


async def change_of(event: PaymentEvent, live: bool = False) -> Change:
    state = await as_of(event)
    payment = state.payment
    moved = event.to_status is not None
    return Change(
        position=event_log.position(event),
        event_id=event.id,
        type=event.type,
        payment_id=event.payment_id,
        order_id=payment.order_id,
        customer_id=payment.customer_id,
        # A change that left the status where it was says so: both are that status.
        previous=event.from_status if moved else payment.status,
        status=event.to_status if event.to_status is not None else payment.status,
        occurred_at=event.created_at,
        as_of=state,
        live=live,
    )


class Log(Protocol):
    """Where the hub reads committed changes."""

    async def end(self) -> Position: ...

    async def read(self, mark: Position, limit: int) -> tuple[list[Change], bool]:
        """The final changes after `mark`, oldest first, at most `limit`; and whether
        newer ones are held back (committed, but an older transaction still runs)."""
        ...


class EventLog:
    """The payment_event table."""

    async def end(self) -> Position:
        return await event_log.end()

    async def read(self, mark: Position, limit: int) -> tuple[list[Change], bool]:
        rows, horizon = await event_log.newer(mark, limit)
        final = [row for row in rows if row.xid < horizon]
        return [await change_of(row, live=True) for row in final], len(final) < len(rows)


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
        self.items: deque[Change] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.interrupted = False

    def offer(self, change: Change) -> None:
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

    async def get(self) -> Change:
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
    def __init__(
        self, broadcast: Any, queue_size: int = 1000, log: Log | None = None, poll_s: float = POLL_S
    ) -> None:
        self.broadcast = broadcast
        self.queue_size = queue_size
        self.log: Log = log or EventLog()
        self.poll_s = poll_s
        self.listeners: set[Listener] = set()
        # The last change handed to listeners: they get every change after it.
        self.position: Position = event_log.START
        self._reading = asyncio.Lock()  # one reader of the log at a time
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tailing: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.connected = False  # the broadcast subscription is up (/readyz)
        self.renders: Shared[Any] = Shared(SHARED_RENDERS)

    async def publish(self, change: Committed) -> None:
        attributes = {
            "messaging.operation.type": "send",
            "messaging.destination.name": CHANNEL,
            "payql.payment.id": change.payment_id,
            "payql.event.type": change.type,
            "payql.cursor": change.event_id,
        }
        async with span("payql.publish", attributes, kind=SpanKind.PRODUCER):
            await self.broadcast.publish(CHANNEL, change.to_json())

    async def start(self) -> None:
        self.position = await self.log.end()
        self._tailing = asyncio.create_task(self._tail(), name="payql-live-log")
        self._task = asyncio.create_task(self._run(), name="payql-live-hub")
        await self._ready.wait()

    async def stop(self) -> None:
        for task in (self._task, self._tailing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.connected:  # else _run disconnected it when the connection was lost
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
                        self._wake.set()
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

    async def _tail(self) -> None:
        """Read the log when told it grew (and every poll_s while anyone listens, and
        soon again while newer changes wait for an older transaction)."""
        held_delay: float | None = None
        held_since: float | None = None
        warned = False
        while True:
            timeout = held_delay if held_delay is not None else self.poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout if self.listeners else None)
            self._wake.clear()
            try:
                held = await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: again at the next poll or commit
                log.exception("could not read the event log; trying again")
                held = False
            if held:
                held_delay = min(held_delay * 2, HELD_MAX) if held_delay else HELD_FIRST
                held_since = held_since or time.monotonic()
                if time.monotonic() - held_since > HELD_WARNING_S and not warned:
                    warned = True
                    log.warning(
                        "live status has waited %.0f s for an older transaction to end: "
                        "one left open (idle in transaction, a long batch) holds back "
                        "every change; set idle_in_transaction_session_timeout",
                        time.monotonic() - held_since,
                    )
            else:
                held_delay, held_since, warned = None, None, False

    async def _catch_up(self) -> bool:
        async with self._reading:
            if not self.listeners:
                # No one to tell: the log is not read at all (the first listener to
                # come moves the hub to the log's end: see listen).
                return False
            while True:
                changes, held = await self.log.read(self.position, BATCH)
                for change in changes:
                    for listener in list(self.listeners):
                        listener.offer(change)
                    self.position = change.position
                if held or len(changes) < BATCH:
                    return held

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Listener]:
        """Every change after the hub's position when this is entered, in order: read
        the backlog after entering it, and nothing falls between the two. (A hub no
        one listened to first moves to the end of the log: the listener's backlog
        holds what came before.)"""
        listener = Listener(self.queue_size)
        if not self.listeners:
            async with self._reading:
                if not self.listeners:  # the log may have grown while no one listened
                    self.position = max(self.position, await self.log.end())
                self.listeners.add(listener)
            self._wake.set()  # the log is polled while anyone listens: from now
        else:
            self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)
