"""Mutation payloads: the result, or typed errors as data."""

from __future__ import annotations

import strawberry

from models.commands import Outcome
from schema.types import Order, Payment, Refund, UserError


def _errors(outcome: Outcome) -> list[UserError]:
    return [UserError.of(outcome.error)] if outcome.error else []


@strawberry.type
class CreateOrderPayload:
    order: Order | None
    errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> CreateOrderPayload:
        order = Order.of(outcome.order) if outcome.order else None
        return cls(order=order, errors=_errors(outcome))


@strawberry.type
class ProcessPaymentPayload:
    payment: Payment | None
    client_secret: str | None
    errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> ProcessPaymentPayload:
        payment = Payment.of(outcome.payment) if outcome.payment else None
        return cls(payment=payment, client_secret=outcome.client_secret, errors=_errors(outcome))


@strawberry.type
class RefundPaymentPayload:
    refund: Refund | None
    payment: Payment | None
    errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> RefundPaymentPayload:
        return cls(
            refund=Refund.of(outcome.refund) if outcome.refund else None,
            payment=Payment.of(outcome.payment) if outcome.payment else None,
            errors=_errors(outcome),
        )


@strawberry.type
class PaymentPayload:
    payment: Payment | None
    errors: list[UserError]

    @classmethod
    def of(cls, outcome: Outcome) -> PaymentPayload:
        payment = Payment.of(outcome.payment) if outcome.payment else None
        return cls(payment=payment, errors=_errors(outcome))
