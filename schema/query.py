"""The Query root: thin fields over resolvers/queries.py."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from models.event_log import cursor
from models.write_path import utcnow
from resolvers import notifications, queries
from resolvers.context import Context
from schema.enums import PaymentStatus
from schema.guards import GuardInput
from schema.inputs import PaymentFilter
from schema.types import Notification, Order, Payment, Product, WebhookEndpoint


@strawberry.type
class PaymentPage:
    items: list[Payment]
    total: int
    end_cursor: str | None
    has_next_page: bool


@strawberry.type
class OrderPage:
    items: list[Order]
    total: int
    end_cursor: str | None
    has_next_page: bool


def _where(f: PaymentFilter | None) -> queries.PaymentQuery | None:
    if f is None:
        return None
    return queries.PaymentQuery(
        status=list(f.status) if f.status else None,
        order_id=f.order_id,
        gateway=f.gateway,
        payment_method=f.payment_method,
        customer_email=f.customer_email,
        created_after=f.created_after,
        created_before=f.created_before,
        order_number=f.order_number,
    )


@strawberry.type(description="Beyond the contract: payments in one stretch of time.")
class PaymentStatsBucket:
    start: datetime
    payments: int
    succeeded: int
    failed: int

    @strawberry.field(description="succeeded / (succeeded + failed); null when neither.")
    def success_rate(self) -> float | None:
        settled = self.succeeded + self.failed
        return round(self.succeeded / settled, 4) if settled else None


@strawberry.type
class Query:
    @strawberry.field(extensions=[GuardInput()])
    async def payment(self, info: Info[Context, None], id: strawberry.ID) -> Payment | None:
        row = await queries.payment(info.context, id)
        return Payment.of(row) if row else None

    @strawberry.field(extensions=[GuardInput()])
    async def payments(
        self,
        info: Info[Context, None],
        filter: PaymentFilter | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> PaymentPage:
        page = await queries.payments(info.context, _where(filter), first, after)
        return PaymentPage(
            items=[Payment.of(p) for p in page.items],
            total=page.total,
            end_cursor=page.end_cursor,
            has_next_page=page.has_next_page,
        )

    @strawberry.field(extensions=[GuardInput()])
    async def payments_by_order(
        self, info: Info[Context, None], order_id: strawberry.ID
    ) -> list[Payment]:
        return [Payment.of(p) for p in await queries.payments_by_order(info.context, order_id)]

    @strawberry.field(extensions=[GuardInput()])
    async def payment_status(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> PaymentStatus | None:
        row = await queries.payment(info.context, id)
        return row.status if row else None

    @strawberry.field(extensions=[GuardInput()])
    async def order(self, info: Info[Context, None], id: strawberry.ID) -> Order | None:
        row = await queries.order(info.context, id)
        return Order.of(row) if row else None

    @strawberry.field(extensions=[GuardInput()])
    async def orders(
        self, info: Info[Context, None], first: int = 20, after: str | None = None
    ) -> OrderPage:
        page = await queries.orders(info.context, first, after)
        return OrderPage(
            items=[Order.of(o) for o in page.items],
            total=page.total,
            end_cursor=page.end_cursor,
            has_next_page=page.has_next_page,
        )

    @strawberry.field(
        extensions=[GuardInput()],
        description=(
            "Beyond the contract, admins only: payments made since `since` (within the "
            "last day), in buckets of `bucketMinutes`, oldest first (at most 60 buckets)."
        ),
    )
    async def payment_stats(
        self, info: Info[Context, None], since: datetime, bucket_minutes: int = 5
    ) -> list[PaymentStatsBucket]:
        buckets = await queries.payment_stats(info.context, since, bucket_minutes, utcnow())
        return [
            PaymentStatsBucket(
                start=b.start, payments=b.payments, succeeded=b.succeeded, failed=b.failed
            )
            for b in buckets
        ]

    @strawberry.field(
        extensions=[GuardInput()],
        description=(
            "Beyond the contract, admins only: the cursor of the newest committed change. "
            "Read it before a list, then subscribe to paymentStatusChanged with `after` "
            "set to it: no change made while the list was read is missed."
        ),
    )
    async def live_cursor(self, info: Info[Context, None]) -> strawberry.ID:
        mark = await queries.live_cursor(info.context)
        return strawberry.ID(cursor(info.context.service.installation, mark))

    @strawberry.field(
        extensions=[GuardInput()],
        description="Beyond the contract, admins only: merchants' webhook endpoints.",
    )
    async def webhook_endpoints(self, info: Info[Context, None]) -> list[WebhookEndpoint]:
        return [WebhookEndpoint.of(e) for e in await notifications.endpoints(info.context)]

    @strawberry.field(
        extensions=[GuardInput()],
        description=(
            "Beyond the contract, admins only: webhook deliveries, newest first, by "
            "endpoint, payment or status (PENDING, DELIVERED, FAILED); at most 200."
        ),
    )
    async def webhook_deliveries(
        self,
        info: Info[Context, None],
        endpoint_id: strawberry.ID | None = None,
        payment_id: strawberry.ID | None = None,
        status: str | None = None,
        first: int = 50,
    ) -> list[Notification]:
        rows = await notifications.deliveries(info.context, endpoint_id, payment_id, status, first)
        return [Notification.of(row) for row in rows]

    @strawberry.field(extensions=[GuardInput()])
    async def products(self, info: Info[Context, None]) -> list[Product]:
        return [Product.of(p) for p in await queries.products(info.context)]
