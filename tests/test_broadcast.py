"""Live status across processes: the hub over real Redis, and Redis going away.

Each Hub stands for one worker: its own Broadcast, its own Redis connections.
Runs when PAYQL_TEST_REDIS_URL is set (CI sets it); says it was skipped otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from clients import MemoryLog, listening
from redis.exceptions import ConnectionError as RedisConnectionError
from servers import REDIS_URL, free_port, private_redis

from models.write_path import Committed
from resolvers.broadcast import make_broadcast
from resolvers.live import Hub, Interrupted

pytestmark = pytest.mark.skipif(
    not REDIS_URL, reason="Redis tests skipped: PAYQL_TEST_REDIS_URL is not set"
)


# The database both workers share, as far as the hub reads it.
LOG = MemoryLog()


def change(payment_id: str = "pay_x") -> Committed:
    """A change committed to the shared log; what the write path then publishes."""
    return LOG.append(payment_id)


@asynccontextmanager
async def worker(url: str) -> AsyncIterator[Hub]:
    hub = Hub(make_broadcast(url), log=LOG)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def test_a_change_published_by_one_worker_reaches_subscribers_on_every_worker() -> None:
    async with worker(REDIS_URL) as first, worker(REDIS_URL) as second:
        async with listening(first) as here, listening(second) as there:
            # when one worker publishes a committed change
            committed = change()
            await first.publish(committed)
            # then subscribers on both workers receive it
            assert await there.get() == committed.event_id
            assert await here.get() == committed.event_id


async def test_many_workers_starting_at_once_all_receive() -> None:
    # broadcaster's own concurrent-subscribe race loses subscribers; a hub holds one
    # subscription per process, so ten workers starting together all hear every change
    async with AsyncExitStack() as stack:
        hubs = await asyncio.gather(
            *(stack.enter_async_context(worker(REDIS_URL)) for _ in range(10))
        )
        listeners = [await stack.enter_async_context(listening(hub)) for hub in hubs]
        committed = change()
        await hubs[0].publish(committed)
        got = await asyncio.wait_for(asyncio.gather(*(lst.get() for lst in listeners)), 5)
        assert got == [committed.event_id] * 10


async def test_when_redis_goes_away_listeners_end_clearly_and_the_hub_reconnects() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with private_redis(port) as server:
        async with worker(url) as hub:
            async with listening(hub) as listener:
                committed = change()
                await hub.publish(committed)
                assert await listener.get() == committed.event_id
                # when Redis stops
                server.terminate()
                server.wait(timeout=10)
                # then the subscriber ends with a clear message, not a hang
                with pytest.raises(Interrupted, match="resubscribe with `after`"):
                    await asyncio.wait_for(listener.get(), 10)
            # and publishing fails at once (the write path logs it; its change is committed)
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(hub.publish(change()), 10)
            # when Redis is back
            with private_redis(port):
                # then the hub reconnects by itself, and new subscribers hear new changes
                assert await heard_after_reconnect(hub)


async def heard_after_reconnect(hub: Hub) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not hub.connected:  # (changes still arrive without it: the log is polled)
            await asyncio.sleep(0.2)
            continue
        async with listening(hub) as listener:
            try:
                committed = change()
                await hub.publish(committed)
                # (changes of earlier tries may come first: the log had them)
                while await asyncio.wait_for(listener.get(), 1) != committed.event_id:
                    pass
                return True
            except (RedisConnectionError, Interrupted, TimeoutError):
                pass  # not reconnected yet
        await asyncio.sleep(0.2)
    return False
