"""The Subscription root."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry.types import Info

from models.event_log import cursor
from resolvers import subscriptions
from resolvers.context import Context
from resolvers.live import Change
from schema.enums import PaymentStatus
from schema.guards import guard_input
from schema.types import Payment


@strawberry.type(
    description=(
        "One committed change to a payment: what happened (`type`) and the payment as "
        "that change left it."
    )
)
class PaymentStatusChange:
    change: strawberry.Private[Change]

    @strawberry.field(
        description="Pass as `after` to resume a subscription without missing a change."
    )
    def cursor(self, info: Info[Context, None]) -> strawberry.ID:
        return strawberry.ID(cursor(info.context.service.installation, self.change.position))

    @strawberry.field(
        description=(
            "The audit event's type: payment.status_changed, refund.succeeded, dispute.created, …"
        )
    )
    def type(self) -> str:
        return self.change.type

    @strawberry.field(
        description=(
            "The payment as this change left it (its refunds, disputes and events too; "
            "its order as it is now)."
        )
    )
    def payment(self) -> Payment:
        return Payment.as_of(self.change.as_of)

    @strawberry.field(description="Equal to status when the change left the status as it was.")
    def previous_status(self) -> PaymentStatus | None:
        return self.change.previous

    @strawberry.field
    def status(self) -> PaymentStatus:
        return self.change.status

    @strawberry.field
    def occurred_at(self) -> datetime:
        return self.change.occurred_at


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description=(
            "Every committed change to a payment (status, amounts, refunds, disputes), "
            "filtered by payment or by order (admins may omit both).\n"
            "With paymentId or orderId, the first messages carry the current state of each\n"
            "matching payment. With `after`, every change since that cursor is replayed\n"
            "first, in order, with none missed or repeated; then live changes follow."
        )
    )
    async def payment_status_changed(
        self,
        info: Info[Context, None],
        payment_id: strawberry.ID | None = None,
        order_id: strawberry.ID | None = None,
        after: strawberry.ID | None = None,
    ) -> AsyncGenerator[PaymentStatusChange, None]:
        guard_input(paymentId=payment_id, orderId=order_id, after=after)
        changes = subscriptions.payment_status_changed(info.context, payment_id, order_id, after)
        async for change in changes:
            message = PaymentStatusChange(change=change)
            del change  # while it waits, a subscription holds no change
            yield message
            del message
