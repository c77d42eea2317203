"""The broadcast behind live status: broadcaster, with a fixed Redis backend.

broadcaster 0.3.1's Redis backend, with redis-py 8, wakes its listener before the
channel is registered: the listener sees no channel, stops, and nothing is ever
delivered. If the connection dies, its listener dies silently and every subscriber
hangs. This backend subscribes first and wakes the listener after, reports a lost
connection to the subscribers (the hub reconnects), and builds a fresh connection
on every connect.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from broadcaster import Broadcast

# What the hub receives, on each subscribed channel, when the connection is lost.
CONNECTION_LOST = "\x00payql:broadcast-connection-lost"


def make_broadcast(url: str) -> Broadcast:
    if url.startswith(("redis://", "rediss://")):
        return Broadcast(backend=_redis_backend(url))
    return Broadcast(url)


def _redis_backend(url: str) -> Any:
    from broadcaster._backends.redis import RedisBackend as BroadcasterRedisBackend
    from broadcaster._base import Event
    from redis import asyncio as redis

    class RedisBackend(BroadcasterRedisBackend):
        def __init__(self, url: str) -> None:
            super().__init__(url)
            self._url = url
            self._channels: set[str] = set()

        async def connect(self) -> None:
            self._conn = redis.Redis.from_url(self._url, socket_connect_timeout=2)
            self._pubsub = self._conn.pubsub()
            self._ready = asyncio.Event()
            await self._pubsub.connect()  # fails now if Redis is down
            self._listener = asyncio.create_task(self._pubsub_listener())

        async def disconnect(self) -> None:
            with contextlib.suppress(Exception):  # it may be gone already
                await super().disconnect()

        async def subscribe(self, channel: str) -> None:
            await self._pubsub.subscribe(channel)  # registered first,
            self._channels.add(channel)
            self._ready.set()  # then the listener wakes and finds it

        async def unsubscribe(self, channel: str) -> None:
            self._channels.discard(channel)
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(channel)

        async def _pubsub_listener(self) -> None:
            try:
                await super()._pubsub_listener()
            except asyncio.CancelledError:
                raise
            except Exception:
                for channel in list(self._channels):
                    await self._queue.put(Event(channel=channel, message=CONNECTION_LOST))

    return RedisBackend(url)
