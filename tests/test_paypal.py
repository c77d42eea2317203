"""The PayPal gateway: payql's own client code over real HTTP, against a local PayPal
that answers with PayPal's documented shapes (tests/paypal_fake.py), through the real
GraphQL endpoint and the real webhook route.

create → the buyer approves at PayPal → payql captures → refunds, partial and full;
manual capture and void; declines, outages, timeouts and lost answers; webhooks
verified by PayPal's verification API, deduplicated, and in any order.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from clients import Client, Subscription, status_reaches
from conftest import pay, place_order, refund
from paypal_fake import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, FakePayPal, Fault
from servers import LiveServer

from gateways.base import ChargeRequest, GatewayError, GatewayStatus, GatewayUnavailable
from gateways.paypal import PayPalGateway, to_minor, to_value
from models.write_path import utcnow

PAYMENT = """
query ($id: ID!) {
  payment(id: $id) {
    id status gateway paymentMethod gatewayTransactionId clientSecret
    nextAction { type redirectUrl }
    amount capturedAmount refundedAmount refundableAmount failureCode failureMessage
    refunds { amount status gatewayRefundId }
    events { type fromStatus toStatus source }
  }
}
"""
SYNC = """
mutation ($id: ID!) {
  syncPayment(id: $id) { payment { status capturedAmount } errors { code message } }
}
"""
CAPTURE = """
mutation ($id: ID!, $amount: Decimal) {
  capturePayment(id: $id, amount: $amount) {
    payment { status capturedAmount } errors { code message }
  }
}
"""
CANCEL = """
mutation ($id: ID!) {
  cancelPayment(id: $id) { payment { status } errors { code message } }
}
"""
STATUS_CHANGED = """
subscription ($paymentId: ID) {
  paymentStatusChanged(paymentId: $paymentId) { previousStatus status }
}
"""


async def paypal_pay(client: Client, order_id: str, **fields: Any) -> dict[str, Any]:
    return await pay(client, order_id, paymentMethod="PAYPAL", **fields)


async def send_webhook(
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    event_type: str,
    resource: dict[str, Any],
    event: dict[str, Any] | None = None,
) -> httpx.Response:
    """A PayPal event, signed as PayPal signs them, to payql's PayPal webhook."""
    body, headers = paypal.signed(event or paypal.event(event_type, resource))
    return await http.post(f"{server.url}/webhooks/paypal", content=body, headers=headers)


async def approve(
    http: httpx.AsyncClient, server: LiveServer, paypal: FakePayPal, order_id: str
) -> httpx.Response:
    """The buyer approves at PayPal, and PayPal says so by webhook."""
    order = paypal.approve(order_id)
    return await send_webhook(http, server, paypal, "CHECKOUT.ORDER.APPROVED", order)


async def awaiting_approval(client: Client, **fields: Any) -> dict[str, Any]:
    order = await place_order(client, ("HOODIE-GRY-L", 1))
    payload = await paypal_pay(client, order["id"], **fields)
    assert payload["errors"] == [], payload
    assert payload["payment"]["status"] == "REQUIRES_ACTION"
    return {**payload["payment"], "clientSecret": payload["clientSecret"]}


@pytest.fixture
async def paypal_awaiting_approval(alice: Client) -> dict[str, Any]:
    """Alice's USD 64.99 hoodie, paid with PayPal: the order waits for her approval."""
    return await awaiting_approval(alice)


@pytest.fixture
async def paypal_completed(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
) -> dict[str, Any]:
    """Alice's USD 64.99 hoodie, approved at PayPal and captured."""
    payment = paypal_awaiting_approval
    response = await approve(http, server, paypal, payment["gatewayTransactionId"])
    assert response.status_code == 200, response.text
    data = await alice(PAYMENT, id=payment["id"])
    assert data["payment"]["status"] == "COMPLETED", data
    return data["payment"]


# -- create, approve, capture ------------------------------------------------------------


async def test_a_paypal_payment_waits_for_the_buyer_at_paypals_approval_page(
    alice: Client, paypal: FakePayPal, pending_order: dict[str, Any]
) -> None:
    # when Alice pays her order with PayPal
    payload = await paypal_pay(alice, pending_order["id"])
    # then PayPal has an order for the amount the server priced, with our reference
    assert payload["errors"] == []
    payment = payload["payment"]
    assert (payment["status"], payment["gateway"]) == ("REQUIRES_ACTION", "paypal")
    order = paypal.orders[payment["gatewayTransactionId"]]
    unit = order["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "USD", "value": "50.98"}
    assert unit["custom_id"] == payment["id"]
    assert order["intent"] == "CAPTURE"
    # and the request carried our idempotency key
    assert paypal.request_ids["create"][-1] == f"payql-{payment['id']}"
    # and Alice is sent to PayPal's approval page; PayPal's buttons take the order id
    data = await alice(PAYMENT, id=payment["id"])
    assert data["payment"]["nextAction"] == {
        "type": "REDIRECT_TO_URL",
        "redirectUrl": f"https://www.sandbox.paypal.com/checkoutnow?token={order['id']}",
    }
    assert payload["clientSecret"] == order["id"]


async def test_another_customer_never_sees_the_approval_link(
    bob: Client, admin: Client, paypal_awaiting_approval: dict[str, Any]
) -> None:
    seen_by_admin = await admin(PAYMENT, id=paypal_awaiting_approval["id"])
    assert seen_by_admin["payment"]["nextAction"] is None
    seen_by_bob = await bob(PAYMENT, id=paypal_awaiting_approval["id"])
    assert seen_by_bob["payment"] is None


async def test_approval_at_paypal_is_captured_and_reaches_a_subscriber(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
) -> None:
    payment = paypal_awaiting_approval
    order_id = payment["gatewayTransactionId"]
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe(STATUS_CHANGED, paymentId=payment["id"])
        assert (await sub.next())["paymentStatusChanged"]["status"] == "REQUIRES_ACTION"
        # when Alice approves at PayPal, and PayPal says so
        response = await approve(http, server, paypal, order_id)
        assert response.status_code == 200, response.text
        # then payql captures it, and the page sees each step
        changes = [(await sub.next_move())["paymentStatusChanged"] for _ in range(2)]
    assert [(c["previousStatus"], c["status"]) for c in changes] == [
        ("REQUIRES_ACTION", "PROCESSING"),
        ("PROCESSING", "COMPLETED"),
    ]
    assert paypal.orders[order_id]["status"] == "COMPLETED"
    assert paypal.request_ids["capture"][-1] == f"payql-{payment['id']}-complete"
    data = (await alice(PAYMENT, id=payment["id"]))["payment"]
    assert (data["capturedAmount"], data["nextAction"], data["clientSecret"]) == (
        "64.99",
        None,
        None,
    )
    assert [e["type"] for e in data["events"]][-3:] == [
        "payment.status_changed",
        "payment.completion_requested",
        "payment.status_changed",
    ]


async def test_a_repeated_approval_webhook_captures_once(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
) -> None:
    payment = paypal_awaiting_approval
    order = paypal.approve(payment["gatewayTransactionId"])
    event = paypal.event("CHECKOUT.ORDER.APPROVED", order)
    captures = paypal.calls["capture"]
    # when PayPal sends the same event twice, at once, and again later
    first, second = await asyncio.gather(
        send_webhook(http, server, paypal, "", {}, event=event),
        send_webhook(http, server, paypal, "", {}, event=event),
    )
    third = await send_webhook(http, server, paypal, "", {}, event=event)
    # then each is acknowledged, and the order was captured once
    assert {first.status_code, second.status_code, third.status_code} == {200}
    assert sorted([first.json()["outcome"], second.json()["outcome"]]) == [
        "applied",
        "duplicate",
    ]
    assert third.json()["outcome"] == "duplicate"
    assert paypal.calls["capture"] == captures + 1
    await status_reaches(alice, payment["id"], "COMPLETED")


async def test_when_the_approval_webhook_is_lost_the_return_page_sync_captures(
    alice: Client, paypal: FakePayPal, paypal_awaiting_approval: dict[str, Any]
) -> None:
    # given Alice approved at PayPal, and its webhook never came
    payment = paypal_awaiting_approval
    paypal.approve(payment["gatewayTransactionId"])
    # when the shop's return page syncs the payment
    data = await alice(SYNC, id=payment["id"])
    # then payql reads the approved order from PayPal and captures it
    assert data["syncPayment"] == {
        "payment": {"status": "COMPLETED", "capturedAmount": "64.99"},
        "errors": [],
    }


async def test_the_capture_webhook_after_payqls_capture_changes_nothing(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_completed: dict[str, Any],
) -> None:
    capture = paypal.capture_resource(paypal_completed["gatewayTransactionId"])
    response = await send_webhook(http, server, paypal, "PAYMENT.CAPTURE.COMPLETED", capture)
    assert response.status_code == 200, response.text
    data = (await alice(PAYMENT, id=paypal_completed["id"]))["payment"]
    assert (data["status"], data["capturedAmount"]) == ("COMPLETED", "64.99")
    assert data["events"][-1]["type"] == "webhook.applied"


# A decline, and a refusal by PayPal's business rules that no retry would change.
@pytest.mark.parametrize("issue", ["INSTRUMENT_DECLINED", "PAYER_ACCOUNT_RESTRICTED"])
async def test_a_completion_paypal_refuses_fails_the_payment_with_a_reason(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
    issue: str,
) -> None:
    # given PayPal refuses the funding source Alice chose
    paypal.fail_next("capture", Fault(issue=issue))
    # when she approves
    response = await approve(http, server, paypal, paypal_awaiting_approval["gatewayTransactionId"])
    assert response.status_code == 200
    # then the payment failed, with a reason for people
    data = (await alice(PAYMENT, id=paypal_awaiting_approval["id"]))["payment"]
    assert (data["status"], data["failureCode"]) == ("FAILED", issue.lower())
    assert data["failureMessage"]


async def test_a_paypal_token_with_the_payment_is_refused_before_anything_is_written(
    alice: Client, paypal: FakePayPal, pending_order: dict[str, Any]
) -> None:
    created = paypal.calls["create"]
    payload = await paypal_pay(alice, pending_order["id"], token="pm_card_visa")
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", "token")]
    assert payload["payment"] is None
    assert paypal.calls["create"] == created


# -- refunds ---------------------------------------------------------------------------


async def test_partial_and_full_refunds_through_paypal(
    admin: Client, paypal: FakePayPal, paypal_completed: dict[str, Any]
) -> None:
    payment_id = paypal_completed["id"]
    order_id = paypal_completed["gatewayTransactionId"]
    # when an admin refunds part, then the rest
    first = await refund(admin, payment_id, amount="20")
    assert first["errors"] == []
    assert (first["refund"]["status"], first["payment"]["status"]) == (
        "SUCCEEDED",
        "PARTIALLY_REFUNDED",
    )
    rest = await refund(admin, payment_id)
    assert (rest["refund"]["amount"], rest["payment"]["status"]) == ("44.99", "REFUNDED")
    # then PayPal holds both refunds of its capture, each with our refund id
    refunds = paypal.refund_resources(order_id)
    assert [r["amount"]["value"] for r in refunds] == ["20.00", "44.99"]
    assert [r["id"] for r in refunds] == [
        first["refund"]["gatewayRefundId"],
        rest["refund"]["gatewayRefundId"],
    ]
    assert refunds[0]["custom_id"] == f"{payment_id}:{first['refund']['id']}"
    assert paypal.request_ids["refund"][-1] == f"payql-{rest['refund']['id']}"
    # and nothing more can be refunded
    more = await refund(admin, payment_id, amount="1")
    assert [e["code"] for e in more["errors"]] == ["INVALID_STATE"]


async def test_paypals_refund_webhook_for_payqls_own_refund_counts_it_once(
    admin: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_completed: dict[str, Any],
) -> None:
    made = await refund(admin, paypal_completed["id"], amount="10")
    [resource] = paypal.refund_resources(paypal_completed["gatewayTransactionId"])
    response = await send_webhook(http, server, paypal, "PAYMENT.CAPTURE.REFUNDED", resource)
    assert response.status_code == 200, response.text
    data = (await admin(PAYMENT, id=paypal_completed["id"]))["payment"]
    assert (data["refundedAmount"], len(data["refunds"])) == ("10.00", 1)
    assert data["refunds"][0]["gatewayRefundId"] == made["refund"]["gatewayRefundId"]


async def test_a_refund_made_in_paypals_dashboard_is_recorded_by_a_sync(
    admin: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_completed: dict[str, Any],
) -> None:
    # given the merchant refunded 15.00 in PayPal's dashboard
    made = paypal.refund_in_dashboard(paypal_completed["gatewayTransactionId"], "15.00")
    # its webhook carries no payql reference: acknowledged, and matched to nothing
    response = await send_webhook(http, server, paypal, "PAYMENT.CAPTURE.REFUNDED", made)
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    # when the payment is synced, PayPal's order lists it, and payql records it
    await admin(SYNC, id=paypal_completed["id"])
    data = (await admin(PAYMENT, id=paypal_completed["id"]))["payment"]
    assert (data["status"], data["refundedAmount"]) == ("PARTIALLY_REFUNDED", "15.00")
    assert data["refunds"] == [
        {"amount": "15.00", "status": "SUCCEEDED", "gatewayRefundId": made["id"]}
    ]


async def test_a_refund_whose_answer_is_lost_is_retried_with_its_request_id(
    admin: Client, paypal: FakePayPal, paypal_completed: dict[str, Any]
) -> None:
    # given PayPal makes the refund but its first answer never arrives
    paypal.fail_next("refund", Fault(lose=True))
    # when an admin refunds
    made = await refund(admin, paypal_completed["id"], amount="5")
    # then payql's retry carried the same request id, and PayPal refunded once
    assert made["errors"] == [] and made["refund"]["status"] == "SUCCEEDED"
    assert paypal.request_ids["refund"][-2:] == [f"payql-{made['refund']['id']}"] * 2
    assert len(paypal.refund_resources(paypal_completed["gatewayTransactionId"])) == 1


# -- manual capture and void -----------------------------------------------------------------


async def test_an_authorization_is_captured_for_less_by_an_admin(
    alice: Client,
    admin: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
) -> None:
    # given Alice approved a PayPal payment with manual capture
    held = await awaiting_approval(alice, captureMethod="MANUAL")
    order_id = held["gatewayTransactionId"]
    assert paypal.orders[order_id]["intent"] == "AUTHORIZE"
    await approve(http, server, paypal, order_id)
    await status_reaches(alice, held["id"], "AUTHORIZED")
    # when an admin captures less than was authorized
    data = await admin(CAPTURE, id=held["id"], amount="60")
    # then PayPal captured that much, once
    assert data["capturePayment"] == {
        "payment": {"status": "COMPLETED", "capturedAmount": "60.00"},
        "errors": [],
    }
    assert paypal.capture_resource(order_id)["amount"] == {"currency_code": "USD", "value": "60.00"}
    # and a refund can be no more than that
    too_much = await refund(admin, held["id"], amount="60.01")
    assert [e["code"] for e in too_much["errors"]] == ["REFUND_EXCEEDS_AVAILABLE"]


async def test_an_authorization_is_voided_and_an_unapproved_order_cancelled(
    alice: Client,
    admin: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
) -> None:
    held = await awaiting_approval(alice, captureMethod="MANUAL")
    await approve(http, server, paypal, held["gatewayTransactionId"])
    await status_reaches(alice, held["id"], "AUTHORIZED")
    voided = await admin(CANCEL, id=held["id"])
    assert voided["cancelPayment"] == {"payment": {"status": "CANCELLED"}, "errors": []}
    [authorization] = paypal.orders[held["gatewayTransactionId"]]["purchase_units"][0]["payments"][
        "authorizations"
    ]
    assert authorization["status"] == "VOIDED"
    # a buyer who changed their mind before approving cancels it themselves
    waiting = await awaiting_approval(alice)
    cancelled = await alice(CANCEL, id=waiting["id"])
    assert cancelled["cancelPayment"] == {"payment": {"status": "CANCELLED"}, "errors": []}
    # and an approval that comes after that captures nothing
    captures = paypal.calls["capture"]
    late = await approve(http, server, paypal, waiting["gatewayTransactionId"])
    assert late.json()["outcome"] == "ignored"
    assert paypal.calls["capture"] == captures


# -- outages and lost answers ---------------------------------------------------------------


async def test_paypal_down_at_creation_leaves_a_resolvable_payment(
    alice: Client, paypal: FakePayPal, pending_order: dict[str, Any], later: Any
) -> None:
    # given PayPal answers 503 to every attempt
    paypal.fail_next("create", Fault(status=503), times=3)
    # when Alice pays
    payload = await paypal_pay(alice, pending_order["id"])
    # then she is told the gateway did not answer, and the payment waits
    assert [e["code"] for e in payload["errors"]] == ["GATEWAY_UNAVAILABLE"]
    assert payload["payment"]["status"] == "PENDING"
    # and once no answer can still come, a sync settles it: nobody ever had its
    # approval link, so it can never take money
    later()
    data = await alice(SYNC, id=payload["payment"]["id"])
    assert data["syncPayment"]["payment"]["status"] == "FAILED"


async def test_a_capture_that_times_out_is_finished_by_reconciliation_once(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
    later: Any,
) -> None:
    payment = paypal_awaiting_approval
    # given PayPal is too slow to answer every capture attempt (it captures anyway)
    gateway = server.service.gateways["paypal"]
    assert isinstance(gateway, PayPalGateway)
    gateway.http.timeout = httpx.Timeout(0.3)
    paypal.fail_next("capture", Fault(delay=0.6), times=3)
    try:
        response = await approve(http, server, paypal, payment["gatewayTransactionId"])
    finally:
        gateway.http.timeout = httpx.Timeout(30)
    # then the approval is kept, and the payment waits for the capture's answer
    assert response.status_code == 200, response.text
    assert (await alice(PAYMENT, id=payment["id"]))["payment"]["status"] == "PROCESSING"
    # when reconciliation runs later
    later()
    summary = await server.on_server_loop(server.service.reconcile())
    # then it finds PayPal's capture: completed, captured once, with one request id
    assert summary["changed"] >= 1
    assert (await alice(PAYMENT, id=payment["id"]))["payment"]["status"] == "COMPLETED"
    captures = paypal.orders[payment["gatewayTransactionId"]]["purchase_units"][0]["payments"]
    assert len(captures["captures"]) == 1
    assert paypal.request_ids["capture"].count(f"payql-{payment['id']}-complete") == 3


async def test_an_expired_access_token_is_renewed_once_and_the_call_goes_through(
    alice: Client, paypal: FakePayPal, pending_order: dict[str, Any]
) -> None:
    tokens = paypal.calls["token"]
    paypal.expire_tokens()
    payload = await paypal_pay(alice, pending_order["id"])
    assert payload["errors"] == [] and payload["payment"]["status"] == "REQUIRES_ACTION"
    assert paypal.calls["token"] == tokens + 1


# -- webhooks ---------------------------------------------------------------------------


async def test_a_forged_or_unsigned_paypal_webhook_is_refused_and_changes_nothing(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
) -> None:
    payment = paypal_awaiting_approval
    order = paypal.approve(payment["gatewayTransactionId"])
    body, headers = paypal.signed(paypal.event("CHECKOUT.ORDER.APPROVED", order))
    url = f"{server.url}/webhooks/paypal"
    # a body changed after signing
    forged = await http.post(url, content=body.replace(b"APPROVED", b"APPROVED "), headers=headers)
    # signed for another webhook
    other_body, other_headers = paypal.signed(
        paypal.event("CHECKOUT.ORDER.APPROVED", order), webhook_id="WH-SOMEONE-ELSE"
    )
    other = await http.post(url, content=other_body, headers=other_headers)
    # no signature at all
    bare = await http.post(url, content=body, headers={"Content-Type": "application/json"})
    assert (forged.status_code, other.status_code, bare.status_code) == (400, 400, 400)
    assert (await alice(PAYMENT, id=payment["id"]))["payment"]["status"] == "REQUIRES_ACTION"


async def test_a_webhook_paypal_cannot_verify_now_is_answered_503_for_a_retry(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
) -> None:
    payment = paypal_awaiting_approval
    order = paypal.approve(payment["gatewayTransactionId"])
    event = paypal.event("CHECKOUT.ORDER.APPROVED", order)
    paypal.fail_next("verify", Fault(status=500), times=3)
    first = await send_webhook(http, server, paypal, "", {}, event=event)
    assert first.status_code == 503
    assert (await alice(PAYMENT, id=payment["id"]))["payment"]["status"] == "REQUIRES_ACTION"
    # PayPal retries, and then it applies
    retry = await send_webhook(http, server, paypal, "", {}, event=event)
    assert retry.status_code == 200, retry.text
    await status_reaches(alice, payment["id"], "COMPLETED")


async def test_events_about_orders_payql_never_made_are_acknowledged_and_ignored(
    http: httpx.AsyncClient, server: LiveServer, paypal: FakePayPal
) -> None:
    resource = {"id": "5O190127TN364715T", "status": "APPROVED", "purchase_units": [{}]}
    response = await send_webhook(http, server, paypal, "CHECKOUT.ORDER.APPROVED", resource)
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    other = await send_webhook(
        http, server, paypal, "BILLING.SUBSCRIPTION.CREATED", {"id": "I-BW452GLLEP1G"}
    )
    assert (other.status_code, other.json()["outcome"]) == (200, "ignored")


# -- the client on its own ---------------------------------------------------------------


def gateway_for(paypal: FakePayPal, **options: Any) -> PayPalGateway:
    return PayPalGateway(
        client_id=options.pop("client_id", CLIENT_ID),
        client_secret=options.pop("client_secret", CLIENT_SECRET),
        webhook_id=WEBHOOK_ID,
        api_base=paypal.url,
        **options,
    )


def charge_request(reference: str, amount: int = 3200, currency: str = "JPY") -> ChargeRequest:
    return ChargeRequest(
        reference=reference,
        amount=amount,
        currency=currency,
        method="PAYPAL",
        token=None,
        manual_capture=False,
        idempotency_key=f"payql-{reference}",
    )


async def test_amounts_go_in_paypals_decimals_for_each_currency() -> None:
    assert [to_value(5098, "USD"), to_value(3200, "JPY"), to_value(120000, "HUF")] == [
        "50.98",
        "3200",
        "1200",
    ]
    assert [to_minor("50.98", "USD"), to_minor("3200", "JPY")] == [5098, 3200]
    with pytest.raises(GatewayError, match="whole amounts of HUF"):
        to_value(120050, "HUF")
    with pytest.raises(GatewayError, match="does not take KWD"):
        to_value(1000, "KWD")


async def test_a_yen_order_is_created_without_decimals(paypal: FakePayPal) -> None:
    gateway = gateway_for(paypal)
    try:
        state = await gateway.charge(charge_request("pay_yen_0001"))
    finally:
        await gateway.aclose()
    assert state.status is GatewayStatus.REQUIRES_ACTION
    amount = paypal.orders[state.transaction_id]["purchase_units"][0]["amount"]
    assert amount == {"currency_code": "JPY", "value": "3200"}


async def test_timeouts_and_5xx_are_unavailable_after_retries_with_one_request_id(
    paypal: FakePayPal,
) -> None:
    gateway = gateway_for(paypal, timeout=0.3)
    try:
        paypal.fail_next("create", Fault(delay=0.6), times=3)
        with pytest.raises(GatewayUnavailable, match="did not answer"):
            await gateway.charge(charge_request("pay_slow_0001"))
        assert paypal.request_ids["create"][-3:] == ["payql-pay_slow_0001"] * 3
        paypal.fail_next("create", Fault(status=502), times=3)
        with pytest.raises(GatewayUnavailable, match="502"):
            await gateway.charge(charge_request("pay_down_0001"))
        # one failure only: the retry gets through
        paypal.fail_next("create", Fault(status=500))
        state = await gateway.charge(charge_request("pay_once_0001"))
        assert state.status is GatewayStatus.REQUIRES_ACTION
    finally:
        await gateway.aclose()


async def test_refused_credentials_are_a_configuration_alert_without_the_secret(
    paypal: FakePayPal, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = gateway_for(paypal, client_secret="not-the-secret")
    try:
        with caplog.at_level(logging.ERROR, logger="payql.gateways.paypal"):
            with pytest.raises(GatewayError, match="configuration") as refused:
                await gateway.charge(charge_request("pay_badkey_0001"))
    finally:
        await gateway.aclose()
    assert not isinstance(refused.value, GatewayUnavailable)
    assert "ALERT" in caplog.text and "PAYQL_PAYPAL_CLIENT_SECRET" in caplog.text
    assert "not-the-secret" not in caplog.text + repr(gateway)


async def test_paypal_without_a_secret_is_unavailable_and_names_the_setting() -> None:
    from payql.app import build_gateways
    from payql.settings import Settings

    gateways, unavailable = build_gateways(
        Settings(paypal_client_id="id-only", paypal_gateway="paypal")
    )
    assert "paypal" not in gateways and "simulated" in gateways
    assert unavailable == {
        "paypal": "the paypal gateway is not set up (see PAYQL_PAYPAL_CLIENT_SECRET)"
    }


# -- the simulated gateway's PayPal (no account: the demo checkout) -------------------------


async def test_the_simulated_paypal_goes_create_approve_capture_and_refunds(
    alice: Client, admin: Client, http: httpx.AsyncClient, server: LiveServer
) -> None:
    # given Alice pays with PayPal on the simulated gateway
    order = await place_order(alice, ("HOODIE-GRY-L", 1))
    payload = await paypal_pay(alice, order["id"], gateway="simulated")
    payment = payload["payment"]
    assert (payment["status"], payment["gateway"]) == ("REQUIRES_ACTION", "simulated")
    # then she is sent to its approval page, the client secret in the fragment only
    next_action = (await alice(PAYMENT, id=payment["id"]))["payment"]["nextAction"]
    assert next_action["redirectUrl"] == f"/simulated/paypal#{payload['clientSecret']}"
    page = await http.get(f"{server.url}/simulated/paypal")
    assert page.status_code == 200 and "Approve your payment" in page.text
    # when she approves there
    response = await http.post(
        f"{server.url}/simulated/confirm",
        json={"clientSecret": payload["clientSecret"], "approve": True},
    )
    assert response.json() == {"status": "approved"}
    # then its webhook tells payql, which captures it
    await status_reaches(alice, payment["id"], "COMPLETED")
    assert server.simulated.calls["complete"] >= 1
    # and it refunds in part, then in full
    assert (await refund(admin, payment["id"], amount="4.99"))["payment"]["status"] == (
        "PARTIALLY_REFUNDED"
    )
    assert (await refund(admin, payment["id"]))["payment"]["status"] == "REFUNDED"


async def test_the_simulated_paypal_page_can_cancel_and_wants_an_answer(
    alice: Client, http: httpx.AsyncClient, server: LiveServer, pending_order: dict[str, Any]
) -> None:
    payload = await paypal_pay(alice, pending_order["id"], gateway="simulated")
    secret = payload["clientSecret"]
    url = f"{server.url}/simulated/confirm"
    unanswered = await http.post(url, json={"clientSecret": secret})
    assert unanswered.status_code == 400 and "approve" in unanswered.json()["error"]
    cancelled = await http.post(url, json={"clientSecret": secret, "approve": False})
    assert cancelled.json() == {"status": "canceled"}
    await status_reaches(alice, payload["payment"]["id"], "CANCELLED")
    again = await http.post(url, json={"clientSecret": secret, "approve": True})
    assert again.status_code == 409


# -- races and refusals --------------------------------------------------------------------


async def test_a_cancel_while_payql_captures_is_refused_and_the_money_is_recorded(
    alice: Client,
    admin: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
) -> None:
    payment = paypal_awaiting_approval
    # given payql is capturing an approved order, and PayPal takes a moment
    paypal.fail_next("capture", Fault(delay=1.0))
    approval = asyncio.create_task(approve(http, server, paypal, payment["gatewayTransactionId"]))
    await status_reaches(alice, payment["id"], "PROCESSING")
    # when an admin cancels it meanwhile
    cancelled = (await admin(CANCEL, id=payment["id"]))["cancelPayment"]
    # then the cancel is refused, and the capture lands
    assert [e["code"] for e in cancelled["errors"]] == ["GATEWAY_ERROR"]
    assert (await approval).status_code == 200
    data = (await alice(PAYMENT, id=payment["id"]))["payment"]
    assert (data["status"], data["capturedAmount"]) == ("COMPLETED", "64.99")
    assert "payment.orphaned_charge" not in [e["type"] for e in data["events"]]


async def test_a_late_approval_webhook_after_a_sync_captured_it_changes_nothing(
    alice: Client,
    http: httpx.AsyncClient,
    server: LiveServer,
    paypal: FakePayPal,
    paypal_awaiting_approval: dict[str, Any],
) -> None:
    # given the return page's sync captured the approved order
    order = paypal.approve(paypal_awaiting_approval["gatewayTransactionId"])
    await alice(SYNC, id=paypal_awaiting_approval["id"])
    captures = paypal.calls["capture"]
    # when the approval's webhook arrives after that (out of order)
    late = await send_webhook(http, server, paypal, "CHECKOUT.ORDER.APPROVED", order)
    # then it is recorded and ignored: no second capture, no step backwards
    assert late.json()["outcome"] == "ignored"
    assert paypal.calls["capture"] == captures
    await status_reaches(alice, paypal_awaiting_approval["id"], "COMPLETED")


async def test_reconciliation_completes_an_approval_whose_webhook_and_buyer_never_came(
    alice: Client, server: LiveServer, paypal: FakePayPal, paypal_awaiting_approval: dict[str, Any]
) -> None:
    # given Alice approved at PayPal, then closed the tab, and the webhook was lost
    paypal.approve(paypal_awaiting_approval["gatewayTransactionId"])
    # when reconciliation runs a few minutes later (within PayPal's approval window)
    service = server.service
    service.clock = lambda: utcnow() + service.charge_timeout + timedelta(minutes=1)
    try:
        await server.on_server_loop(service.reconcile())
    finally:
        service.clock = utcnow
    # then it found the approval and captured the payment
    await status_reaches(alice, paypal_awaiting_approval["id"], "COMPLETED")


async def test_a_renewed_token_then_a_timeout_is_unavailable_not_a_crash(
    paypal: FakePayPal,
) -> None:
    gateway = gateway_for(paypal, timeout=0.3)
    try:
        await gateway.charge(charge_request("pay_warm_0001"))  # a token in hand
        paypal.expire_tokens()
        paypal.fail_next("create", Fault())  # gets 401: the token is renewed
        paypal.fail_next("create", Fault(delay=0.6), times=3)  # then no answer
        with pytest.raises(GatewayUnavailable, match="did not answer"):
            await gateway.charge(charge_request("pay_renew_0001"))
    finally:
        await gateway.aclose()


def test_in_production_paypal_payments_never_go_to_the_simulated_gateway() -> None:
    from payql.settings import Settings

    production = {
        "PAYQL_ENV": "production",
        "PAYQL_JWT_SECRET": "s" * 40,
        "PAYQL_SIMULATED_GATEWAY": "1",
        "PAYQL_SIMULATED_WEBHOOK_SECRET": "whsec_" + "x" * 30,
    }
    assert Settings.from_env(production).paypal_gateway == "none"
    assert Settings.from_env({}).paypal_gateway == "simulated"
    with_paypal = {**production, "PAYQL_PAYPAL_CLIENT_ID": "id", "PAYQL_PAYPAL_WEBHOOK_ID": "WH"}
    assert Settings.from_env(with_paypal).paypal_gateway == "paypal"
