"""The payment rules: what may move where, and what may be refunded or captured.

Pure functions over plain values: no I/O, no ORM, no clock of their own.
Everything that changes a payment asks this module first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import Enum

from models.errors import DomainError, ErrorCode, invalid_state, validation


class PaymentStatus(Enum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    AUTHORIZED = "AUTHORIZED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


class PaymentMethod(Enum):
    CREDIT_CARD = "CREDIT_CARD"
    DEBIT_CARD = "DEBIT_CARD"
    PAYPAL = "PAYPAL"
    BANK_TRANSFER = "BANK_TRANSFER"
    APPLE_PAY = "APPLE_PAY"
    GOOGLE_PAY = "GOOGLE_PAY"
    CASH_ON_DELIVERY = "CASH_ON_DELIVERY"


class CaptureMethod(Enum):
    AUTOMATIC = "AUTOMATIC"
    MANUAL = "MANUAL"


class RefundStatus(Enum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class OrderStatus(Enum):
    PENDING = "PENDING"
    PAID = "PAID"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"


class EventSource(Enum):
    API = "API"
    WEBHOOK = "WEBHOOK"
    GATEWAY = "GATEWAY"
    ADMIN = "ADMIN"
    SYSTEM = "SYSTEM"


P = PaymentStatus

# The one table of transitions. A status not listed as a key is final.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.PENDING: frozenset(
        {P.PROCESSING, P.REQUIRES_ACTION, P.AUTHORIZED, P.COMPLETED, P.FAILED, P.CANCELLED}
    ),
    P.REQUIRES_ACTION: frozenset({P.PROCESSING, P.AUTHORIZED, P.COMPLETED, P.FAILED, P.CANCELLED}),
    P.PROCESSING: frozenset({P.REQUIRES_ACTION, P.AUTHORIZED, P.COMPLETED, P.FAILED, P.CANCELLED}),
    P.AUTHORIZED: frozenset({P.COMPLETED, P.CANCELLED, P.FAILED}),
    P.COMPLETED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.PARTIALLY_REFUNDED: frozenset({P.REFUNDED}),
}

# Money may be in flight: a payment in one of these blocks a new attempt on its order.
OPEN = frozenset({P.PENDING, P.PROCESSING, P.REQUIRES_ACTION, P.AUTHORIZED})
# Attempts not yet resolved either way (card-testing limits count recent ones).
UNRESOLVED = frozenset({P.PENDING, P.PROCESSING, P.REQUIRES_ACTION})
# Money was taken.
CAPTURED = frozenset({P.COMPLETED, P.PARTIALLY_REFUNDED, P.REFUNDED})
REFUNDABLE = frozenset({P.COMPLETED, P.PARTIALLY_REFUNDED})
# For success rates: a payment that got the money (or its authorization), and one that
# did not. The rest (still open, cancelled) is neither.
SUCCEEDED = CAPTURED | {P.AUTHORIZED}
# The customer still has to act; the client secret is shown only then.
AWAITING_CUSTOMER = frozenset({P.PENDING, P.REQUIRES_ACTION})
# What a customer may cancel on their own; an authorization is the merchant's to void.
CUSTOMER_CANCELLABLE = frozenset({P.PENDING, P.REQUIRES_ACTION})

OFFLINE_METHODS = frozenset({PaymentMethod.BANK_TRANSFER, PaymentMethod.CASH_ON_DELIVERY})


# What a gateway's status (Stripe's vocabulary, see gateways/base.py) means for a payment.
FROM_GATEWAY: dict[str, PaymentStatus] = {
    "requires_payment_method": P.PENDING,
    "awaiting_funds": P.PENDING,
    "requires_action": P.REQUIRES_ACTION,
    "processing": P.PROCESSING,
    "requires_capture": P.AUTHORIZED,
    # The customer approved (PayPal): payql completes it (see `needs_completion`).
    "approved": P.PROCESSING,
    "succeeded": P.COMPLETED,
    "failed": P.FAILED,
    "canceled": P.CANCELLED,
}


class Reported(Enum):
    """What a status reported by a gateway means for the payment as it stands."""

    SAME = "same"  # nothing new (also a succeeded charge on a payment partly refunded since)
    MOVE = "move"  # a transition the table allows
    IGNORE = "ignore"  # late or out of order: the table does not allow it


def on_report(current: PaymentStatus, gateway_status: str) -> tuple[Reported, PaymentStatus]:
    reported = FROM_GATEWAY[gateway_status]
    if reported is current or (reported is P.COMPLETED and current in CAPTURED):
        return Reported.SAME, current
    if can_transition(current, reported):
        return Reported.MOVE, reported
    return Reported.IGNORE, reported


def needs_completion(current: PaymentStatus, gateway_status: str) -> bool:
    """The gateway reports a payment its customer approved and payql must complete
    (capture, or authorize), and the payment is still waiting for that."""
    return gateway_status == "approved" and current is P.PROCESSING


def can_transition(current: PaymentStatus, new: PaymentStatus) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def is_final(status: PaymentStatus) -> bool:
    return status not in TRANSITIONS


def require_transition(current: PaymentStatus, new: PaymentStatus) -> None:
    if not can_transition(current, new):
        raise invalid_state(f"a {current.value} payment cannot become {new.value}")


# -- refunds -------------------------------------------------------------------


def refundable_amount(captured: int, refunded: int, refund_pending: int) -> int:
    """What may still be refunded: captured, less refunds that succeeded or are under way."""
    return max(captured - refunded - refund_pending, 0)


def check_refund(
    *,
    status: PaymentStatus,
    captured: int,
    refunded: int,
    refund_pending: int,
    amount: int | None,
    completed_at: datetime | None,
    now: datetime,
    window: timedelta,
) -> int:
    """The amount to refund (all that is refundable when `amount` is None), or why not."""
    if status not in REFUNDABLE:
        raise invalid_state(
            f"only COMPLETED or PARTIALLY_REFUNDED payments can be refunded, not {status.value}"
        )
    if completed_at is not None and now - completed_at > window:
        raise DomainError(
            ErrorCode.REFUND_WINDOW_EXPIRED,
            f"refunds are accepted for {window.days} days after the payment completed",
        )
    available = refundable_amount(captured, refunded, refund_pending)
    if amount is None:
        amount = available
        if amount == 0:
            raise DomainError(
                ErrorCode.REFUND_EXCEEDS_AVAILABLE,
                "nothing is left to refund (refunds under way are counted)",
            )
    if amount <= 0:
        raise validation("the refund amount must be greater than zero", "amount")
    if amount > available:
        raise DomainError(
            ErrorCode.REFUND_EXCEEDS_AVAILABLE,
            "the refund exceeds what is still refundable",
            "amount",
        )
    return amount


def status_after_refunds(captured: int, refunded: int) -> PaymentStatus:
    return P.REFUNDED if refunded >= captured else P.PARTIALLY_REFUNDED


# -- capture and cancel --------------------------------------------------------


def check_capture(status: PaymentStatus, authorized: int, amount: int | None) -> int:
    """The amount to capture (all when `amount` is None): never more than authorized."""
    if status is not P.AUTHORIZED:
        raise invalid_state(f"only AUTHORIZED payments can be captured, not {status.value}")
    if amount is None:
        return authorized
    if amount <= 0:
        raise validation("the capture amount must be greater than zero", "amount")
    if amount > authorized:
        raise DomainError(
            ErrorCode.AMOUNT_MISMATCH, "cannot capture more than was authorized", "amount"
        )
    return amount


def check_cancel(status: PaymentStatus, *, admin: bool) -> None:
    if not can_transition(status, P.CANCELLED):
        raise invalid_state(f"a {status.value} payment cannot be cancelled")
    if not admin and status not in CUSTOMER_CANCELLABLE:
        raise DomainError(ErrorCode.FORBIDDEN, f"only an admin can cancel a {status.value} payment")


def check_mark_received(status: PaymentStatus, method: PaymentMethod) -> None:
    if method not in OFFLINE_METHODS:
        raise invalid_state("only bank transfers and cash on delivery are marked received")
    if status is not P.PENDING:
        raise invalid_state(f"only PENDING payments can be marked received, not {status.value}")


# -- orders --------------------------------------------------------------------


def order_status(payments: Iterable[tuple[PaymentStatus, int, int]]) -> OrderStatus:
    """The order's status from its payments' (status, captured, refunded)."""
    captured = refunded = 0
    for status, pay_captured, pay_refunded in payments:
        if status in CAPTURED:
            captured += pay_captured
            refunded += pay_refunded
    if captured == 0:
        return OrderStatus.PENDING
    if refunded == 0:
        return OrderStatus.PAID
    if refunded >= captured:
        return OrderStatus.REFUNDED
    return OrderStatus.PARTIALLY_REFUNDED
