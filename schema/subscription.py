"""The Subscription root."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry.types import Info

from models import tables
from models.ids import event_id
from resolvers import subscriptions
from resolvers.context import Context
from schema.enums import PaymentStatus
from schema.guards import guard_input
from schema.types import Payment


@strawberry.type
class PaymentStatusChange:
    change: strawberry.Private[subscriptions.Change]

    @strawberry.field(
        description="Pass as `after` to resume a subscription without missing a change."
    )
    def cursor(self) -> strawberry.ID:
        return strawberry.ID(event_id(self.change.cursor))

    @strawberry.field
    async def payment(self, info: Info[Context, None]) -> Payment:
        # Read after the change committed, once per process for all its subscribers
        # (never from a per-connection cache).
        live = info.context.live
        if live is None or not self.change.live:
            # A replayed change is read fresh: a shared read made for an older change
            # could show a subscriber a state older than one it has already seen.
            return Payment.of(await tables.Payment.get(id=self.change.payment_id))
        return Payment.of(await live.payment_after(self.change.payment_id, self.change.cursor))

    @strawberry.field
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
            "Live status changes, filtered by payment or by order (admins may omit both).\n"
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
            yield PaymentStatusChange(change=change)
