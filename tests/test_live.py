"""paymentStatusChanged over a real websocket (graphql-transport-ws)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import httpx
import pytest
from clients import Client, Subscription, cursor_number, status_reaches
from conftest import pay, place_order, refund
from gateway_support import approve_quietly, confirm, post_webhook, stripe_event, stripe_intent
from servers import LiveServer

from models.write_path import Committed
from resolvers import live
from schema.subscription import Selection

STATUS_CHANGED = """
subscription ($paymentId: ID, $orderId: ID, $after: ID) {
  paymentStatusChanged(paymentId: $paymentId, orderId: $orderId, after: $after) {
    cursor type previousStatus status occurredAt
    payment { id status refundedAmount }
  }
}
"""

SYNC = "mutation ($id: ID!) { syncPayment(id: $id) { payment { status } errors { code } } }"


async def test_a_subscriber_sees_the_current_state_then_every_committed_change(
    alice: Client,
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_3ds: dict[str, Any],
) -> None:
    # given a payment waiting for 3-D Secure
    payment = awaiting_3ds
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        # when Alice subscribes to it
        await sub.subscribe(STATUS_CHANGED, paymentId=payment["id"])
        # then the first message is its current state
        first = (await sub.next())["paymentStatusChanged"]
        assert first["status"] == "REQUIRES_ACTION"
        assert first["payment"] == {
            "id": payment["id"],
            "status": "REQUIRES_ACTION",
            "refundedAmount": "0.00",
        }
        # when the customer passes 3-D Secure (its webhook lost) and the page syncs
        await approve_quietly(http, server, payment["clientSecret"])
        await alice(SYNC, id=payment["id"])
        # then the change arrives, with the payment read fresh
        completed = (await sub.next_move())["paymentStatusChanged"]
        assert (completed["previousStatus"], completed["status"]) == (
            "REQUIRES_ACTION",
            "COMPLETED",
        )
        assert completed["payment"]["status"] == "COMPLETED"
        assert cursor_number(completed["cursor"]) > cursor_number(first["cursor"])
        # and a full refund arrives as REFUNDED
        await refund(admin, payment["id"])
        refunded = (await sub.next_move())["paymentStatusChanged"]
        assert (refunded["previousStatus"], refunded["status"]) == ("COMPLETED", "REFUNDED")
        assert refunded["payment"]["refundedAmount"] == "50.98"


async def test_without_a_valid_token_the_connection_is_closed_with_4403(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    from httpx_ws import WebSocketDisconnect

    async with Subscription.connect(server.url, http, "not-a-token") as sub:
        try:
            message = await sub.receive()
        except WebSocketDisconnect as closed:
            assert closed.code == 4403
        else:
            raise AssertionError(f"expected the connection to close, got {message}")


@pytest.mark.parametrize("by", ["paymentId", "orderId"])
async def test_a_customer_cannot_subscribe_to_anothers_payment_or_order(
    server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any], by: str
) -> None:
    target = completed_payment["id"] if by == "paymentId" else completed_payment["orderId"]
    async with Subscription.connect(server.url, http, server.token("cus_bob")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, **{by: target})
        assert await sub.refusal() == "NOT_FOUND"


async def test_a_cursor_from_anothers_payment_replays_none_of_it(
    server: LiveServer,
    http: httpx.AsyncClient,
    bob: Client,
    completed_payment: dict[str, Any],
) -> None:
    # given a cursor from the start of Alice's payment (seen by an admin)
    admin = server.token("admin", role="admin")
    async with Subscription.connect(server.url, http, admin) as watcher:
        await watcher.ack()
        await watcher.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
        alices_cursor = (await watcher.next())["paymentStatusChanged"]["cursor"]
    # and Bob's own order, paid after it
    bobs = await pay(bob, (await place_order(bob))["id"], token="pm_card_visa")
    # when Bob resumes from Alice's cursor, on his own order
    async with Subscription.connect(server.url, http, server.token("cus_bob")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, orderId=bobs["payment"]["orderId"], after=alices_cursor)
        # then he gets his own payment's changes only
        first = (await sub.next())["paymentStatusChanged"]
        assert first["payment"]["id"] == bobs["payment"]["id"]
    # and with Alice's payment id and her cursor, nothing at all
    async with Subscription.connect(server.url, http, server.token("cus_bob")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"], after=alices_cursor)
        assert await sub.refusal() == "NOT_FOUND"


async def test_a_customer_must_name_a_payment_or_order(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED)
        assert await sub.refusal() == "FORBIDDEN"


async def test_3d_secure_end_to_end_seen_live(
    alice: Client,
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_3ds: dict[str, Any],
) -> None:
    # given a payment that needs 3-D Secure
    payment_id, secret = awaiting_3ds["id"], awaiting_3ds["clientSecret"]
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        # when the checkout page subscribes to it
        await sub.subscribe(STATUS_CHANGED, paymentId=payment_id)
        assert (await sub.next())["paymentStatusChanged"]["status"] == "REQUIRES_ACTION"
        # and the customer approves 3-D Secure
        response = await confirm(http, server, {"clientSecret": secret, "authenticate": True})
        assert response.json() == {"status": "succeeded"}
        # then the page sees it complete, as the webhook is applied
        done = (await sub.next_move())["paymentStatusChanged"]
        assert (done["previousStatus"], done["status"]) == ("REQUIRES_ACTION", "COMPLETED")
        assert done["payment"]["status"] == "COMPLETED"
        # and sees the refund when an admin makes it
        await refund(admin, payment_id)
        assert (await sub.next_move())["paymentStatusChanged"]["status"] == "REFUNDED"


async def test_duplicate_webhooks_reach_subscribers_once(
    alice: Client,
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_3ds: dict[str, Any],
) -> None:
    payment = awaiting_3ds
    # the customer passed 3-D Secure at the gateway, which reports it as a webhook
    await approve_quietly(http, server, payment["clientSecret"])
    event = stripe_event("payment_intent.succeeded", stripe_intent(payment))
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, paymentId=payment["id"])
        assert (await sub.next())["paymentStatusChanged"]["status"] == "REQUIRES_ACTION"
        # when 20 copies of the webhook race
        await asyncio.gather(*(post_webhook(http, server, event) for _ in range(20)))
        # then one message arrives, and the next ones are the next real change's
        assert (await sub.next())["paymentStatusChanged"]["status"] == "COMPLETED"
        await refund(admin, payment["id"])
        refunding = [(await sub.next())["paymentStatusChanged"] for _ in range(3)]
        assert [(m["type"], m["status"]) for m in refunding] == [
            ("refund.created", "COMPLETED"),
            ("refund.succeeded", "COMPLETED"),
            ("payment.status_changed", "REFUNDED"),
        ]


async def test_resuming_with_after_misses_nothing_and_repeats_nothing(
    alice: Client,
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    pending_order: dict[str, Any],
) -> None:
    # given a payment waiting for client confirmation, watched by an admin dashboard
    payload = await pay(alice, pending_order["id"])
    payment_id, secret = payload["payment"]["id"], payload["clientSecret"]
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, orderId=pending_order["id"])
        last = (await sub.next())["paymentStatusChanged"]
        assert last["status"] == "PENDING"
    # when changes happen while the dashboard is disconnected
    await confirm(http, server, {"clientSecret": secret, "paymentMethod": "pm_card_visa"})
    await status_reaches(alice, payment_id, "COMPLETED")
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        # and it resumes from its last cursor while more changes are being made
        await sub.subscribe(STATUS_CHANGED, orderId=pending_order["id"], after=last["cursor"])
        amounts = ["10", "10", "10", "10", "10", "0.98"]  # 50.98 in all, in any order
        refunds = asyncio.gather(*(refund(admin, payment_id, amount=a) for a in amounts))
        received = []
        while not received or received[-1]["status"] != "REFUNDED":
            received.append((await sub.next())["paymentStatusChanged"])
        assert all(r["errors"] == [] for r in await refunds)
    # then it gets every change since its cursor exactly once, in order: the audit trail
    trail = (await admin(EVENTS, id=payment_id))["payment"]["events"]
    since = [e for e in trail if cursor_number(e["id"]) > cursor_number(last["cursor"])]
    assert [cursor_number(m["cursor"]) for m in received] == [cursor_number(e["id"]) for e in since]
    assert [m["type"] for m in received] == [e["type"] for e in since]
    assert [
        (m["previousStatus"], m["status"]) for m in received if m["type"].startswith("payment.")
    ][-3:] == [
        ("PENDING", "COMPLETED"),
        ("COMPLETED", "PARTIALLY_REFUNDED"),
        ("PARTIALLY_REFUNDED", "REFUNDED"),
    ]
    assert [m["type"] for m in received].count("refund.succeeded") == 6


EVENTS = "query ($id: ID!) { payment(id: $id) { events { id type } } }"


async def test_two_hundred_subscribers_all_receive_one_change_read_once_for_all(
    alice: Client,
    admin: Client,
    server: LiveServer,
    completed_payment: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[Any] = []
    original = live.EventLog.read

    async def counted_read(self: live.EventLog, *args: Any) -> Any:
        reads.append(args)
        return await original(self, *args)

    monkeypatch.setattr(live.EventLog, "read", counted_read)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=30) as pool:
        token = server.token("admin", role="admin")

        async def watch(ready: asyncio.Event, go: asyncio.Event) -> str:
            async with Subscription.connect(server.url, pool, token) as sub:
                await sub.ack()
                await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
                assert (await sub.next())["paymentStatusChanged"]["status"] == "COMPLETED"
                ready.set()
                await go.wait()
                status: str = (await sub.next_move())["paymentStatusChanged"]["status"]
                return status

        readies = [asyncio.Event() for _ in range(200)]
        go = asyncio.Event()
        watchers = [asyncio.create_task(watch(ready, go)) for ready in readies]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        go.set()
        reads.clear()
        # when one change is made
        await refund(admin, completed_payment["id"], amount="1")
        # then every one of the 200 subscribers receives it
        statuses = await asyncio.wait_for(asyncio.gather(*watchers), 60)
    assert statuses == ["PARTIALLY_REFUNDED"] * 200
    # and the log was read for all of them together: a few times (one per commit, and
    # a poll), not once per subscriber
    assert 1 <= len(reads) <= 10


async def test_a_late_or_repeated_broadcast_never_steps_a_subscriber_back(
    admin: Client, server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any]
) -> None:
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
        now = (await sub.next())["paymentStatusChanged"]
        assert now["status"] == "COMPLETED"
        cursor = cursor_number(now["cursor"])
        # when older news of this payment arrives late (another worker's slow publish),
        # and the current one once more
        for stale in (cursor - 1, cursor):
            change = Committed(
                xid=0, event_id=stale, payment_id=completed_payment["id"], type="payment.x"
            )
            await server.on_server_loop(server.app.state.hub.publish(change))
        # then neither reaches the subscriber: the next message is the next real change
        await refund(admin, completed_payment["id"], amount="1")
        assert (await sub.next())["paymentStatusChanged"]["type"] == "refund.created"
        assert (await sub.next_move())["paymentStatusChanged"]["status"] == "PARTIALLY_REFUNDED"


STATUS_ONLY = """
subscription ($paymentId: ID) {
  paymentStatusChanged(paymentId: $paymentId) { status payment { id } }
}
"""


async def test_subscribers_asking_the_same_share_one_render_of_a_change(
    alice: Client,
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    completed_payment: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renders: list[tuple[Any, ...]] = []
    original = Selection.render

    async def counted(self: Selection, change: live.Change, context: Any) -> Any:
        renders.append((self.key, change.position))
        return await original(self, change, context)

    monkeypatch.setattr(Selection, "render", counted)
    admin_token = server.token("admin", role="admin")
    alice_token = server.token("cus_alice", email="alice@example.com")
    # given three admin connections with the same operation and variables, Alice with
    # that operation too, and an admin asking for other fields
    watchers = [
        (admin_token, STATUS_CHANGED),
        (admin_token, STATUS_CHANGED),
        (admin_token, STATUS_CHANGED),
        (alice_token, STATUS_CHANGED),
        (admin_token, STATUS_ONLY),
    ]
    async with contextlib.AsyncExitStack() as stack:
        subs = []
        for token, query in watchers:
            sub = await stack.enter_async_context(Subscription.connect(server.url, http, token))
            await sub.ack()
            await sub.subscribe(query, paymentId=completed_payment["id"])
            assert (await sub.next())["paymentStatusChanged"]["status"] == "COMPLETED"
            subs.append(sub)
        renders.clear()
        # when one change is made
        await refund(admin, completed_payment["id"], amount="1")
        # then every subscriber receives what its own operation asked for, change by
        # change (the refund reserved, then made, then the payment's move)
        got = [[(await sub.next())["paymentStatusChanged"] for _ in range(3)] for sub in subs]
    for changes in got[:4]:
        assert [(c["type"], c["status"], c["payment"]["refundedAmount"]) for c in changes] == [
            ("refund.created", "COMPLETED", "0.00"),
            ("refund.succeeded", "COMPLETED", "1.00"),
            ("payment.status_changed", "PARTIALLY_REFUNDED", "1.00"),
        ]
    shown = {"id": completed_payment["id"]}
    assert got[4] == [
        {"status": "COMPLETED", "payment": shown},
        {"status": "COMPLETED", "payment": shown},
        {"status": "PARTIALLY_REFUNDED", "payment": shown},
    ]
    # and each change was rendered once per (operation, variables, caller): three times
    assert len(renders) == len(set(renders)) == 9
    assert set(Counter(position for _, position in renders).values()) == {3}


async def test_documents_alike_but_for_their_fragments_are_rendered_apart(
    admin: Client, server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any]
) -> None:
    # given one admin, twice, with the same operation text and variables, but
    # fragments that ask for different fields
    operation = """subscription ($paymentId: ID) {
      paymentStatusChanged(paymentId: $paymentId) { ...Shown } }"""
    statuses = operation + " fragment Shown on PaymentStatusChange { status }"
    cursors = operation + " fragment Shown on PaymentStatusChange { cursor }"
    token = server.token("admin", role="admin")
    async with (
        Subscription.connect(server.url, http, token) as first,
        Subscription.connect(server.url, http, token) as second,
    ):
        for sub, query in ((first, statuses), (second, cursors)):
            await sub.ack()
            await sub.subscribe(query, paymentId=completed_payment["id"])
            await sub.next()
        # when the payment changes
        await refund(admin, completed_payment["id"], amount="1")
        # then each gets the shape its own document asked for
        assert (await first.next())["paymentStatusChanged"] == {"status": "COMPLETED"}
        assert set((await second.next())["paymentStatusChanged"]) == {"cursor"}
