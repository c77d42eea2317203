"""paymentStatusChanged over a real websocket (graphql-transport-ws)."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import pay, refund
from support import Client, LiveServer, Subscription

STATUS_CHANGED = """
subscription ($paymentId: ID, $orderId: ID, $after: ID) {
  paymentStatusChanged(paymentId: $paymentId, orderId: $orderId, after: $after) {
    cursor previousStatus status occurredAt
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
    pending_order: dict[str, Any],
) -> None:
    # given a payment waiting for 3-D Secure
    payment = (await pay(alice, pending_order["id"], token="pm_card_authenticationRequired"))[
        "payment"
    ]
    async with Subscription.connect(server, http, server.token("cus_alice")) as sub:
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
        # when the gateway completes it and the page syncs
        intent = server.simulated.intents[payment["gatewayTransactionId"]]
        intent.status = type(intent.status).SUCCEEDED
        intent.amount_captured = intent.amount
        await alice(SYNC, id=payment["id"])
        # then the change arrives, with the payment read fresh
        completed = (await sub.next())["paymentStatusChanged"]
        assert (completed["previousStatus"], completed["status"]) == (
            "REQUIRES_ACTION",
            "COMPLETED",
        )
        assert completed["payment"]["status"] == "COMPLETED"
        assert int(completed["cursor"][4:]) > int(first["cursor"][4:])
        # and a full refund arrives as REFUNDED
        await refund(admin, payment["id"])
        refunded = (await sub.next())["paymentStatusChanged"]
        assert (refunded["previousStatus"], refunded["status"]) == ("COMPLETED", "REFUNDED")
        assert refunded["payment"]["refundedAmount"] == "50.98"


async def test_without_a_valid_token_the_connection_is_closed_with_4403(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    from httpx_ws import WebSocketDisconnect

    async with Subscription.connect(server, http, "not-a-token") as sub:
        try:
            message = await sub.receive()
        except WebSocketDisconnect as closed:
            assert closed.code == 4403
        else:
            raise AssertionError(f"expected the connection to close, got {message}")


async def test_a_customer_cannot_subscribe_to_anothers_payment(
    server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any]
) -> None:
    async with Subscription.connect(server, http, server.token("cus_bob")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
        assert await sub.refusal() == "NOT_FOUND"


async def test_a_customer_must_name_a_payment_or_order(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED)
        assert await sub.refusal() == "FORBIDDEN"
