"""The Stripe gateway: the official SDK over real HTTP against localstripe.

Where localstripe lacks Stripe's behaviour (charge.refunded, disputes, refunds made
in the dashboard), the tests send Stripe-shaped events signed by the SDK's own
signature helper.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

import httpx
import pytest
import stripe
from clients import Client, Subscription
from conftest import pay, place_order, refund
from gateway_support import STRIPE_KEY, STRIPE_WEBHOOK_SECRET, Localstripe
from servers import LiveServer

from gateways.base import ChargeRequest, GatewayError, GatewayUnavailable
from gateways.stripe import StripeGateway

PAYMENT = """
query ($id: ID!) {
  payment(id: $id) {
    status gateway capturedAmount refundedAmount failureCode
    refunds { amount status reason gatewayRefundId }
    disputes { id amount status reason }
    events { type fromStatus toStatus source }
  }
}
"""
STATUS_CHANGED = """
subscription ($paymentId: ID) {
  paymentStatusChanged(paymentId: $paymentId) { previousStatus status }
}
"""


@pytest.fixture
def emulator(localstripe: Localstripe | None) -> Localstripe:
    if localstripe is None:
        pytest.skip("localstripe is not installed")
    return localstripe


async def stripe_pay(client: Client, order_id: str, **fields: Any) -> dict[str, Any]:
    return await pay(client, order_id, gateway="stripe", **fields)


async def paid_with_stripe(client: Client, sku: str = "HOODIE-GRY-L") -> dict[str, Any]:
    order = await place_order(client, (sku, 1))
    payload = await stripe_pay(client, order["id"], token="pm_card_visa")
    assert payload["errors"] == [] and payload["payment"]["status"] == "COMPLETED", payload
    payment: dict[str, Any] = payload["payment"]
    return payment


async def post_stripe_event(
    http: httpx.AsyncClient, server: LiveServer, event_type: str, obj: dict[str, Any]
) -> httpx.Response:
    """A Stripe event, signed with the SDK's own test helper."""
    body = json.dumps(
        {
            "id": f"evt_{secrets.token_hex(8)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_WEBHOOK_SECRET)
    return await http.post(
        f"{server.url}/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


async def test_a_card_payment_completes_through_stripe(
    alice: Client, emulator: Localstripe, pending_order: dict[str, Any]
) -> None:
    payload = await stripe_pay(alice, pending_order["id"], token="pm_card_visa")
    assert payload["errors"] == []
    payment = payload["payment"]
    assert (payment["status"], payment["gateway"]) == ("COMPLETED", "stripe")
    assert payment["gatewayTransactionId"].startswith("pi_")
    assert payment["capturedAmount"] == "50.98"
    assert (payment["cardDetails"]["brand"], payment["cardDetails"]["last4"]) == ("visa", "4242")


async def test_a_declined_card_fails_with_stripes_decline_code(
    alice: Client, emulator: Localstripe, pending_order: dict[str, Any]
) -> None:
    payload = await stripe_pay(alice, pending_order["id"], token="pm_card_chargeCustomerFail")
    assert payload["errors"] == []
    assert payload["payment"]["status"] == "FAILED"
    assert payload["payment"]["failureCode"] == "card_declined"
    assert payload["payment"]["failureMessage"]


async def test_a_malformed_token_is_refused_before_stripe_is_called(
    alice: Client, emulator: Localstripe, pending_order: dict[str, Any]
) -> None:
    # a token that is no Stripe token
    payload = await stripe_pay(alice, pending_order["id"], token="card_visa_1234")
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", "token")]
    # a raw card number in its place
    payload = await stripe_pay(alice, pending_order["id"], token="4242424242424242")
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("CARD_DATA_REJECTED", "token")]


async def test_3d_secure_through_stripe_completes_by_webhook_and_reaches_a_subscriber(
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    emulator: Localstripe,
    pending_order: dict[str, Any],
) -> None:
    # given a card that needs 3-D Secure, tokenized at Stripe (as Stripe.js would)
    sdk = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": emulator.url})
    method = await sdk.v1.payment_methods.create_async(
        params={
            "type": "card",
            "card": {"number": "4000002760003184", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    payload = await stripe_pay(alice, pending_order["id"], token=method.id)
    payment = payload["payment"]
    assert payment["status"] == "REQUIRES_ACTION"
    assert payload["clientSecret"].startswith(payment["gatewayTransactionId"])
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, paymentId=payment["id"])
        assert (await sub.next())["paymentStatusChanged"]["status"] == "REQUIRES_ACTION"
        # when the customer passes 3-D Secure at Stripe
        response = await http.post(
            f"{emulator.url}/v1/payment_intents/{payment['gatewayTransactionId']}/_authenticate",
            data={"client_secret": payload["clientSecret"], "success": "true", "key": "pk_test_x"},
        )
        assert response.status_code == 200, response.text
        # then Stripe's webhook completes the payment, and the page sees it
        change = (await sub.next())["paymentStatusChanged"]
        assert (change["previousStatus"], change["status"]) == ("REQUIRES_ACTION", "COMPLETED")
    data = await alice(PAYMENT, id=payment["id"])
    assert data["payment"]["events"][-1]["source"] == "WEBHOOK"


async def test_partial_and_full_refunds_through_stripe(
    admin: Client, alice: Client, emulator: Localstripe
) -> None:
    payment = await paid_with_stripe(alice)
    first = await refund(admin, payment["id"], amount="20")
    assert first["errors"] == []
    assert first["refund"]["status"] == "SUCCEEDED"
    assert first["refund"]["gatewayRefundId"].startswith("re_")
    assert first["payment"]["status"] == "PARTIALLY_REFUNDED"
    rest = await refund(admin, payment["id"])
    assert rest["refund"]["amount"] == "44.99"
    assert rest["payment"]["status"] == "REFUNDED"
    # Stripe does not check what remains (localstripe does not): we do
    more = await refund(admin, payment["id"], amount="1")
    assert [e["code"] for e in more["errors"]] == ["INVALID_STATE"]


async def test_manual_capture_of_less_and_a_void_through_stripe(
    admin: Client, alice: Client, emulator: Localstripe
) -> None:
    order = await place_order(alice, ("HOODIE-GRY-L", 1))
    held = (await stripe_pay(alice, order["id"], token="pm_card_visa", captureMethod="MANUAL"))[
        "payment"
    ]
    assert held["status"] == "AUTHORIZED"
    captured = await admin(
        """mutation ($id: ID!) { capturePayment(id: $id, amount: "40") {
             payment { status capturedAmount } errors { code message } } }""",
        id=held["id"],
    )
    assert captured["capturePayment"]["errors"] == []
    assert captured["capturePayment"]["payment"] == {
        "status": "COMPLETED",
        "capturedAmount": "40.00",
    }
    other = await place_order(alice, ("MUG-WHT", 1))
    voided = (await stripe_pay(alice, other["id"], token="pm_card_visa", captureMethod="MANUAL"))[
        "payment"
    ]
    cancel = await admin(
        """mutation ($id: ID!) { cancelPayment(id: $id) {
             payment { status } errors { code message } } }""",
        id=voided["id"],
    )
    assert cancel["cancelPayment"] == {"payment": {"status": "CANCELLED"}, "errors": []}


async def test_without_a_token_stripe_gives_a_client_secret(
    alice: Client, emulator: Localstripe, pending_order: dict[str, Any]
) -> None:
    payload = await stripe_pay(alice, pending_order["id"])
    assert payload["payment"]["status"] == "PENDING"
    assert payload["clientSecret"].startswith(payload["payment"]["gatewayTransactionId"])


async def test_a_refund_made_in_the_stripe_dashboard_appears_as_a_refund(
    admin: Client,
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    emulator: Localstripe,
) -> None:
    payment = await paid_with_stripe(alice)
    # given a USD 15 refund made in Stripe's dashboard, not through payql
    sdk = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": emulator.url})
    made = await sdk.v1.refunds.create_async(
        params={"payment_intent": payment["gatewayTransactionId"], "amount": 1500}
    )
    # when Stripe reports charge.refunded, as it does now: a charge without its refunds
    charge = {
        "id": "ch_dashboard",
        "object": "charge",
        "payment_intent": payment["gatewayTransactionId"],
        "amount_refunded": 1500,
    }
    response = await post_stripe_event(http, server, "charge.refunded", charge)
    # then payql asks Stripe for the refunds, and the dashboard's appears as a refund
    assert (response.status_code, response.json()["outcome"]) == (200, "applied")
    data = (await admin(PAYMENT, id=payment["id"]))["payment"]
    assert data["refunds"] == [
        {
            "amount": "15.00",
            "status": "SUCCEEDED",
            "reason": "made at the gateway",
            "gatewayRefundId": made.id,
        }
    ]
    assert (data["status"], data["refundedAmount"]) == ("PARTIALLY_REFUNDED", "15.00")
    # and the same refund reported again (refund.updated) changes nothing
    again = await post_stripe_event(http, server, "refund.updated", made.to_dict())
    assert again.status_code == 200
    after = (await admin(PAYMENT, id=payment["id"]))["payment"]
    assert (len(after["refunds"]), after["refundedAmount"]) == (1, "15.00")


async def test_a_dispute_is_recorded_and_visible_on_the_payment(
    admin: Client,
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    emulator: Localstripe,
) -> None:
    payment = await paid_with_stripe(alice)
    dispute = {
        "id": "dp_test_1",
        "object": "dispute",
        "amount": 6499,
        "currency": "usd",
        "reason": "fraudulent",
        "status": "needs_response",
        "payment_intent": payment["gatewayTransactionId"],
    }
    assert (await post_stripe_event(http, server, "charge.dispute.created", dispute)).is_success
    closed = {**dispute, "status": "lost"}
    assert (await post_stripe_event(http, server, "charge.dispute.closed", closed)).is_success
    data = (await admin(PAYMENT, id=payment["id"]))["payment"]
    assert data["disputes"] == [
        {"id": "dp_test_1", "amount": "64.99", "status": "lost", "reason": "fraudulent"}
    ]
    types = [e["type"] for e in data["events"]]
    assert types[-2:] == ["dispute.created", "dispute.closed"]


async def test_stripe_webhooks_are_verified_by_the_sdk(
    server: LiveServer, http: httpx.AsyncClient, emulator: Localstripe
) -> None:
    body = json.dumps(
        {
            "id": "evt_x",
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {"object": {"object": "payment_intent", "id": "pi_x"}},
        }
    )
    forged = stripe.WebhookSignature.generate_signature_header(body, "whsec_forged")
    response = await http.post(
        f"{server.url}/webhooks/stripe", content=body, headers={"Stripe-Signature": forged}
    )
    assert response.status_code == 400
    missing = await http.post(f"{server.url}/webhooks/stripe", content=body)
    assert missing.status_code == 400


async def test_unknown_event_types_are_acknowledged_and_ignored(
    server: LiveServer, http: httpx.AsyncClient, emulator: Localstripe
) -> None:
    response = await post_stripe_event(
        http, server, "customer.created", {"id": "cus_x", "object": "customer"}
    )
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


async def test_stripe_down_mid_payment_loses_nothing_and_sync_recovers(
    alice: Client,
    server: LiveServer,
    emulator: Localstripe,
    pending_order: dict[str, Any],
    later: Any,
) -> None:
    # given Stripe cannot be reached
    emulator.stop()
    try:
        payload = await stripe_pay(alice, pending_order["id"], token="pm_card_visa")
    finally:
        emulator.start()
        emulator.send_webhooks_to(f"{server.url}/webhooks/stripe")
    # then the customer is told, and the payment waits to be resolved
    assert [e["code"] for e in payload["errors"]] == ["GATEWAY_UNAVAILABLE"]
    payment = payload["payment"]
    assert payment["status"] == "PENDING"
    # when Stripe is back and, once no call can still be running, the payment is synced
    later()
    synced = await alice(
        "mutation ($id: ID!) { syncPayment(id: $id) { payment { status } errors { code } } }",
        id=payment["id"],
    )
    # then Stripe has no charge for it: it failed, and paying again works
    assert synced["syncPayment"] == {"payment": {"status": "FAILED"}, "errors": []}
    retried = await stripe_pay(alice, pending_order["id"], token="pm_card_visa")
    assert retried["payment"]["status"] == "COMPLETED"


async def test_a_refused_api_key_is_a_gateway_error_and_an_alert_without_the_key(
    emulator: Localstripe, caplog: pytest.LogCaptureFixture
) -> None:
    # given the Stripe gateway with a key Stripe refuses
    gateway = StripeGateway("rk_wrong_secret_key", api_base=emulator.url)
    request = ChargeRequest(
        reference="pay_x",
        amount=100,
        currency="USD",
        method="CREDIT_CARD",
        token="pm_card_visa",
        manual_capture=False,
        idempotency_key="payql-pay_x",
    )
    # when it is asked to charge
    with pytest.raises(GatewayError) as refused, caplog.at_level(logging.DEBUG):
        await gateway.charge(request)
    # then it is a configuration error, not an outage, and the log alerts without the key
    assert not isinstance(refused.value, GatewayUnavailable)
    assert "ALERT" in caplog.text and "PAYQL_STRIPE_SECRET_KEY" in caplog.text
    assert "rk_wrong_secret_key" not in caplog.text + str(refused.value)


async def test_racing_refunds_through_stripe_never_exceed_the_capture(
    admin: Client, alice: Client, emulator: Localstripe
) -> None:
    # given a USD 25.00 payment at Stripe, whose emulator accepts any over-refund
    payment = await paid_with_stripe(alice, sku="TSHIRT-BLK-M")
    # when 10 refunds of USD 5 race (only 5 fit)
    results = await asyncio.gather(*(refund(admin, payment["id"], amount="5") for _ in range(10)))
    # then exactly five reach Stripe and succeed; the books balance
    assert sum(1 for r in results if r["refund"] and r["refund"]["status"] == "SUCCEEDED") == 5
    data = (await admin(PAYMENT, id=payment["id"]))["payment"]
    assert (data["status"], data["refundedAmount"]) == ("REFUNDED", "25.00")
    assert len(data["refunds"]) == 5
    sdk = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": emulator.url})
    at_stripe = await sdk.v1.refunds.list_async(
        params={"payment_intent": payment["gatewayTransactionId"], "limit": 100}
    )
    assert sum(r.amount for r in at_stripe.data) == 2500 and len(at_stripe.data) == 5


async def test_a_replayed_payment_makes_one_payment_intent_at_stripe(
    alice: Client, emulator: Localstripe, pending_order: dict[str, Any]
) -> None:
    key = f"checkout-{secrets.token_hex(4)}"
    first = await stripe_pay(alice, pending_order["id"], token="pm_card_visa", idempotencyKey=key)
    again = await stripe_pay(alice, pending_order["id"], token="pm_card_visa", idempotencyKey=key)
    assert again["payment"] == first["payment"]
    # the emulator ignores idempotency keys: only ours kept this to one PaymentIntent
    sdk = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": emulator.url})
    intents = await sdk.v1.payment_intents.list_async(params={"limit": 100})
    ours = [
        i
        for i in intents.data
        if (i.to_dict().get("metadata") or {}).get("payql_payment_id") == first["payment"]["id"]
    ]
    assert len(ours) == 1
