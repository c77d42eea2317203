"""processPayment and the payment lifecycle, through the real endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from clients import Client
from conftest import pay, place_order
from gateway_support import approve_quietly

from gateways.base import ChargeState, GatewayStatus

PAYMENT = """
query ($id: ID!) {
  payment(id: $id) {
    id status amount currency capturedAmount refundableAmount clientSecret processedAt
    completedAt failureCode
    order { id status amountPaid amountDue }
    events { type fromStatus toStatus source }
  }
}
"""

CAPTURE = """
mutation ($id: ID!, $amount: Decimal) {
  capturePayment(id: $id, amount: $amount) {
    payment { id status amount capturedAmount order { status amountPaid } }
    errors { code field message }
  }
}
"""

CANCEL = """
mutation ($id: ID!) {
  cancelPayment(id: $id) {
    payment { id status clientSecret order { status } }
    errors { code field message }
  }
}
"""

MARK_RECEIVED = """
mutation ($id: ID!) {
  markPaymentReceived(id: $id) {
    payment { id status capturedAmount gateway order { status } }
    errors { code field message }
  }
}
"""

SYNC = """
mutation ($id: ID!) {
  syncPayment(id: $id) {
    payment { id status events { type } }
    errors { code field message }
  }
}
"""


@pytest.mark.parametrize(
    ("token", "brand", "last4"),
    [
        ("pm_card_visa", "visa", "4242"),
        ("pm_card_mastercard", "mastercard", "4444"),
        ("pm_card_amex", "amex", "8431"),
        ("pm_card_visa_debit", "visa", "5556"),
        ("tok_visa", "visa", "4242"),
    ],
)
async def test_a_succeeding_test_card_completes_the_payment(
    alice: Client, pending_order: dict[str, Any], token: str, brand: str, last4: str
) -> None:
    # given Alice's unpaid order of USD 50.98
    # when she pays it with a succeeding Stripe test token
    payload = await pay(alice, pending_order["id"], token=token)
    # then the payment is COMPLETED for the server's amount, with only safe card details
    assert payload["errors"] == []
    payment = payload["payment"]
    assert payment["status"] == "COMPLETED"
    assert payment["amount"] == "50.98"
    assert payment["capturedAmount"] == "50.98"
    assert payment["gateway"] == "simulated"
    assert payment["gatewayTransactionId"].startswith("pi_sim_")
    assert payment["clientSecret"] is None and payload["clientSecret"] is None
    card = payment["cardDetails"]
    assert (card["brand"], card["last4"]) == (brand, last4)
    assert 1 <= card["expiryMonth"] <= 12 and card["expiryYear"] > 2025
    # and the order is paid
    order = (await alice(PAYMENT, id=payment["id"]))["payment"]["order"]
    assert order == {
        "id": pending_order["id"],
        "status": "PAID",
        "amountPaid": "50.98",
        "amountDue": "0.00",
    }


@pytest.mark.parametrize(
    ("token", "code", "message"),
    [
        ("pm_card_chargeDeclined", "card_declined", "Your card was declined."),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
            "Your card has insufficient funds.",
        ),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "Your card has expired."),
    ],
)
async def test_a_declined_card_fails_the_payment_without_an_error(
    alice: Client, pending_order: dict[str, Any], token: str, code: str, message: str
) -> None:
    # when Alice pays with a declining test token
    payload = await pay(alice, pending_order["id"], token=token)
    # then the payment is FAILED with the decline code and a human message, not an error
    assert payload["errors"] == []
    payment = payload["payment"]
    assert payment["status"] == "FAILED"
    assert payment["failureCode"] == code
    assert payment["failureMessage"] == message
    assert payment["capturedAmount"] == "0.00"
    # and the order still waits for its money
    after = (await alice(PAYMENT, id=payment["id"]))["payment"]
    assert after["order"]["status"] == "PENDING"
    assert after["order"]["amountDue"] == "50.98"


async def test_a_failed_attempt_stays_on_the_order_and_a_new_attempt_may_follow(
    alice: Client, pending_order: dict[str, Any]
) -> None:
    # given a declined attempt
    declined = await pay(alice, pending_order["id"], token="pm_card_chargeDeclined")
    assert declined["payment"]["status"] == "FAILED"
    # when Alice tries again with a good card
    retried = await pay(alice, pending_order["id"], token="pm_card_visa")
    # then the second attempt completes and both stay on the order
    assert retried["payment"]["status"] == "COMPLETED"
    data = await alice(
        "query ($id: ID!) { paymentsByOrder(orderId: $id) { id status } }",
        id=pending_order["id"],
    )
    assert [p["status"] for p in data["paymentsByOrder"]] == ["FAILED", "COMPLETED"]


@pytest.mark.parametrize(
    "token", ["pm_card_authenticationRequired", "pm_card_threeDSecure2Required"]
)
async def test_a_card_needing_3d_secure_requires_action_with_a_client_secret(
    alice: Client, pending_order: dict[str, Any], token: str
) -> None:
    # when Alice pays with a card that needs 3-D Secure
    payload = await pay(alice, pending_order["id"], token=token)
    # then the payment waits for her, and only she gets the client secret
    payment = payload["payment"]
    assert payment["status"] == "REQUIRES_ACTION"
    assert payload["clientSecret"] and payload["clientSecret"].startswith(
        payment["gatewayTransactionId"] + "_secret_"
    )
    assert payment["clientSecret"] == payload["clientSecret"]


async def test_without_a_token_the_payment_stays_pending_with_a_client_secret(
    alice: Client, admin: Client, pending_order: dict[str, Any]
) -> None:
    # when Alice starts a payment without a token (client-side confirmation)
    payload = await pay(alice, pending_order["id"])
    # then it stays PENDING with a clientSecret for her to confirm with
    payment = payload["payment"]
    assert payload["errors"] == []
    assert payment["status"] == "PENDING"
    assert payload["clientSecret"]
    # and an admin reading the payment does not see the secret: only its owner does
    as_admin = (await admin(PAYMENT, id=payment["id"]))["payment"]
    assert as_admin["clientSecret"] is None
    assert (await alice(PAYMENT, id=payment["id"]))["payment"]["clientSecret"] == (
        payload["clientSecret"]
    )


async def test_an_unknown_token_is_a_validation_error_and_writes_nothing(
    alice: Client, pending_order: dict[str, Any]
) -> None:
    # when Alice pays with a token no gateway knows
    payload = await pay(alice, pending_order["id"], token="pm_card_doesNotExist")
    # then it is a VALIDATION error on the token, and no payment was recorded
    assert payload["payment"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", "token")]
    data = await alice(
        "query ($id: ID!) { paymentsByOrder(orderId: $id) { id } }", id=pending_order["id"]
    )
    assert data["paymentsByOrder"] == []


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"amount": "50.97"}, "AMOUNT_MISMATCH", "amount"),
        ({"amount": "0.01"}, "AMOUNT_MISMATCH", "amount"),
        ({"amount": "50.981"}, "VALIDATION", "amount"),
        ({"amount": "-50.98"}, "VALIDATION", "amount"),
        ({"currency": "EUR"}, "CURRENCY_MISMATCH", "currency"),
        ({"currency": "XXY"}, "VALIDATION", "currency"),
        ({"gateway": "nope"}, "VALIDATION", "gateway"),
        ({"paymentMethod": "BANK_TRANSFER", "token": "pm_card_visa"}, "VALIDATION", "token"),
        ({"gateway": "manual"}, "VALIDATION", "paymentMethod"),
    ],
)
async def test_tampered_or_malformed_payment_input_is_refused(
    alice: Client, pending_order: dict[str, Any], fields: dict[str, Any], code: str, field: str
) -> None:
    # when Alice sends an amount, currency or route that is not the order's
    payload = await pay(alice, pending_order["id"], **{"token": "pm_card_visa", **fields})
    # then the payment is refused with a typed error, and nothing was charged
    assert payload["payment"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)]
    data = await alice(
        "query ($id: ID!) { order(id: $id) { status payments { id } } }", id=pending_order["id"]
    )
    assert data["order"] == {"status": "PENDING", "payments": []}


async def test_an_amount_that_matches_the_server_total_is_accepted(
    alice: Client, pending_order: dict[str, Any]
) -> None:
    # when Alice states the amount due, with trailing zeros, and the currency in lower case
    payload = await pay(
        alice, pending_order["id"], token="pm_card_visa", amount="50.980", currency="usd"
    )
    # then it is the same amount and currency, and the payment completes
    assert payload["errors"] == []
    assert payload["payment"]["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("sku", "quantity", "amount", "currency", "bad_amount"),
    [
        ("MATCHA-100G", 2, "6400", "JPY", "6400.5"),
        ("DATES-1KG", 3, "14.250", "KWD", "14.2501"),
    ],
)
async def test_zero_and_three_decimal_currencies(
    alice: Client, sku: str, quantity: int, amount: str, currency: str, bad_amount: str
) -> None:
    # given an order priced in JPY (no decimals) or KWD (three)
    order = await place_order(alice, (sku, quantity))
    assert (order["currency"], order["totalAmount"]) == (currency, amount)
    # when Alice states an amount with more decimals than the currency has
    refused = await pay(alice, order["id"], token="pm_card_visa", amount=bad_amount)
    # then it is a VALIDATION error
    assert [e["code"] for e in refused["errors"]] == ["VALIDATION"]
    # and with the exact amount the payment completes in that currency
    payload = await pay(alice, order["id"], token="pm_card_visa", amount=amount)
    assert payload["errors"] == []
    assert (payload["payment"]["amount"], payload["payment"]["currency"]) == (amount, currency)
    assert payload["payment"]["capturedAmount"] == amount


async def test_a_second_payment_on_a_paid_order_is_invalid_state(
    alice: Client, completed_payment: dict[str, Any]
) -> None:
    # when Alice tries to pay an order that is already paid
    payload = await pay(alice, completed_payment["orderId"], token="pm_card_visa")
    # then it is refused
    assert payload["payment"] is None
    assert [e["code"] for e in payload["errors"]] == ["INVALID_STATE"]


async def test_an_open_payment_blocks_a_second_attempt_until_cancelled(
    alice: Client, pending_order: dict[str, Any]
) -> None:
    # given a payment waiting for client confirmation
    first = await pay(alice, pending_order["id"])
    assert first["payment"]["status"] == "PENDING"
    # when Alice starts another one
    second = await pay(alice, pending_order["id"], token="pm_card_visa")
    # then it is refused, naming the open payment
    assert [e["code"] for e in second["errors"]] == ["INVALID_STATE"]
    assert first["payment"]["id"] in second["errors"][0]["message"]
    # and once she cancels the first, she can pay
    cancelled = (await alice(CANCEL, id=first["payment"]["id"]))["cancelPayment"]
    assert cancelled["errors"] == []
    assert cancelled["payment"]["status"] == "CANCELLED"
    assert cancelled["payment"]["clientSecret"] is None
    third = await pay(alice, pending_order["id"], token="pm_card_visa")
    assert third["payment"]["status"] == "COMPLETED"


async def test_manual_capture_of_the_whole_authorization(
    admin: Client, authorized_payment: dict[str, Any]
) -> None:
    # given an AUTHORIZED payment of USD 64.99
    assert authorized_payment["capturedAmount"] == "0.00"
    # when an admin captures it all
    payload = (await admin(CAPTURE, id=authorized_payment["id"]))["capturePayment"]
    # then it is COMPLETED for the whole amount, and the order is paid
    assert payload["errors"] == []
    assert payload["payment"]["status"] == "COMPLETED"
    assert payload["payment"]["capturedAmount"] == "64.99"
    assert payload["payment"]["order"] == {"status": "PAID", "amountPaid": "64.99"}


async def test_manual_capture_of_less_releases_the_rest(
    admin: Client, authorized_payment: dict[str, Any]
) -> None:
    # when an admin captures USD 40 of the USD 64.99 authorized
    payload = (await admin(CAPTURE, id=authorized_payment["id"], amount="40"))["capturePayment"]
    # then USD 40.00 is captured and refundable, the rest released
    assert payload["payment"]["status"] == "COMPLETED"
    assert payload["payment"]["amount"] == "64.99"
    assert payload["payment"]["capturedAmount"] == "40.00"
    data = await admin(PAYMENT, id=authorized_payment["id"])
    assert data["payment"]["refundableAmount"] == "40.00"


@pytest.mark.parametrize(
    ("amount", "code"), [("64.991", "VALIDATION"), ("65.00", "AMOUNT_MISMATCH")]
)
async def test_capturing_more_than_authorized_is_refused(
    admin: Client, authorized_payment: dict[str, Any], amount: str, code: str
) -> None:
    payload = (await admin(CAPTURE, id=authorized_payment["id"], amount=amount))["capturePayment"]
    assert [e["code"] for e in payload["errors"]] == [code]
    data = await admin(PAYMENT, id=authorized_payment["id"])
    assert data["payment"]["status"] == "AUTHORIZED"


async def test_capture_is_for_admins_and_authorized_payments_only(
    alice: Client,
    admin: Client,
    authorized_payment: dict[str, Any],
    completed_payment: dict[str, Any],
) -> None:
    # a customer may not capture, even her own authorization
    by_alice = (await alice(CAPTURE, id=authorized_payment["id"]))["capturePayment"]
    assert [e["code"] for e in by_alice["errors"]] == ["FORBIDDEN"]
    # a completed payment cannot be captured again
    again = (await admin(CAPTURE, id=completed_payment["id"]))["capturePayment"]
    assert [e["code"] for e in again["errors"]] == ["INVALID_STATE"]


async def test_cancelling_an_authorization_voids_it(
    alice: Client, admin: Client, authorized_payment: dict[str, Any]
) -> None:
    # a customer may not void an authorization: that is the merchant's call
    by_alice = (await alice(CANCEL, id=authorized_payment["id"]))["cancelPayment"]
    assert [e["code"] for e in by_alice["errors"]] == ["FORBIDDEN"]
    # when an admin cancels it
    payload = (await admin(CANCEL, id=authorized_payment["id"]))["cancelPayment"]
    # then it is CANCELLED and the order may be paid again
    assert payload["errors"] == []
    assert payload["payment"]["status"] == "CANCELLED"
    assert payload["payment"]["order"]["status"] == "PENDING"


async def test_a_completed_payment_cannot_be_cancelled(
    admin: Client, completed_payment: dict[str, Any]
) -> None:
    payload = (await admin(CANCEL, id=completed_payment["id"]))["cancelPayment"]
    assert [e["code"] for e in payload["errors"]] == ["INVALID_STATE"]
    data = await admin(PAYMENT, id=completed_payment["id"])
    assert data["payment"]["status"] == "COMPLETED"


@pytest.mark.parametrize("method", ["BANK_TRANSFER", "CASH_ON_DELIVERY"])
async def test_an_offline_payment_waits_until_an_admin_marks_it_received(
    alice: Client, admin: Client, pending_order: dict[str, Any], method: str
) -> None:
    # given Alice chose an offline method
    payload = await pay(alice, pending_order["id"], paymentMethod=method)
    payment = payload["payment"]
    assert payload["errors"] == []
    assert (payment["status"], payment["gateway"]) == ("PENDING", "manual")
    assert payload["clientSecret"] is None
    # when Alice herself tries to mark it received
    by_alice = (await alice(MARK_RECEIVED, id=payment["id"]))["markPaymentReceived"]
    # then she may not
    assert [e["code"] for e in by_alice["errors"]] == ["FORBIDDEN"]
    # when an admin marks it received
    received = (await admin(MARK_RECEIVED, id=payment["id"]))["markPaymentReceived"]
    # then it is COMPLETED for the whole amount and the order is paid
    assert received["errors"] == []
    assert received["payment"]["status"] == "COMPLETED"
    assert received["payment"]["capturedAmount"] == "50.98"
    assert received["payment"]["order"]["status"] == "PAID"
    # and marking it again is refused
    again = (await admin(MARK_RECEIVED, id=payment["id"]))["markPaymentReceived"]
    assert [e["code"] for e in again["errors"]] == ["INVALID_STATE"]


async def test_only_offline_payments_are_marked_received(
    admin: Client, alice: Client, pending_order: dict[str, Any]
) -> None:
    card = await pay(alice, pending_order["id"])  # a card payment, pending confirmation
    payload = (await admin(MARK_RECEIVED, id=card["payment"]["id"]))["markPaymentReceived"]
    assert [e["code"] for e in payload["errors"]] == ["INVALID_STATE"]
    data = await admin(PAYMENT, id=card["payment"]["id"])
    assert data["payment"]["status"] == "PENDING"


async def test_sync_applies_the_gateway_truth(
    alice: Client, server: Any, http: Any, awaiting_3ds: dict[str, Any]
) -> None:
    # given a payment whose 3-D Secure the customer completed at the gateway, and
    # whose webhook was lost
    payment = awaiting_3ds
    await approve_quietly(http, server, payment["clientSecret"])
    # when Alice's page asks for a sync
    synced = (await alice(SYNC, id=payment["id"]))["syncPayment"]
    # then the payment follows the gateway, through the transition table
    assert synced["errors"] == []
    assert synced["payment"]["status"] == "COMPLETED"
    after = (await alice(PAYMENT, id=payment["id"]))["payment"]
    assert after["capturedAmount"] == "50.98"
    assert after["order"]["status"] == "PAID"
    # and a second sync changes nothing
    again = (await alice(SYNC, id=payment["id"]))["syncPayment"]
    assert len(again["payment"]["events"]) == len(synced["payment"]["events"])


async def test_sync_never_moves_a_payment_backwards(
    admin: Client, server: Any, completed_payment: dict[str, Any]
) -> None:
    # given a completed payment whose gateway answer is stale (says processing)
    stale = ChargeState(completed_payment["gatewayTransactionId"], GatewayStatus.PROCESSING)
    server.simulated.inject("retrieve", stale)
    # when it is synced
    synced = (await admin(SYNC, id=completed_payment["id"]))["syncPayment"]
    # then it stays COMPLETED and the ignored report is in the audit trail
    assert synced["payment"]["status"] == "COMPLETED"
    assert synced["payment"]["events"][-1]["type"] == "payment.transition_ignored"
