"""Reading Stripe's shapes: PaymentIntents and events, as plain dicts.

Shared by the Stripe gateway and the simulated one, which speaks the same shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateways.base import (
    Card,
    ChargeState,
    DisputeReport,
    GatewayEvent,
    GatewayStatus,
    RefundOutcome,
    RefundReport,
)

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
    charge = intent.get("latest_charge")
    return ChargeState(
        transaction_id=str(intent["id"]),
        status=status,
        amount_captured=_captured(intent, status),
        client_secret=intent.get("client_secret") if awaiting else None,
        failure_code=failure_code,
        failure_message=failure_message,
        card=_card(intent),
        refunds=_charge_refunds(charge) if isinstance(charge, Mapping) else (),
    )


def _captured(intent: Mapping[str, Any], status: GatewayStatus) -> int:
    if intent.get("amount_received") is not None:
        return int(intent["amount_received"])
    # Some emulators leave amount_received out: the charge's amount, when captured.
    charge = intent.get("latest_charge")
    if status is S.SUCCEEDED and isinstance(charge, Mapping) and charge.get("captured"):
        return int(charge.get("amount_captured") or charge.get("amount") or 0)
    return 0


def refund_outcome(status: object) -> RefundOutcome:
    """Stripe's refund statuses: pending and requires_action are still under way."""
    if status == "succeeded":
        return RefundOutcome.SUCCEEDED
    if status in ("failed", "canceled"):
        return RefundOutcome.FAILED
    return RefundOutcome.PENDING


def refund_report(refund: Mapping[str, Any]) -> RefundReport:
    return RefundReport(
        refund_id=str(refund["id"]),
        amount=int(refund.get("amount") or 0),
        status=refund_outcome(refund.get("status")),
        reference=(refund.get("metadata") or {}).get("payql_refund_id"),
        failure_reason=refund.get("failure_reason"),
    )


def _charge_refunds(charge: Mapping[str, Any]) -> tuple[RefundReport, ...]:
    listed = (charge.get("refunds") or {}).get("data") or []
    return tuple(refund_report(r) for r in listed if isinstance(r, Mapping) and r.get("id"))


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
    refunds: tuple[RefundReport, ...] = ()
    dispute = None
    refresh = False
    kind = obj.get("object")
    if kind == "payment_intent":
        transaction_id = str(obj.get("id"))
        reference = (obj.get("metadata") or {}).get("payql_payment_id")
        status = _EVENT_STATUS.get(event_type)
        if status is not None:
            charge = charge_state(obj, status)
    elif kind == "charge" and event_type == "charge.refunded":
        transaction_id = _id(obj.get("payment_intent"))
        refunds = _charge_refunds(obj)  # Stripe's charges no longer list their refunds:
        refresh = not refunds  # then ask for them
    elif kind == "refund":
        transaction_id = _id(obj.get("payment_intent"))
        refunds = (refund_report(obj),)
    elif kind == "dispute":
        transaction_id = _id(obj.get("payment_intent"))
        dispute = DisputeReport(
            dispute_id=str(obj.get("id")),
            amount=int(obj.get("amount") or 0),
            currency=str(obj.get("currency") or "").upper(),
            status=str(obj.get("status") or "unknown"),
            reason=obj.get("reason"),
        )
    return GatewayEvent(
        id=event_id,
        type=event_type,
        transaction_id=transaction_id,
        reference=reference,
        charge=charge,
        payload=dict(event),
        refunds=refunds,
        dispute=dispute,
        refresh=refresh,
    )


def _id(value: object) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None
