"""Reading Stripe's shapes: PaymentIntents and events, as plain dicts.

Shared by the Stripe gateway and the simulated one, which speaks the same shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateways.base import Card, ChargeState, GatewayEvent, GatewayStatus

S = GatewayStatus

# Stripe's codes that we report under a name of our own.
_FAILURE_CODES = {"payment_intent_authentication_failure": "authentication_failed"}

_EVENT_STATUS = {
    "payment_intent.succeeded": S.SUCCEEDED,
    "payment_intent.payment_failed": S.FAILED,
    "payment_intent.requires_action": S.REQUIRES_ACTION,
    "payment_intent.processing": S.PROCESSING,
    "payment_intent.canceled": S.CANCELED,
    "payment_intent.amount_capturable_updated": S.REQUIRES_CAPTURE,
}

_INTENT_STATUS = {
    "requires_payment_method": S.REQUIRES_PAYMENT_METHOD,
    "requires_confirmation": S.REQUIRES_PAYMENT_METHOD,
    "requires_action": S.REQUIRES_ACTION,
    "processing": S.PROCESSING,
    "requires_capture": S.REQUIRES_CAPTURE,
    "succeeded": S.SUCCEEDED,
    "canceled": S.CANCELED,
}


class MalformedEvent(ValueError):
    pass


def charge_state(intent: Mapping[str, Any], status: GatewayStatus | None = None) -> ChargeState:
    """A PaymentIntent as our ChargeState. A failed attempt is requires_payment_method
    with a last_payment_error in Stripe; here it is FAILED."""
    error = intent.get("last_payment_error") or None
    if status is None:
        status = _INTENT_STATUS.get(str(intent.get("status")))
        if status is None:
            raise MalformedEvent(f"unknown PaymentIntent status {intent.get('status')!r}")
        if status is S.REQUIRES_PAYMENT_METHOD and error:
            status = S.FAILED
    failure_code = failure_message = None
    if status is S.FAILED and error:
        code = error.get("decline_code") or error.get("code") or "payment_failed"
        failure_code = _FAILURE_CODES.get(code, code)
        failure_message = error.get("message")
    awaiting = status in (S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_ACTION)
    return ChargeState(
        transaction_id=str(intent["id"]),
        status=status,
        amount_captured=int(intent.get("amount_received") or 0),
        client_secret=intent.get("client_secret") if awaiting else None,
        failure_code=failure_code,
        failure_message=failure_message,
        card=_card(intent),
    )


def _card(intent: Mapping[str, Any]) -> Card | None:
    charge = intent.get("latest_charge")
    if not isinstance(charge, Mapping):
        return None
    card = (charge.get("payment_method_details") or {}).get("card")
    if not card:
        return None
    return Card(
        brand=str(card.get("brand") or "unknown"),
        last4=str(card.get("last4") or ""),
        exp_month=int(card.get("exp_month") or 0),
        exp_year=int(card.get("exp_year") or 0),
    )


def gateway_event(event: Mapping[str, Any]) -> GatewayEvent:
    """A Stripe event: which payment it is about and, for PaymentIntent events, its state."""
    try:
        event_id, event_type = str(event["id"]), str(event["type"])
        obj = event["data"]["object"]
    except (KeyError, TypeError):
        raise MalformedEvent("not a Stripe event: id, type and data.object are required") from None
    if not isinstance(obj, Mapping):
        raise MalformedEvent("data.object is not an object")
    charge = None
    transaction_id = None
    reference = None
    if obj.get("object") == "payment_intent":
        transaction_id = str(obj.get("id"))
        reference = (obj.get("metadata") or {}).get("payql_payment_id")
        status = _EVENT_STATUS.get(event_type)
        if status is not None:
            charge = charge_state(obj, status)
    return GatewayEvent(
        id=event_id,
        type=event_type,
        transaction_id=transaction_id,
        reference=reference,
        charge=charge,
        payload=dict(event),
    )
