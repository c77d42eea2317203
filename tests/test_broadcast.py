"""Live status across processes: the hub over real Redis, and Redis going away.

Each Hub stands for one worker: its own Broadcast, its own Redis connections.
Runs when PAYQL_TEST_REDIS_URL is set (CI sets it); says it was skipped otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from servers import REDIS_URL, free_port, private_redis

from models.rules import PaymentStatus
from models.write_path import StatusChange
from resolvers.broadcast import make_broadcast
from resolvers.live import Hub, Interrupted

pytestmark = pytest.mark.skipif(
    not REDIS_URL, reason="Redis tests skipped: PAYQL_TEST_REDIS_URL is not set"
)


def change(cursor: int, payment_id: str = "pay_x") -> StatusChange:
    return StatusChange(
        cursor=cursor,
        payment_id=payment_id,
        order_id="ord_x",
        customer_id="cus_x",
        previous=PaymentStatus.PENDING,
        status=PaymentStatus.COMPLETED,
        occurred_at=datetime.now(UTC),
    )


@asynccontextmanager
async def worker(url: str) -> AsyncIterator[Hub]:
    hub = Hub(make_broadcast(url))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def test_a_change_published_by_one_worker_reaches_listeners_on_every_worker() -> None:
    async with worker(REDIS_URL) as first, worker(REDIS_URL) as second:
        async with first.listen() as here, second.listen() as there:
            # when one worker publishes a committed change
            await first.publish(change(1))
            # then listeners on both workers receive it
            assert (await asyncio.wait_for(there.get(), 5)).cursor == 1
            assert (await asyncio.wait_for(here.get(), 5)).cursor == 1


async def test_many_workers_starting_at_once_all_receive() -> None:
    # broadcaster's own concurrent-subscribe race loses subscribers; a hub holds one
    # subscription per process, so ten workers starting together all hear every change
    async with AsyncExitStack() as stack:
        hubs = await asyncio.gather(
            *(stack.enter_async_context(worker(REDIS_URL)) for _ in range(10))
        )
        listeners = [await stack.enter_async_context(hub.listen()) for hub in hubs]
        await hubs[0].publish(change(7))
        got = await asyncio.wait_for(asyncio.gather(*(lst.get() for lst in listeners)), 5)
        assert [c.cursor for c in got] == [7] * 10


async def test_when_redis_goes_away_listeners_end_clearly_and_the_hub_reconnects() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with private_redis(port) as server:
        async with worker(url) as hub:
            async with hub.listen() as listener:
                await hub.publish(change(1))
                assert (await asyncio.wait_for(listener.get(), 5)).cursor == 1
                # when Redis stops
                server.terminate()
                server.wait(timeout=10)
                # then the listener ends with a clear message, not a hang
                with pytest.raises(Interrupted, match="resubscribe with `after`"):
                    await asyncio.wait_for(listener.get(), 10)
            # and publishing fails at once (the write path logs it; its change is committed)
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(hub.publish(change(2)), 10)
            # when Redis is back
            with private_redis(port):
                # then the hub reconnects by itself, and new listeners hear new changes
                assert await heard_after_reconnect(hub, cursor=3)


async def heard_after_reconnect(hub: Hub, cursor: int) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with hub.listen() as listener:
            try:
                await hub.publish(change(cursor))
                return (await asyncio.wait_for(listener.get(), 1)).cursor == cursor
            except (RedisConnectionError, Interrupted, TimeoutError):
                pass  # not reconnected yet
        await asyncio.sleep(0.2)
    return False
