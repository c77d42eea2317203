"""refundPayment: partial, full, many, never above what was captured, also under races."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clients import Client
from conftest import paid, refund

from gateways.base import GatewayError
from models.write_path import utcnow

PAYMENT = """
query ($id: ID!) {
  payment(id: $id) {
    status capturedAmount refundedAmount refundableAmount
    refunds { id amount status }
    order { status amountRefunded }
    events { type fromStatus toStatus source }
  }
}
"""

STOCK = "{ products { sku stock } }"


async def stock_of(client: Client, sku: str) -> int:
    products = (await client(STOCK))["products"]
    return int(next(p["stock"] for p in products if p["sku"] == sku))


async def test_a_partial_refund_leaves_the_rest_refundable(
    admin: Client, completed_payment: dict[str, Any]
) -> None:
    # given a completed USD 64.99 payment
    # when an admin refunds USD 20 of it
    payload = await refund(admin, completed_payment["id"], amount="20", reason="damaged box")
    # then a SUCCEEDED refund of USD 20.00 is recorded and USD 44.99 remains refundable
    assert payload["errors"] == []
    assert payload["refund"]["amount"] == "20.00"
    assert payload["refund"]["status"] == "SUCCEEDED"
    assert payload["refund"]["reason"] == "damaged box"
    assert payload["refund"]["gatewayRefundId"].startswith("re_sim_")
    assert payload["refund"]["id"].startswith("re_")
    assert payload["payment"]["status"] == "PARTIALLY_REFUNDED"
    assert payload["payment"]["refundedAmount"] == "20.00"
    assert payload["payment"]["refundableAmount"] == "44.99"
    data = await admin(PAYMENT, id=completed_payment["id"])
    assert data["payment"]["order"] == {"status": "PARTIALLY_REFUNDED", "amountRefunded": "20.00"}


async def test_refunds_in_parts_until_nothing_is_left(
    admin: Client, completed_payment: dict[str, Any]
) -> None:
    # when an admin refunds 10, then 30, then the rest (no amount)
    first = await refund(admin, completed_payment["id"], amount="10")
    second = await refund(admin, completed_payment["id"], amount="30.00")
    rest = await refund(admin, completed_payment["id"])
    # then the last refund takes exactly what was left and the payment is REFUNDED
    assert [p["refund"]["amount"] for p in (first, second, rest)] == ["10.00", "30.00", "24.99"]
    assert rest["payment"]["status"] == "REFUNDED"
    assert rest["payment"]["refundableAmount"] == "0.00"
    data = await admin(PAYMENT, id=completed_payment["id"])
    assert [r["amount"] for r in data["payment"]["refunds"]] == ["10.00", "30.00", "24.99"]
    assert data["payment"]["order"]["status"] == "REFUNDED"
    # and any further refund is refused
    more = await refund(admin, completed_payment["id"], amount="0.01")
    assert [e["code"] for e in more["errors"]] == ["INVALID_STATE"]


async def test_a_refund_above_what_remains_is_refused_and_changes_nothing(
    admin: Client, completed_payment: dict[str, Any]
) -> None:
    # given USD 60 of USD 64.99 already refunded
    await refund(admin, completed_payment["id"], amount="60")
    # when an admin asks for USD 5 more (only 4.99 remain)
    payload = await refund(admin, completed_payment["id"], amount="5")
    # then it is REFUND_EXCEEDS_AVAILABLE and nothing moved
    assert payload["refund"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [
        ("REFUND_EXCEEDS_AVAILABLE", "amount")
    ]
    data = await admin(PAYMENT, id=completed_payment["id"])
    assert data["payment"]["refundedAmount"] == "60.00"
    assert len(data["payment"]["refunds"]) == 1


@pytest.mark.parametrize(
    ("amount", "code"),
    [("0", "VALIDATION"), ("-1", "VALIDATION"), ("1.001", "VALIDATION"), ("64.999", "VALIDATION")],
)
async def test_malformed_refund_amounts_are_validation_errors(
    admin: Client, completed_payment: dict[str, Any], amount: str, code: str
) -> None:
    payload = await refund(admin, completed_payment["id"], amount=amount)
    assert [e["code"] for e in payload["errors"]] == [code]


async def test_only_completed_payments_can_be_refunded(
    admin: Client, alice: Client, authorized_payment: dict[str, Any]
) -> None:
    # an authorization has captured nothing
    payload = await refund(admin, authorized_payment["id"])
    assert [e["code"] for e in payload["errors"]] == ["INVALID_STATE"]
    # nor has a declined payment
    declined = await paid(alice, token="pm_card_chargeDeclined")
    payload = await refund(admin, declined["id"], amount="1")
    assert [e["code"] for e in payload["errors"]] == ["INVALID_STATE"]


async def test_refunds_are_admin_only(
    alice: Client, admin: Client, completed_payment: dict[str, Any]
) -> None:
    # when Alice tries to refund her own payment
    payload = await refund(alice, completed_payment["id"], amount="1")
    # then she may not, and nothing was refunded
    assert [e["code"] for e in payload["errors"]] == ["FORBIDDEN"]
    data = await admin(PAYMENT, id=completed_payment["id"])
    assert data["payment"]["refunds"] == []


async def test_an_unknown_payment_is_not_found(admin: Client) -> None:
    payload = await refund(admin, "pay_doesnotexist", amount="1")
    assert [e["code"] for e in payload["errors"]] == ["NOT_FOUND"]


async def test_a_full_refund_restores_the_stock(admin: Client, alice: Client) -> None:
    # given Alice bought three pairs of socks
    before = await stock_of(admin, "SOCKS-3PK")
    payment = await paid(alice, lines=[("SOCKS-3PK", 3)])
    assert await stock_of(admin, "SOCKS-3PK") == before - 3
    # when a partial refund is made, the stock stays sold
    await refund(admin, payment["id"], amount="1")
    assert await stock_of(admin, "SOCKS-3PK") == before - 3
    # when the rest is refunded
    await refund(admin, payment["id"])
    # then the socks are back in stock
    assert await stock_of(admin, "SOCKS-3PK") == before


async def test_refunds_have_an_audit_trail(
    admin: Client, completed_payment: dict[str, Any]
) -> None:
    await refund(admin, completed_payment["id"], amount="4.99")
    await refund(admin, completed_payment["id"])
    data = await admin(PAYMENT, id=completed_payment["id"])
    events = [
        (e["type"], e["fromStatus"], e["toStatus"], e["source"]) for e in data["payment"]["events"]
    ]
    assert events == [
        ("payment.created", None, "PENDING", "API"),
        ("payment.status_changed", "PENDING", "COMPLETED", "GATEWAY"),
        ("refund.created", None, None, "ADMIN"),
        ("refund.succeeded", None, None, "GATEWAY"),
        ("payment.status_changed", "COMPLETED", "PARTIALLY_REFUNDED", "GATEWAY"),
        ("refund.created", None, None, "ADMIN"),
        ("refund.succeeded", None, None, "GATEWAY"),
        ("payment.status_changed", "PARTIALLY_REFUNDED", "REFUNDED", "GATEWAY"),
    ]


async def test_a_refund_the_gateway_refuses_is_failed_and_changes_no_balance(
    admin: Client, server: Any, completed_payment: dict[str, Any]
) -> None:
    # given the gateway will refuse the next refund
    server.simulated.inject("refund", GatewayError("the charge is disputed"))
    # when an admin refunds USD 10
    payload = await refund(admin, completed_payment["id"], amount="10")
    # then the refund is FAILED with the gateway's reason, and no balance changed
    assert payload["refund"]["status"] == "FAILED"
    assert payload["refund"]["failureReason"]
    assert [e["code"] for e in payload["errors"]] == ["GATEWAY_ERROR"]
    assert payload["payment"]["refundedAmount"] == "0.00"
    assert payload["payment"]["refundableAmount"] == "64.99"
    assert payload["payment"]["status"] == "COMPLETED"
    # and once the gateway agrees, the refund can be retried
    retried = await refund(admin, completed_payment["id"], amount="10")
    assert retried["refund"]["status"] == "SUCCEEDED"
    assert retried["payment"]["refundedAmount"] == "10.00"


async def test_a_hundred_concurrent_partial_refunds_never_exceed_the_captured_amount(
    admin: Client, alice: Client
) -> None:
    # given a completed payment of USD 50.00 (two T-shirts)
    payment = await paid(alice, lines=[("TSHIRT-BLK-M", 2)])
    # when 100 refunds of USD 1.00, each 1/50 of it, race each other
    results = await asyncio.gather(*(refund(admin, payment["id"], amount="1") for _ in range(100)))
    # then exactly 50 succeed and the rest are refused as exceeding what is left
    succeeded = [r for r in results if r["refund"] and r["refund"]["status"] == "SUCCEEDED"]
    refused = [r for r in results if r["errors"]]
    assert len(succeeded) == 50
    assert len(refused) == 50
    codes = {e["code"] for r in refused for e in r["errors"]}
    assert codes <= {"REFUND_EXCEEDS_AVAILABLE", "INVALID_STATE"}
    # and the books balance: refunded equals captured, every refund row accounted for
    data = await admin(PAYMENT, id=payment["id"])
    p = data["payment"]
    assert p["status"] == "REFUNDED"
    assert p["refundedAmount"] == p["capturedAmount"] == "50.00"
    assert sum(Decimal(r["amount"]) for r in p["refunds"]) == Decimal("50.00")
    assert len(p["refunds"]) == 50
    assert all(r["status"] == "SUCCEEDED" for r in p["refunds"])


async def test_refunds_inside_the_window_are_accepted_and_after_it_refused(
    admin: Client, server: Any, completed_payment: dict[str, Any]
) -> None:
    window = server.service.refund_window
    assert window == timedelta(days=180)  # PAYQL_REFUND_WINDOW_DAYS' default
    completed = datetime.now(UTC)
    try:
        # given the service's clock stands one day inside the window
        server.service.clock = lambda: completed + window - timedelta(days=1)
        # then a refund is accepted
        inside = await refund(admin, completed_payment["id"], amount="1")
        assert inside["errors"] == []
        # given the clock has passed the window
        server.service.clock = lambda: completed + window + timedelta(minutes=1)
        # when an admin refunds the payment
        payload = await refund(admin, completed_payment["id"], amount="1")
        # then the window has passed
        assert [e["code"] for e in payload["errors"]] == ["REFUND_WINDOW_EXPIRED"]
    finally:
        server.service.clock = utcnow
