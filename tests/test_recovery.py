"""Lost answers and races: a gateway that times out, answers late, or is asked twice."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from clients import Client
from conftest import paid, pay, refund
from servers import LiveServer

from gateways.base import ChargeState, GatewayStatus, GatewayUnavailable
from models.tables import IdempotencyKey, Refund

PAYMENT = """
query ($id: ID!) {
  payment(id: $id) {
    status failureCode gatewayTransactionId capturedAmount refundedAmount refundableAmount
    refunds { id status amount }
    order { status }
    events { type source }
  }
}
"""
SYNC = """mutation ($id: ID!) { syncPayment(id: $id) {
  payment { status } errors { code message } } }"""
CANCEL = """mutation ($id: ID!) { cancelPayment(id: $id) {
  payment { status } errors { code message } } }"""
CAPTURE = """mutation ($id: ID!) { capturePayment(id: $id) {
  payment { status } errors { code message } } }"""


async def test_a_payment_cannot_be_cancelled_while_its_charge_is_in_flight(
    alice: Client, server: LiveServer, pending_order: dict[str, Any]
) -> None:
    server.simulated.latency = 0.5
    try:
        # given a charge on its way to a slow gateway
        paying = asyncio.create_task(pay(alice, pending_order["id"], token="pm_card_visa"))
        await asyncio.sleep(0.2)
        payments = await alice(
            "query ($id: ID!) { paymentsByOrder(orderId: $id) { id status } }",
            id=pending_order["id"],
        )
        [in_flight] = payments["paymentsByOrder"]
        assert in_flight["status"] == "PENDING"
        # when the customer cancels it meanwhile
        cancel = (await alice(CANCEL, id=in_flight["id"]))["cancelPayment"]
        # then the cancel is refused, not applied here alone
        assert [e["code"] for e in cancel["errors"]] == ["INVALID_STATE"]
        # and the charge completes and pays the order: one charge, never two
        paid = await paying
        assert paid["payment"]["status"] == "COMPLETED"
        assert server.simulated.calls[f"charge:{in_flight['id']}"] == 1
        again = await pay(alice, pending_order["id"], token="pm_card_visa")
        assert [e["code"] for e in again["errors"]] == ["INVALID_STATE"]
    finally:
        server.simulated.latency = 0


async def test_a_charge_lost_in_an_outage_is_failed_once_it_cannot_be_running(
    alice: Client, server: LiveServer, pending_order: dict[str, Any], later: Any
) -> None:
    # given the gateway times out on the charge
    server.simulated.inject("charge", GatewayUnavailable("read timeout"))
    payload = await pay(alice, pending_order["id"], token="pm_card_visa")
    payment = payload["payment"]
    assert [e["code"] for e in payload["errors"]] == ["GATEWAY_UNAVAILABLE"]
    assert (payment["status"], payment["gatewayTransactionId"]) == ("PENDING", None)
    # when it is synced or cancelled at once, the answer may still be coming
    for mutation, field in ((SYNC, "syncPayment"), (CANCEL, "cancelPayment")):
        early = (await alice(mutation, id=payment["id"]))[field]
        assert [e["code"] for e in early["errors"]] == ["INVALID_STATE"]
    # when it is synced after any call must have ended, and the gateway has no charge
    later()
    synced = (await alice(SYNC, id=payment["id"]))["syncPayment"]
    # then it failed, and the order may be paid again
    assert synced["errors"] == []
    assert synced["payment"]["status"] == "FAILED"
    after = (await alice(PAYMENT, id=payment["id"]))["payment"]
    assert after["failureCode"] == "gateway_unavailable"
    retried = await pay(alice, pending_order["id"], token="pm_card_visa")
    assert retried["payment"]["status"] == "COMPLETED"


async def test_a_charge_whose_answer_was_lost_is_found_by_sync(
    alice: Client, server: LiveServer, pending_order: dict[str, Any]
) -> None:
    # given the gateway charged the card but its answer never came back
    server.simulated.lose_next_answer("charge")
    payload = await pay(alice, pending_order["id"], token="pm_card_visa")
    payment = payload["payment"]
    assert [e["code"] for e in payload["errors"]] == ["GATEWAY_UNAVAILABLE"]
    assert (payment["status"], payment["gatewayTransactionId"]) == ("PENDING", None)
    # when the payment is synced
    synced = (await alice(SYNC, id=payment["id"]))["syncPayment"]
    # then the charge is found at the gateway by our reference and applied, once
    assert synced["payment"]["status"] == "COMPLETED"
    after = (await alice(PAYMENT, id=payment["id"]))["payment"]
    assert after["gatewayTransactionId"].startswith("pi_sim_")
    assert after["capturedAmount"] == "50.98"
    assert after["order"]["status"] == "PAID"
    assert server.simulated.calls[f"charge:{payment['id']}"] == 1


async def gateway_refunds(server: LiveServer, payment: dict[str, Any]) -> int:
    state = await server.on_server_loop(server.simulated.retrieve(payment["gatewayTransactionId"]))
    return len(state.refunds)


async def test_a_refund_made_but_whose_answer_was_lost_is_settled_by_sync(
    admin: Client, server: LiveServer, completed_payment: dict[str, Any]
) -> None:
    # given the gateway made a USD 20 refund but its answer never came back
    server.simulated.lose_next_answer("refund")
    lost = await refund(admin, completed_payment["id"], amount="20", idempotencyKey="lost-1")
    assert [e["code"] for e in lost["errors"]] == ["GATEWAY_UNAVAILABLE"]
    assert lost["refund"]["status"] == "PENDING"
    # then its amount stays reserved: only USD 44.99 can be refunded meanwhile
    assert lost["payment"]["refundableAmount"] == "44.99"
    over = await refund(admin, completed_payment["id"], amount="45")
    assert [e["code"] for e in over["errors"]] == ["REFUND_EXCEEDS_AVAILABLE"]
    # and a replay of its key answers with the same pending refund
    replay = await refund(admin, completed_payment["id"], amount="20", idempotencyKey="lost-1")
    assert replay["refund"]["id"] == lost["refund"]["id"]
    # when the payment is synced
    synced = (await admin(SYNC, id=completed_payment["id"]))["syncPayment"]
    # then the gateway's list of refunds settles it, and nothing was refunded twice
    assert synced["errors"] == []
    after = (await admin(PAYMENT, id=completed_payment["id"]))["payment"]
    assert [(r["amount"], r["status"]) for r in after["refunds"]] == [("20.00", "SUCCEEDED")]
    assert (after["status"], after["refundedAmount"], after["refundableAmount"]) == (
        "PARTIALLY_REFUNDED",
        "20.00",
        "44.99",
    )
    assert await gateway_refunds(server, completed_payment) == 1


async def test_a_refund_that_never_reached_the_gateway_is_asked_again_once_safe(
    admin: Client, server: LiveServer, completed_payment: dict[str, Any], later: Any
) -> None:
    # given a refund whose request never reached the gateway
    server.simulated.inject("refund", GatewayUnavailable("connection refused"))
    lost = await refund(admin, completed_payment["id"], amount="20")
    assert lost["refund"]["status"] == "PENDING"
    # when the payment is synced at once, the request might still be on its way
    await admin(SYNC, id=completed_payment["id"])
    after = (await admin(PAYMENT, id=completed_payment["id"]))["payment"]
    assert [r["status"] for r in after["refunds"]] == ["PENDING"]
    assert await gateway_refunds(server, completed_payment) == 0
    # when it is synced once no call can still be running
    later()
    await admin(SYNC, id=completed_payment["id"])
    # then it is asked again, with its own key, and made once
    after = (await admin(PAYMENT, id=completed_payment["id"]))["payment"]
    assert [r["status"] for r in after["refunds"]] == ["SUCCEEDED"]
    assert after["refundedAmount"] == "20.00"
    assert await gateway_refunds(server, completed_payment) == 1


async def test_a_capture_answer_the_table_refuses_is_reported(
    admin: Client, server: LiveServer, authorized_payment: dict[str, Any]
) -> None:
    # given the gateway answers a capture with a status an authorization cannot move to
    server.simulated.inject(
        "capture",
        ChargeState(authorized_payment["gatewayTransactionId"], GatewayStatus.REQUIRES_ACTION),
    )
    payload = (await admin(CAPTURE, id=authorized_payment["id"]))["capturePayment"]
    # then the admin is told, and the payment did not move
    assert [e["code"] for e in payload["errors"]] == ["INVALID_STATE"]
    assert payload["payment"]["status"] == "AUTHORIZED"


async def test_money_taken_for_a_cancelled_payment_is_flagged(
    admin: Client,
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_3ds: dict[str, Any],
) -> None:
    # given a payment cancelled here
    cancelled = (await alice(CANCEL, id=awaiting_3ds["id"]))["cancelPayment"]
    assert cancelled["payment"]["status"] == "CANCELLED"
    # when the gateway nevertheless reports the charge succeeded
    server.simulated.inject(
        "retrieve",
        ChargeState(
            awaiting_3ds["gatewayTransactionId"], GatewayStatus.SUCCEEDED, amount_captured=5098
        ),
    )
    await admin(SYNC, id=awaiting_3ds["id"])
    # then the payment stays CANCELLED, and the trail flags the orphaned charge
    after = (await admin(PAYMENT, id=awaiting_3ds["id"]))["payment"]
    assert after["status"] == "CANCELLED"
    assert after["events"][-1] == {"type": "payment.orphaned_charge", "source": "GATEWAY"}


async def test_the_sweep_resolves_what_lost_answers_left_behind(
    alice: Client, admin: Client, server: LiveServer, pending_order: dict[str, Any], later: Any
) -> None:
    # given a charge made at the gateway whose answer was lost
    server.simulated.lose_next_answer("charge")
    payment = (await pay(alice, pending_order["id"], token="pm_card_visa"))["payment"]
    # and, on another payment, a refund that never reached the gateway
    other = await paid(alice)
    server.simulated.inject("refund", GatewayUnavailable("connection refused"))
    await refund(admin, other["id"], amount="5")

    # and, as a crash would leave them, keys whose requests never answered
    async def keys_left_by_a_crash() -> list[int]:
        refund_id = (await Refund.get(payment_id=other["id"])).id
        made = [
            await IdempotencyKey.create(
                scope="crash", key=f"k-{n}", fingerprint="x", resource_id=resource
            )
            for n, resource in enumerate((payment["id"], refund_id))
        ]
        return [key.id for key in made]

    keys = await server.on_server_loop(keys_left_by_a_crash())
    # when the reconciliation sweep runs once no call can still be running
    later()
    summary = await server.on_server_loop(server.service.reconcile())
    # then both are resolved from the gateway's answers
    assert summary["changed"] >= 2
    assert (await alice(PAYMENT, id=payment["id"]))["payment"]["status"] == "COMPLETED"
    after = (await admin(PAYMENT, id=other["id"]))["payment"]
    assert [r["status"] for r in after["refunds"]] == ["SUCCEEDED"]
    # and the keys of what it settled are complete: a retry answers at once with it

    async def completed() -> list[bool]:
        return [(await IdempotencyKey.get(id=key)).completed for key in keys]

    assert await server.on_server_loop(completed()) == [True, True]
    # and a second sweep has nothing left to do for them
    again = await server.on_server_loop(server.service.reconcile())
    assert again["changed"] == 0
