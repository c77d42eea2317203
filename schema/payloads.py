"""Mutation payloads: the result, or typed errors as data."""

from __future__ import annotations

import strawberry

from models.write_path import Outcome
from resolvers.notifications import Result
from schema.types import Notification, Order, Payment, Refund, UserError, WebhookEndpoint


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


def _result_errors(result: Result | Outcome) -> list[UserError]:
    return [UserError.of(result.error)] if result.error else []


# The payloads below take a Result, or the Outcome of a refused input (GuardInput).


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None
    secret: str | None = strawberry.field(
        description="Signs its deliveries (Payql-Signature): shown this once, keep it."
    )
    errors: list[UserError]

    @classmethod
    def of(cls, result: Result | Outcome) -> CreateWebhookEndpointPayload:
        if isinstance(result, Outcome):
            return cls(endpoint=None, secret=None, errors=_result_errors(result))
        endpoint = WebhookEndpoint.of(result.endpoint) if result.endpoint else None
        return cls(endpoint=endpoint, secret=result.secret, errors=_result_errors(result))


@strawberry.type
class DeleteWebhookEndpointPayload:
    deleted_id: strawberry.ID | None
    errors: list[UserError]

    @classmethod
    def of(cls, result: Result | Outcome) -> DeleteWebhookEndpointPayload:
        if isinstance(result, Outcome):
            return cls(deleted_id=None, errors=_result_errors(result))
        deleted = strawberry.ID(result.deleted_id) if result.deleted_id else None
        return cls(deleted_id=deleted, errors=_result_errors(result))


@strawberry.type
class RedeliverWebhookPayload:
    delivery: Notification | None
    errors: list[UserError]

    @classmethod
    def of(cls, result: Result | Outcome) -> RedeliverWebhookPayload:
        if isinstance(result, Outcome):
            return cls(delivery=None, errors=_result_errors(result))
        delivery = Notification.of(result.delivery) if result.delivery else None
        return cls(delivery=delivery, errors=_result_errors(result))
