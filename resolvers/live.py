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

log = logging.getLogger("payql.live")

CHANNEL = "payql.payment-status"


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


class SlowSubscriber(Exception):
    pass


class Listener:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[LiveChange] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, change: LiveChange) -> None:
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self) -> LiveChange:
        if self.overflowed:
            raise SlowSubscriber(
                "this subscription fell too far behind and was closed: resubscribe with `after`"
            )
        return await self.queue.get()


class Hub:
    def __init__(self, broadcast: Any, queue_size: int = 1000) -> None:
        self.broadcast = broadcast
        self.queue_size = queue_size
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

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

    async def _run(self) -> None:
        async with self.broadcast.subscribe(CHANNEL) as subscriber:
            self._ready.set()
            async for event in subscriber:
                try:
                    change = LiveChange.parse(event.message)
                except (ValueError, KeyError, TypeError):
                    log.warning("dropped a malformed broadcast message")
                    continue
                for listener in list(self.listeners):
                    listener.offer(change)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Listener]:
        listener = Listener(self.queue_size)
        self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)
