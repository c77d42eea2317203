"""Live status: the event log, read once per process, and the subscribers it feeds.

Every committed change is an audit event with its position and its snapshot
(models/event_log.py, models/snapshots.py). The hub follows the log: after each
commit the write path broadcasts that the log grew (memory:// in one process, Redis
across many), and the hub reads what is new, in order, below the horizon that makes
positions final. A message is a doorbell, never the data: a lost or late one delays a
change, never reorders or loses it (the hub also looks every second while anyone
listens). broadcaster's own per-subscriber queues are unbounded and its
concurrent-subscribe race loses subscribers (see the stack notes), so the hub
subscribes once, for the app's lifetime.

Subscribers are records the hub holds (Subscriber), indexed by the payment or order
they watch, with no task or generator each: for each change the hub renders the
`next` payload once per selection key (the same document, variables and view of the
data) and writes one frame per subscriber to its connection (payql/graphql_ws.py),
which bounds what may wait to be sent. The hub is also the publisher the write path
calls after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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


async def change_of(event: PaymentEvent) -> Change:
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
        return [await change_of(row) for row in final], len(final) < len(rows)


class SlowSubscriber(PublicError):
    """The subscriber fell too far behind and was closed."""

    code = "SUBSCRIBER_TOO_SLOW"


class Interrupted(PublicError):
    """The broadcast connection was lost: changes may have been missed meanwhile."""

    code = "LIVE_STATUS_INTERRUPTED"


def too_slow() -> SlowSubscriber:
    return SlowSubscriber(
        "this subscription fell too far behind and was closed: resubscribe with `after`"
    )


class NotRendered(PublicError):
    """A change could not be rendered for a subscriber (the database away, a bug)."""

    code = "INTERNAL_SERVER_ERROR"


def could_not_render() -> NotRendered:
    return NotRendered("live status could not send a change: resubscribe with `after`")


async def _render_all(
    change: Change, subscribers: list[Subscriber]
) -> list[tuple[str, bool] | BaseException]:
    """Each subscriber's selection rendered for the change (one: in this task)."""
    if len(subscribers) == 1:
        only = subscribers[0]
        try:
            return [await only.selection.render(change, only.connection.context)]
        except Exception as exc:
            log.exception("could not render a change for its subscribers")
            return [exc]
    renders = await asyncio.gather(
        *(s.selection.render(change, s.connection.context) for s in subscribers),
        return_exceptions=True,
    )
    for render in renders:
        if isinstance(render, Exception):
            log.error("could not render a change for its subscribers", exc_info=render)
    return renders


def interrupted() -> Interrupted:
    return Interrupted("live status lost its broadcast connection: resubscribe with `after`")


class Selection(Protocol):
    """What a subscription asked for (its document, variables and caller's view), able
    to render a change: schema/subscription.py."""

    # Subscribers whose keys are equal are sent the same render of a change.
    key: Hashable

    async def render(self, change: Change, context: Any) -> tuple[str, bool]:
        """The `next` payload as JSON text, and whether others with the same key may be
        sent it too (a render with errors is not: each has its own request id)."""
        ...


class Connection(Protocol):
    """Where a subscriber's frames go: payql/graphql_ws.py."""

    context: Any

    def deliver(self, subscriber: Subscriber, payload: str) -> None:
        """Send the subscriber a `next` with this payload, after what is queued; a
        connection too far behind ends its subscriptions instead."""
        ...

    def end(self, subscriber: Subscriber, error: PublicError) -> None:
        """End one subscription with an error (the hub has already let it go)."""
        ...


class Subscriber:
    """One subscription as the hub holds it: a record (its connection, its id, its
    scope, its selection), with no task or generator of its own. The hub writes its
    frames; while its backlog is being sent, live changes wait in `pending`."""

    __slots__ = (
        "connection",
        "held",
        "id",
        "mark",
        "opening",
        "pending",
        "prefix",
        "scope",
        "selection",
    )

    def __init__(
        self,
        connection: Connection,
        op_id: str,
        scope: Scope,
        selection: Selection,
        mark: Position = event_log.START,
    ) -> None:
        self.connection = connection
        self.id = op_id
        self.scope = scope
        self.selection = selection
        # Every change at or before this was sent (or is not for it): sent once only.
        self.mark = mark
        self.pending: list[Change] | None = []
        self.held = False  # by the hub
        # The connection's task sending its backlog, while it does (stopped with it).
        self.opening: asyncio.Task[None] | None = None
        # The frame up to its payload: `next` frames are this, a shared payload, "}".
        self.prefix = '{"id":' + json.dumps(op_id) + ',"type":"next","payload":'

    def frame(self, payload: str) -> str:
        return self.prefix + payload + "}"


class Scope(Protocol):
    """Which changes a subscriber is sent (resolvers/subscriptions.py)."""

    @property
    def payment_id(self) -> str | None: ...

    @property
    def order_id(self) -> str | None: ...

    def matches(self, change: Change) -> bool: ...


class Hub:
    """Follows the log, holds this process's subscribers, and writes their frames."""

    def __init__(
        self, broadcast: Any, queue_size: int = 1000, log: Log | None = None, poll_s: float = POLL_S
    ) -> None:
        self.broadcast = broadcast
        self.queue_size = queue_size  # live changes a subscriber may have waiting
        self.log: Log = log or EventLog()
        self.poll_s = poll_s
        # Subscribers by what they watch: a change is looked at only by its payment's,
        # its order's and those who watch all (admins).
        self._by_payment: dict[str, set[Subscriber]] = {}
        self._by_order: dict[str, set[Subscriber]] = {}
        self._everyone: set[Subscriber] = set()
        self.count = 0  # subscribers held (/metrics)
        # The last change handed to subscribers: they get every change after it.
        self.position: Position = event_log.START
        self._reading = asyncio.Lock()  # one reader of the log at a time
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tailing: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.connected = False  # the broadcast subscription is up (/readyz)

    async def publish(self, change: Committed) -> None:
        attributes = {
            "messaging.operation.type": "send",
            "messaging.destination.name": CHANNEL,
            "payql.payment.id": change.payment_id,
            "payql.event.type": change.type,
            "payql.cursor": change.event_id,
        }
        # This process's hub reads it now, not when its own broadcast comes back
        # (which, then, is no news: see _is_news).
        self._wake.set()
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

    # -- subscribers --------------------------------------------------------------------

    async def add(self, subscriber: Subscriber) -> None:
        """Hold `subscriber`: every change after the hub's position now is its (kept in
        its `pending` until `go_live`). Read its backlog after this, and nothing falls
        between the two. (A hub no one listened to first moves to the end of the log:
        the backlog holds what came before.)"""
        if not self.count:
            async with self._reading:
                if not self.count:  # the log may have grown while no one listened
                    self.position = max(self.position, await self.log.end())
                self._hold(subscriber)
            self._wake.set()  # the log is polled while anyone listens: from now
        else:
            self._hold(subscriber)

    def _hold(self, subscriber: Subscriber) -> None:
        self._index(subscriber).add(subscriber)
        subscriber.held = True
        self.count += 1

    def remove(self, subscriber: Subscriber) -> bool:
        """Let it go; False if the hub no longer held it."""
        if not subscriber.held:
            return False
        subscriber.held = False
        subscriber.pending = None
        index, key = self._place(subscriber.scope)
        held = self._everyone if index is None else index[key]
        held.discard(subscriber)
        if index is not None and not held:
            del index[key]
        self.count -= 1
        return True

    async def go_live(self, subscriber: Subscriber) -> None:
        """Its backlog sent: send what came meanwhile (none twice), then live changes as
        they come."""
        while subscriber.pending:
            change = subscriber.pending.pop(0)
            if change.position > subscriber.mark:
                subscriber.mark = change.position
                payload, _ = await subscriber.selection.render(
                    change, subscriber.connection.context
                )
                if not subscriber.held:  # ended meanwhile
                    return
                subscriber.connection.deliver(subscriber, payload)
        if subscriber.held:
            subscriber.pending = None

    def _place(self, scope: Scope) -> tuple[dict[str, set[Subscriber]] | None, str]:
        """Where a subscriber of this scope is held: by its payment, by its order, or
        (None) among those who watch everything."""
        if scope.payment_id is not None:
            return self._by_payment, scope.payment_id
        if scope.order_id is not None:
            return self._by_order, scope.order_id
        return None, ""

    def _index(self, subscriber: Subscriber) -> set[Subscriber]:
        index, key = self._place(subscriber.scope)
        return self._everyone if index is None else index.setdefault(key, set())

    def _audience(self, change: Change) -> list[Subscriber]:
        audience = list(self._everyone)
        for index, key in (
            (self._by_payment, change.payment_id),
            (self._by_order, change.order_id),
        ):
            held = index.get(key)
            if held:
                audience += held
        return audience

    def _end(self, subscriber: Subscriber, error: PublicError) -> None:
        if self.remove(subscriber):
            subscriber.connection.end(subscriber, error)

    async def _deliver(self, change: Change) -> None:
        """One change to every subscriber it is for: rendered once per selection key
        (distinct keys side by side), and written as one frame to each."""
        ready: list[Subscriber] = []
        for subscriber in self._audience(change):
            if not subscriber.scope.matches(change):
                continue
            pending = subscriber.pending
            if pending is not None:  # its backlog is still being sent
                if len(pending) >= self.queue_size:
                    self._end(subscriber, too_slow())
                else:
                    pending.append(change)
            elif change.position > subscriber.mark:
                ready.append(subscriber)
        if not ready:
            return
        firsts: dict[Hashable, Subscriber] = {}
        for subscriber in ready:
            firsts.setdefault(subscriber.selection.key, subscriber)
        renders = await _render_all(change, list(firsts.values()))
        payloads = dict(zip(firsts, renders, strict=True))
        for subscriber in ready:
            render = payloads[subscriber.selection.key]
            if isinstance(render, BaseException):
                self._end(subscriber, could_not_render())
                continue
            payload, shared = render
            if not shared and firsts[subscriber.selection.key] is not subscriber:
                try:  # its own, with its own request id in any masked error
                    payload, _ = await subscriber.selection.render(
                        change, subscriber.connection.context
                    )
                except Exception:
                    log.exception("could not render a change for a subscriber")
                    self._end(subscriber, could_not_render())
                    continue
            if subscriber.held:  # (not ended while others were rendered)
                subscriber.mark = change.position
                subscriber.connection.deliver(subscriber, payload)

    # -- following the log -------------------------------------------------------------

    async def _run(self) -> None:
        """Connect and hold the one subscription. When the connection is lost, end the
        subscribers (they resume with `after`) and reconnect, backing off, until it is
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
                        if self._is_news(event.message):
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live status lost its broadcast (%s); reconnecting", exc)
            self.connected = False
            for held in [self._everyone, *self._by_payment.values(), *self._by_order.values()]:
                for lost in list(held):
                    self._end(lost, interrupted())
            self._ready.set()  # start() does not wait on a broadcast that is down
            with contextlib.suppress(Exception):
                await self.broadcast.disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def _is_news(self, message: Any) -> bool:
        """Whether a broadcast tells of a change the hub has not handed on yet (one
        this process made was read when it was published)."""
        told = Committed.parse(message)
        if told is None:
            return True  # a message we cannot read: look at the log all the same
        return (told.xid, told.event_id) > self.position

    async def _tail(self) -> None:
        """Read the log when told it grew (and every poll_s while anyone listens, and
        soon again while newer changes wait for an older transaction)."""
        held_delay: float | None = None
        held_since: float | None = None
        warned = False
        while True:
            timeout = held_delay if held_delay is not None else self.poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout if self.count else None)
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
            if not self.count:
                # No one to tell: the log is not read at all (the first subscriber to
                # come moves the hub to the log's end: see add).
                return False
            while True:
                changes, held = await self.log.read(self.position, BATCH)
                for change in changes:
                    await self._deliver(change)
                    self.position = change.position
                if held or len(changes) < BATCH:
                    return held
