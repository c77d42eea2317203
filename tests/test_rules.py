"""The pure rules and money functions, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models import money, rules
from models.errors import DomainError, ErrorCode
from models.rules import OrderStatus, PaymentStatus, Reported

P = PaymentStatus
NOW = datetime(2026, 11, 21, tzinfo=UTC)
WINDOW = timedelta(days=180)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("99.99", "USD", 9999),
        ("1000", "JPY", 1000),
        ("1.234", "KWD", 1234),
        ("10.100", "USD", 1010),
    ],
)
def test_amounts_become_minor_units(amount: str, currency: str, minor: int) -> None:
    assert money.to_minor(Decimal(amount), currency) == minor
    assert money.to_major(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(9999, "USD", "99.99"), (100, "USD", "1.00"), (1000, "JPY", "1000"), (4750, "KWD", "4.750")],
)
def test_amounts_leave_with_the_currency_s_decimals(minor: int, currency: str, text: str) -> None:
    assert str(money.to_major(minor, currency)) == text


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("0.001", "USD"),
        ("1.5", "JPY"),
        ("0.0001", "KWD"),
        ("0", "USD"),
        ("-5", "USD"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("1E+20", "USD"),
    ],
)
def test_bad_amounts_are_validation_errors(amount: str, currency: str) -> None:
    with pytest.raises(DomainError) as caught:
        money.to_minor(Decimal(amount), currency)
    assert caught.value.code is ErrorCode.VALIDATION


def test_unknown_currencies_are_rejected_and_case_is_forgiven() -> None:
    assert money.currency_code("usd") == "USD"
    with pytest.raises(DomainError):
        money.currency_code("ABC")


def test_final_statuses_go_nowhere() -> None:
    for status in (P.FAILED, P.CANCELLED, P.REFUNDED):
        assert rules.is_final(status)
        assert not any(rules.can_transition(status, other) for other in P)


def test_money_never_moves_backwards() -> None:
    assert not rules.can_transition(P.COMPLETED, P.PROCESSING)
    assert not rules.can_transition(P.COMPLETED, P.PENDING)
    assert not rules.can_transition(P.PARTIALLY_REFUNDED, P.COMPLETED)
    assert not rules.can_transition(P.AUTHORIZED, P.PENDING)
    assert rules.can_transition(P.REQUIRES_ACTION, P.COMPLETED)


def test_a_late_report_is_ignored_and_a_consistent_one_is_the_same() -> None:
    assert rules.on_report(P.COMPLETED, "processing") == (Reported.IGNORE, P.PROCESSING)
    assert rules.on_report(P.PARTIALLY_REFUNDED, "succeeded") == (
        Reported.SAME,
        P.PARTIALLY_REFUNDED,
    )
    assert rules.on_report(P.PENDING, "succeeded") == (Reported.MOVE, P.COMPLETED)
    assert rules.on_report(P.REQUIRES_ACTION, "requires_action") == (
        Reported.SAME,
        P.REQUIRES_ACTION,
    )


def refund_check(amount: int | None, **overrides: object) -> int:
    values: dict[str, object] = {
        "status": P.COMPLETED,
        "captured": 1000,
        "refunded": 0,
        "refund_pending": 0,
        "amount": amount,
        "completed_at": NOW,
        "now": NOW,
        "window": WINDOW,
    }
    values.update(overrides)
    return rules.check_refund(**values)  # type: ignore[arg-type]


def test_refunds_count_those_under_way() -> None:
    assert refund_check(None) == 1000
    assert refund_check(None, refunded=300, refund_pending=200) == 500
    with pytest.raises(DomainError) as caught:
        refund_check(501, refunded=300, refund_pending=200)
    assert caught.value.code is ErrorCode.REFUND_EXCEEDS_AVAILABLE
    with pytest.raises(DomainError) as caught:
        refund_check(None, refunded=600, refund_pending=400, status=P.PARTIALLY_REFUNDED)
    assert caught.value.code is ErrorCode.REFUND_EXCEEDS_AVAILABLE


def test_refund_window() -> None:
    assert refund_check(10, now=NOW + WINDOW) == 10
    with pytest.raises(DomainError) as caught:
        refund_check(10, now=NOW + WINDOW + timedelta(seconds=1))
    assert caught.value.code is ErrorCode.REFUND_WINDOW_EXPIRED


@pytest.mark.parametrize("status", [P.PENDING, P.AUTHORIZED, P.FAILED, P.REFUNDED, P.CANCELLED])
def test_only_captured_payments_are_refundable(status: PaymentStatus) -> None:
    with pytest.raises(DomainError) as caught:
        refund_check(1, status=status)
    assert caught.value.code is ErrorCode.INVALID_STATE


def test_capture_never_exceeds_the_authorization() -> None:
    assert rules.check_capture(P.AUTHORIZED, 500, None) == 500
    assert rules.check_capture(P.AUTHORIZED, 500, 200) == 200
    with pytest.raises(DomainError):
        rules.check_capture(P.AUTHORIZED, 500, 501)
    with pytest.raises(DomainError):
        rules.check_capture(P.COMPLETED, 500, None)


def test_order_status_follows_payments() -> None:
    assert rules.order_status([]) is OrderStatus.PENDING
    assert rules.order_status([(P.FAILED, 0, 0)]) is OrderStatus.PENDING
    assert rules.order_status([(P.FAILED, 0, 0), (P.COMPLETED, 100, 0)]) is OrderStatus.PAID
    assert rules.order_status([(P.PARTIALLY_REFUNDED, 100, 40)]) is OrderStatus.PARTIALLY_REFUNDED
    assert rules.order_status([(P.REFUNDED, 100, 100)]) is OrderStatus.REFUNDED
