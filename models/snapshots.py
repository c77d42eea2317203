"""A payment as one change left it, stored with that change's audit event.

The write path stores it in the change's own transaction (write_path/core.apply), so
a subscriber is shown, live or on replay, the payment each change made, never a later
one; and a live message is rendered without reading the payment again. The lists a
payment shows travel with it: its refunds and disputes as they stood at that event
(write_path/core.Tx keeps them current through the change). (Its audit events need
no copy: the ones up to this event are its history, since a payment's events are
numbered in the order they commit.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from models import rules
from models.tables import Dispute, Payment, PaymentEvent, Refund

# Everything the Payment type can show (never client_ip, which is not shown).
PAYMENT_FIELDS = (
    "id",
    "order_id",
    "customer_id",
    "amount",
    "currency",
    "status",
    "payment_method",
    "capture_method",
    "gateway",
    "gateway_transaction_id",
    "client_secret",
    "redirect_url",
    "failure_code",
    "failure_message",
    "billing_address",
    "card_brand",
    "card_last4",
    "card_exp_month",
    "card_exp_year",
    "metadata",
    "captured",
    "refunded",
    "refund_pending",
    "created_at",
    "processed_at",
    "completed_at",
    "updated_at",
)
REFUND_FIELDS = (
    "id",
    "payment_id",
    "amount",
    "currency",
    "reason",
    "status",
    "gateway_refund_id",
    "failure_reason",
    "created_at",
    "completed_at",
)
DISPUTE_FIELDS = (
    "id",
    "payment_id",
    "amount",
    "currency",
    "status",
    "reason",
    "created_at",
    "updated_at",
)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _state(row: Any, names: Iterable[str]) -> dict[str, Any]:
    return {name: _plain(getattr(row, name, None)) for name in names}


def payment_state(payment: Payment) -> dict[str, Any]:
    return _state(payment, PAYMENT_FIELDS)


def encode(
    payment: Mapping[str, Any], refunds: Iterable[Refund], disputes: Iterable[Dispute]
) -> dict[str, Any]:
    """What an event's `snapshot` column holds (JSON)."""
    return {
        "payment": dict(payment),
        "refunds": [_state(r, REFUND_FIELDS) for r in refunds],
        "disputes": [_state(d, DISPUTE_FIELDS) for d in disputes],
    }


@dataclass(frozen=True)
class AsOf:
    """A payment as of one event: the rows, built from the snapshot, never saved."""

    payment: Payment
    event_id: int  # the payment's events up to this one are its history then
    refunds: list[Refund] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)


def decode(snapshot: Mapping[str, Any], event_id: int) -> AsOf:
    return AsOf(
        payment=Payment(**snapshot["payment"]),
        event_id=event_id,
        refunds=[Refund(**r) for r in snapshot.get("refunds", ())],
        disputes=[Dispute(**d) for d in snapshot.get("disputes", ())],
    )


async def as_of(event: PaymentEvent) -> AsOf:
    """The payment as `event` left it: from its snapshot, or, for an event from before
    snapshots were kept, the best that can be derived: the status its history had
    reached, the refunds that had succeeded by then, the rest as the payment is now."""
    if event.snapshot:
        return decode(event.snapshot, event.id)
    payment = await Payment.get(id=event.payment_id)
    history = await PaymentEvent.filter(payment_id=event.payment_id, id__lte=event.id).order_by(
        "id"
    )
    status = rules.PaymentStatus.PENDING
    refunded = 0
    for earlier in history:
        if earlier.to_status is not None:
            status = earlier.to_status
        if earlier.type in ("refund.succeeded", "refund.corrected"):
            refunded += int((earlier.data or {}).get("amount") or 0)
    # A view built apart from the row (never saved): only the write path changes one.
    state = payment_state(payment)
    state.update(status=status.value, refunded=refunded)
    if status not in rules.CAPTURED:
        state["captured"] = 0
    then = Payment(**state)
    refunds = await Refund.filter(payment_id=payment.id, created_at__lte=event.created_at).order_by(
        "created_at", "id"
    )
    disputes = await Dispute.filter(
        payment_id=payment.id, created_at__lte=event.created_at
    ).order_by("created_at")
    return AsOf(payment=then, event_id=event.id, refunds=refunds, disputes=disputes)
