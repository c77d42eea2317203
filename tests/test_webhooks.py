"""Client-side confirmation, 3-D Secure and signed webhooks, through the real endpoints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from clients import Client, status_reaches
from conftest import paid
from gateway_support import confirm, post_webhook, stripe_event, stripe_intent
from servers import LiveServer

PAYMENT = """
query ($id: ID!) {
  payment(id: $id) {
    status failureCode failureMessage capturedAmount clientSecret cardDetails { last4 }
    events { type fromStatus toStatus source }
  }
}
"""


async def settled(client: Client, payment_id: str, status: str) -> dict[str, Any]:
    """The payment once it has reached `status`."""
    await status_reaches(client, payment_id, status)
    payment: dict[str, Any] = (await client(PAYMENT, id=payment_id))["payment"]
    return payment


# -- client-side confirmation ---------------------------------------------------------


async def test_approving_3d_secure_completes_the_payment_through_a_webhook(
    alice: Client, server: LiveServer, http: httpx.AsyncClient, awaiting_3ds: dict[str, Any]
) -> None:
    # when the customer approves 3-D Secure
    response = await confirm(
        http, server, {"clientSecret": awaiting_3ds["clientSecret"], "authenticate": True}
    )
    # then the gateway answers with its status
    assert (response.status_code, response.json()) == (200, {"status": "succeeded"})
    # and the payment completes when the signed webhook arrives
    payment = await settled(alice, awaiting_3ds["id"], "COMPLETED")
    assert payment["status"] == "COMPLETED"
    assert payment["capturedAmount"] == "50.98"
    assert payment["clientSecret"] is None
    assert payment["events"][-1] == {
        "type": "payment.status_changed",
        "fromStatus": "REQUIRES_ACTION",
        "toStatus": "COMPLETED",
        "source": "WEBHOOK",
    }


async def test_denying_3d_secure_fails_the_payment_with_authentication_failed(
    alice: Client, server: LiveServer, http: httpx.AsyncClient, awaiting_3ds: dict[str, Any]
) -> None:
    response = await confirm(
        http, server, {"clientSecret": awaiting_3ds["clientSecret"], "authenticate": False}
    )
    assert response.status_code == 200
    payment = await settled(alice, awaiting_3ds["id"], "FAILED")
    assert payment["status"] == "FAILED"
    assert payment["failureCode"] == "authentication_failed"
    assert payment["failureMessage"]


async def test_the_client_confirmed_flow_with_a_card_completes(
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_confirmation: dict[str, Any],
) -> None:
    # when the page confirms the PENDING payment with a card
    response = await confirm(
        http,
        server,
        {"clientSecret": awaiting_confirmation["clientSecret"], "paymentMethod": "pm_card_visa"},
    )
    # then it completes, with the card's safe details
    assert response.json() == {"status": "succeeded"}
    payment = await settled(alice, awaiting_confirmation["id"], "COMPLETED")
    assert payment["status"] == "COMPLETED"
    assert payment["cardDetails"] == {"last4": "4242"}


async def test_a_client_confirmed_card_needing_3d_secure_goes_through_requires_action(
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_confirmation: dict[str, Any],
) -> None:
    secret = awaiting_confirmation["clientSecret"]
    # when the page confirms with a 3-D Secure card, then the customer approves
    first = await confirm(
        http, server, {"clientSecret": secret, "paymentMethod": "pm_card_threeDSecure2Required"}
    )
    assert first.json() == {"status": "requires_action"}
    await settled(alice, awaiting_confirmation["id"], "REQUIRES_ACTION")
    second = await confirm(http, server, {"clientSecret": secret, "authenticate": True})
    assert second.json() == {"status": "succeeded"}
    # then the trail shows each step, from webhooks
    payment = await settled(alice, awaiting_confirmation["id"], "COMPLETED")
    changes = [
        (e["fromStatus"], e["toStatus"], e["source"])
        for e in payment["events"]
        if e["type"] == "payment.status_changed"
    ]
    assert changes == [
        ("PENDING", "REQUIRES_ACTION", "WEBHOOK"),
        ("REQUIRES_ACTION", "COMPLETED", "WEBHOOK"),
    ]


async def test_a_declined_card_confirmed_on_the_client_fails(
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_confirmation: dict[str, Any],
) -> None:
    response = await confirm(
        http,
        server,
        {
            "clientSecret": awaiting_confirmation["clientSecret"],
            "paymentMethod": "pm_card_chargeDeclinedInsufficientFunds",
        },
    )
    assert response.json() == {"status": "failed"}
    payment = await settled(alice, awaiting_confirmation["id"], "FAILED")
    assert payment["failureCode"] == "insufficient_funds"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"clientSecret": "pi_sim_nope_secret_nope", "authenticate": True}, 404),
        ({"authenticate": True}, 400),
        ({"clientSecret": 5}, 400),
        ({"clientSecret": "{secret}"}, 400),  # needs authenticate
        ({"clientSecret": "{secret}", "authenticate": "yes"}, 400),
    ],
)
async def test_bad_confirmations_get_a_4xx_with_a_reason(
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_3ds: dict[str, Any],
    body: dict[str, Any],
    status: int,
) -> None:
    filled = {k: (awaiting_3ds["clientSecret"] if v == "{secret}" else v) for k, v in body.items()}
    response = await confirm(http, server, filled)
    assert response.status_code == status
    assert response.json()["error"]
    assert (await alice(PAYMENT, id=awaiting_3ds["id"]))["payment"]["status"] == "REQUIRES_ACTION"


async def test_a_pending_payment_needs_a_payment_method_to_confirm(
    server: LiveServer, http: httpx.AsyncClient, awaiting_confirmation: dict[str, Any]
) -> None:
    secret = awaiting_confirmation["clientSecret"]
    missing = await confirm(http, server, {"clientSecret": secret})
    unknown = await confirm(http, server, {"clientSecret": secret, "paymentMethod": "pm_nope"})
    assert (missing.status_code, unknown.status_code) == (400, 400)


async def test_a_used_client_secret_is_refused(
    alice: Client, server: LiveServer, http: httpx.AsyncClient, awaiting_3ds: dict[str, Any]
) -> None:
    secret = awaiting_3ds["clientSecret"]
    assert (await confirm(http, server, {"clientSecret": secret, "authenticate": True})).is_success
    await settled(alice, awaiting_3ds["id"], "COMPLETED")
    again = await confirm(http, server, {"clientSecret": secret, "authenticate": False})
    assert again.status_code == 409
    assert (await alice(PAYMENT, id=awaiting_3ds["id"]))["payment"]["status"] == "COMPLETED"


# -- the webhook path ---------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        {"secret": "whsec_forged"},
        {"timestamp": int(time.time()) - 301},
        {"signature": ""},
        {"signature": "t=123"},
        {"signature": "v1=abc"},
    ],
    ids=["forged", "stale", "missing", "no-v1", "no-timestamp"],
)
async def test_an_unverifiable_webhook_gets_400_and_changes_nothing(
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_3ds: dict[str, Any],
    tamper: dict[str, Any],
) -> None:
    # given a webhook that would complete the payment, badly signed
    event = stripe_event("payment_intent.succeeded", stripe_intent(awaiting_3ds))
    # when it is posted
    response = await post_webhook(http, server, event, **tamper)
    # then it is refused and nothing changed
    assert response.status_code == 400
    payment = (await alice(PAYMENT, id=awaiting_3ds["id"]))["payment"]
    assert payment["status"] == "REQUIRES_ACTION"
    # and the same event properly signed is then applied: nothing of it was stored
    assert (await post_webhook(http, server, event)).json()["outcome"] == "applied"


async def test_a_webhook_that_is_not_an_event_gets_400(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    response = await post_webhook(http, server, {"hello": "world"})
    assert response.status_code == 400


async def test_twenty_concurrent_copies_of_one_webhook_apply_once(
    alice: Client, server: LiveServer, http: httpx.AsyncClient, awaiting_3ds: dict[str, Any]
) -> None:
    event = stripe_event("payment_intent.succeeded", stripe_intent(awaiting_3ds))
    # when 20 copies of the same event arrive at once
    responses = await asyncio.gather(*(post_webhook(http, server, event) for _ in range(20)))
    # then every copy is acknowledged, and exactly one was applied
    assert {r.status_code for r in responses} == {200}
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["applied"] + ["duplicate"] * 19
    # with one transition and one audit event
    payment = (await alice(PAYMENT, id=awaiting_3ds["id"]))["payment"]
    webhook_events = [e for e in payment["events"] if e["source"] == "WEBHOOK"]
    assert webhook_events == [
        {
            "type": "payment.status_changed",
            "fromStatus": "REQUIRES_ACTION",
            "toStatus": "COMPLETED",
            "source": "WEBHOOK",
        }
    ]
    # and a later copy is still a duplicate
    assert (await post_webhook(http, server, event)).json()["outcome"] == "duplicate"


async def test_a_late_event_never_moves_a_payment_backwards(
    alice: Client, server: LiveServer, http: httpx.AsyncClient, awaiting_3ds: dict[str, Any]
) -> None:
    intent = stripe_intent(awaiting_3ds)
    succeeded = stripe_event("payment_intent.succeeded", intent)
    late = stripe_event("payment_intent.processing", intent, status="processing")
    # when `succeeded` arrives, then a `processing` that was sent before it
    assert (await post_webhook(http, server, succeeded)).json()["outcome"] == "applied"
    response = await post_webhook(http, server, late)
    # then the late one is acknowledged but not applied, and the trail says so
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    payment = (await alice(PAYMENT, id=awaiting_3ds["id"]))["payment"]
    assert payment["status"] == "COMPLETED"
    assert payment["events"][-1] == {
        "type": "payment.transition_ignored",
        "fromStatus": None,
        "toStatus": None,
        "source": "WEBHOOK",
    }


async def test_a_webhook_about_a_payment_not_recorded_yet_gets_503_so_the_gateway_retries(
    server: LiveServer, http: httpx.AsyncClient, awaiting_3ds: dict[str, Any]
) -> None:
    # given an event naming one of our payments that this service has not recorded
    intent = {
        **stripe_intent(awaiting_3ds),
        "id": "pi_sim_unknown",
        "metadata": {"payql_payment_id": "pay_notrecordedyet"},
    }
    event = stripe_event("payment_intent.succeeded", intent)
    # when it is posted
    response = await post_webhook(http, server, event)
    # then the gateway is told to retry later, and nothing was kept of it
    assert response.status_code == 503
    again = await post_webhook(http, server, event)
    assert again.status_code == 503


async def test_a_webhook_about_someone_elses_object_is_acknowledged_and_ignored(
    server: LiveServer, http: httpx.AsyncClient, awaiting_3ds: dict[str, Any]
) -> None:
    # an account's other integrations (Checkout, invoices) send events too
    intent = {**stripe_intent(awaiting_3ds), "id": "pi_from_elsewhere", "metadata": {}}
    response = await post_webhook(http, server, stripe_event("payment_intent.succeeded", intent))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


async def test_events_without_a_payment_state_are_acknowledged_and_kept(
    server: LiveServer, http: httpx.AsyncClient, awaiting_3ds: dict[str, Any]
) -> None:
    event = stripe_event("payment_intent.created", stripe_intent(awaiting_3ds, "requires_action"))
    first = await post_webhook(http, server, event)
    assert (first.status_code, first.json()["outcome"]) == (200, "ignored")
    assert (await post_webhook(http, server, event)).json()["outcome"] == "duplicate"


async def test_a_refund_reported_for_a_payment_never_captured_is_kept_not_looped(
    alice: Client, admin: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given a declined payment, for which the gateway nevertheless reports a refund
    declined = await paid(alice, token="pm_card_chargeDeclined")
    charge = {
        "id": "ch_odd",
        "object": "charge",
        "payment_intent": declined["gatewayTransactionId"],
        "refunds": {"data": [{"id": "re_odd", "amount": 100, "status": "succeeded"}]},
    }
    event = stripe_event("charge.refunded", charge)
    # when it arrives
    response = await post_webhook(http, server, event)
    # then it is acknowledged (no retry loop), the refund is on record, and the
    # payment stays FAILED with the mismatch in its trail
    assert response.status_code == 200
    assert (await post_webhook(http, server, event)).json()["outcome"] == "duplicate"
    data = await admin(
        """query ($id: ID!) {
             payment(id: $id) { status refunds { amount status } events { type } } }""",
        id=declined["id"],
    )
    payment = data["payment"]
    assert payment["status"] == "FAILED"
    assert payment["refunds"] == [{"amount": "1.00", "status": "SUCCEEDED"}]
    assert payment["events"][-1]["type"] == "payment.transition_ignored"


async def test_a_refund_reported_before_the_charge_succeeded_ends_refunded(
    alice: Client,
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    awaiting_3ds: dict[str, Any],
) -> None:
    intent = stripe_intent(awaiting_3ds)
    charge = {
        "id": "ch_x",
        "object": "charge",
        "payment_intent": intent["id"],
        "refunds": {"data": [{"id": "re_early", "amount": 5098, "status": "succeeded"}]},
    }
    # when the refund's event overtakes the charge's
    assert (await post_webhook(http, server, stripe_event("charge.refunded", charge))).is_success
    succeeded = stripe_event("payment_intent.succeeded", intent)
    assert (await post_webhook(http, server, succeeded)).json()["outcome"] == "applied"
    # then the payment ends where both put it: refunded, and its order too
    data = await admin(
        "query ($id: ID!) { payment(id: $id) { status refundedAmount order { status } } }",
        id=awaiting_3ds["id"],
    )
    assert data["payment"] == {
        "status": "REFUNDED",
        "refundedAmount": "50.98",
        "order": {"status": "REFUNDED"},
    }
