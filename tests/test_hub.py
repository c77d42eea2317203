"""The live hub: one broadcast subscription, bounded local queues."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from broadcaster import Broadcast

from models.rules import PaymentStatus
from models.write_path import StatusChange
from resolvers.live import Hub, SlowSubscriber


def change(cursor: int) -> StatusChange:
    return StatusChange(
        cursor=cursor,
        payment_id="pay_x",
        order_id="ord_x",
        customer_id="cus_x",
        previous=PaymentStatus.PENDING,
        status=PaymentStatus.COMPLETED,
        occurred_at=datetime.now(UTC),
    )


async def test_a_subscriber_that_cannot_keep_up_is_closed_with_a_clear_message() -> None:
    hub = Hub(Broadcast("memory://"), queue_size=3)
    await hub.start()
    try:
        async with hub.listen() as slow, hub.listen() as keeping_up:
            # when five changes arrive and one listener reads none of them
            for cursor in range(1, 6):
                await hub.publish(change(cursor))
                assert (await asyncio.wait_for(keeping_up.get(), 5)).cursor == cursor
            # then the listener that kept up got all, and the slow one is closed
            with pytest.raises(SlowSubscriber, match="resubscribe with `after`"):
                await slow.get()
        assert hub.listeners == set()
    finally:
        await hub.stop()


async def test_messages_are_small_json_strings() -> None:
    text = change(7).to_json()
    assert isinstance(text, str) and len(text) < 300
    assert '"cursor":7' in text and '"status":"COMPLETED"' in text
