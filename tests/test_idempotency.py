"""Idempotency keys: the first result again, never a second charge or refund."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from clients import Client
from conftest import pay, place_order, refund
from servers import LiveServer

PAYMENTS_OF_ORDER = "query ($id: ID!) { paymentsByOrder(orderId: $id) { id status } }"


def new_key() -> str:
    return f"key-{secrets.token_hex(8)}"


async def test_the_same_key_and_input_returns_the_first_payment_without_charging_again(
    alice: Client, server: LiveServer, pending_order: dict[str, Any]
) -> None:
    key = new_key()
    # given a payment made with an idempotency key
    first = await pay(alice, pending_order["id"], token="pm_card_visa", idempotencyKey=key)
    charges = server.simulated.calls["charge"]
    # when the client retries with the same key and input
    again = await pay(alice, pending_order["id"], token="pm_card_visa", idempotencyKey=key)
    # then it gets the same payment, and the gateway was not called again
    assert again["errors"] == []
    assert again["payment"] == first["payment"]
    assert server.simulated.calls["charge"] == charges
    payments = (await alice(PAYMENTS_OF_ORDER, id=pending_order["id"]))["paymentsByOrder"]
    assert len(payments) == 1


async def test_a_replayed_decline_is_the_same_decline(
    alice: Client, pending_order: dict[str, Any]
) -> None:
    key = new_key()
    first = await pay(
        alice, pending_order["id"], token="pm_card_chargeDeclined", idempotencyKey=key
    )
    again = await pay(
        alice, pending_order["id"], token="pm_card_chargeDeclined", idempotencyKey=key
    )
    assert again["payment"]["id"] == first["payment"]["id"]
    assert again["payment"]["status"] == "FAILED"


async def test_the_same_key_with_different_input_is_refused(
    alice: Client, pending_order: dict[str, Any]
) -> None:
    key = new_key()
    await pay(alice, pending_order["id"], token="pm_card_chargeDeclined", idempotencyKey=key)
    # when the key is reused with another token
    payload = await pay(alice, pending_order["id"], token="pm_card_visa", idempotencyKey=key)
    # then it is IDEMPOTENCY_KEY_REUSED and nothing new happened
    assert payload["payment"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [
        ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")
    ]
    payments = (await alice(PAYMENTS_OF_ORDER, id=pending_order["id"]))["paymentsByOrder"]
    assert [p["status"] for p in payments] == ["FAILED"]


async def test_concurrent_requests_with_one_key_make_exactly_one_gateway_call(
    alice: Client, server: LiveServer, pending_order: dict[str, Any]
) -> None:
    key = new_key()
    # when fifty copies of one request race
    results = await asyncio.gather(
        *(
            pay(alice, pending_order["id"], token="pm_card_visa", idempotencyKey=key)
            for _ in range(50)
        )
    )
    # then all of them answer with the one payment
    ids = {r["payment"]["id"] for r in results}
    assert len(ids) == 1 and all(r["errors"] == [] for r in results)
    assert {r["payment"]["status"] for r in results} == {"COMPLETED"}
    # and the gateway was asked to charge exactly once
    assert server.simulated.calls[f"charge:{ids.pop()}"] == 1
    payments = (await alice(PAYMENTS_OF_ORDER, id=pending_order["id"]))["paymentsByOrder"]
    assert len(payments) == 1


async def test_keys_are_scoped_to_the_caller(
    alice: Client, bob: Client, pending_order: dict[str, Any]
) -> None:
    key = new_key()
    # given Alice paid with a key
    await pay(alice, pending_order["id"], token="pm_card_visa", idempotencyKey=key)
    # when Bob uses the same key for his own order
    bobs_order = await place_order(bob)
    payload = await pay(bob, bobs_order["id"], token="pm_card_visa", idempotencyKey=key)
    # then it is his own, new payment (and he learns nothing of Alice's)
    assert payload["errors"] == []
    assert payload["payment"]["orderId"] == bobs_order["id"]
    # and Bob replaying Alice's exact request gets no payment of hers
    replay = await pay(bob, pending_order["id"], token="pm_card_visa", idempotencyKey=key)
    assert replay["payment"] is None
    assert [e["code"] for e in replay["errors"]] == ["IDEMPOTENCY_KEY_REUSED"]


async def test_a_refund_replayed_with_its_key_is_not_refunded_twice(
    admin: Client, server: LiveServer, completed_payment: dict[str, Any]
) -> None:
    key = new_key()
    first = await refund(admin, completed_payment["id"], amount="10", idempotencyKey=key)
    refunds = server.simulated.calls["refund"]
    again = await refund(admin, completed_payment["id"], amount="10", idempotencyKey=key)
    assert again["refund"] == first["refund"]
    assert again["payment"]["refundedAmount"] == "10.00"
    assert server.simulated.calls["refund"] == refunds
    other = await refund(admin, completed_payment["id"], amount="11", idempotencyKey=key)
    assert [e["code"] for e in other["errors"]] == ["IDEMPOTENCY_KEY_REUSED"]


async def test_concurrent_refunds_with_one_key_refund_once(
    admin: Client, completed_payment: dict[str, Any]
) -> None:
    key = new_key()
    results = await asyncio.gather(
        *(refund(admin, completed_payment["id"], amount="5", idempotencyKey=key) for _ in range(10))
    )
    assert len({r["refund"]["id"] for r in results}) == 1
    final = results[0]["refund"]["id"]
    data = await admin(
        "query ($id: ID!) { payment(id: $id) { refundedAmount refunds { id } } }",
        id=completed_payment["id"],
    )
    assert data["payment"]["refundedAmount"] == "5.00"
    assert [r["id"] for r in data["payment"]["refunds"]] == [final]
