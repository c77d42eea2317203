"""The live hub: one broadcast subscription, bounded local queues."""

from __future__ import annotations

import asyncio

import pytest
from broadcaster import Broadcast
from clients import MemoryLog

from models.write_path import Committed
from resolvers.live import Hub, SlowSubscriber


async def test_a_subscriber_that_cannot_keep_up_is_closed_with_a_clear_message() -> None:
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), queue_size=3, log=log)
    await hub.start()
    try:
        async with hub.listen() as slow, hub.listen() as keeping_up:
            # when five changes are committed and one listener reads none of them
            for number in range(1, 6):
                await hub.publish(log.append())
                assert (await asyncio.wait_for(keeping_up.get(), 5)).event_id == number
            # then the listener that kept up got all, and the slow one is closed
            with pytest.raises(SlowSubscriber, match="resubscribe with `after`"):
                await slow.get()
        assert hub.listeners == set()
    finally:
        await hub.stop()


async def test_a_change_whose_message_was_lost_still_arrives_by_the_poll() -> None:
    # given a hub that looks at the log every 50 ms while anyone listens
    log = MemoryLog()
    hub = Hub(Broadcast("memory://"), log=log, poll_s=0.05)
    await hub.start()
    try:
        async with hub.listen() as listener:
            # when a change is committed and its message never sent (its process died)
            log.append()
            # then the listener gets it all the same
            assert (await asyncio.wait_for(listener.get(), 5)).event_id == 1
    finally:
        await hub.stop()


async def test_a_hub_with_no_listeners_moves_to_the_end_and_replays_nothing_old() -> None:
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
        async with hub.listen() as listener:
            await hub.publish(log.append())
            # then they get that one, not the three before they came
            assert (await asyncio.wait_for(listener.get(), 5)).event_id == 4
    finally:
        await hub.stop()


async def test_messages_are_small_json_strings() -> None:
    text = Committed(xid=812, event_id=7, payment_id="pay_x", type="refund.succeeded").to_json()
    assert isinstance(text, str) and len(text) < 200
    assert '"id":7' in text and '"xid":812' in text
