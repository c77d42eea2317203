"""The GraphQL object types, each a thin view over a model row.

Money leaves the service here, as Decimal in the currency's major unit.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from models import money, rules, tables
from models.access import owns
from models.errors import DomainError
from models.event_log import public_id
from models.snapshots import AsOf
from resolvers.context import Context
from schema.enums import (
    CaptureMethod,
    ErrorCode,
    EventSource,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    RefundStatus,
)


@strawberry.type
class Customer:
    id: strawberry.ID
    name: str
    email: str

    @classmethod
    def of_order(cls, order: tables.Order) -> Customer:
        return cls(
            id=strawberry.ID(order.customer_id),
            name=order.customer_name,
            email=order.customer_email,
        )


@strawberry.type
class Address:
    street: str
    city: str
    state: str | None
    zip: str
    country: str

    @classmethod
    def of(cls, value: dict[str, str | None] | None) -> Address | None:
        if not value:
            return None
        return cls(
            street=value["street"] or "",
            city=value["city"] or "",
            state=value.get("state"),
            zip=value["zip"] or "",
            country=value["country"] or "",
        )


@strawberry.type
class CardDetails:
    brand: str
    last4: str
    expiry_month: int
    expiry_year: int


@strawberry.type(
    description=(
        "What the customer must do next, beyond the contract: for PayPal, open "
        "redirectUrl (PayPal's approval page) in a popup or a redirect."
    )
)
class NextAction:
    type: str = strawberry.field(description="REDIRECT_TO_URL")
    redirect_url: str


@strawberry.type
class Product:
    sku: strawberry.ID
    name: str
    price: Decimal
    currency: str
    stock: int

    @classmethod
    def of(cls, row: tables.Product) -> Product:
        return cls(
            sku=strawberry.ID(row.sku),
            name=row.name,
            price=money.to_major(row.price, row.currency),
            currency=row.currency,
            stock=row.stock,
        )


@strawberry.type
class OrderLine:
    sku: strawberry.ID
    name: str
    quantity: int
    unit_price: Decimal
    total: Decimal


@strawberry.type
class Order:
    row: strawberry.Private[tables.Order]

    @classmethod
    def of(cls, row: tables.Order) -> Order:
        return cls(row=row)

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def number(self) -> str:
        return self.row.number

    @strawberry.field
    def status(self) -> OrderStatus:
        return self.row.status

    @strawberry.field
    def currency(self) -> str:
        return self.row.currency

    @strawberry.field
    async def lines(self, info: Info[Context, None]) -> list[OrderLine]:
        currency = self.row.currency
        return [
            OrderLine(
                sku=strawberry.ID(line.sku),
                name=line.name,
                quantity=line.quantity,
                unit_price=money.to_major(line.unit_price, currency),
                total=money.to_major(line.unit_price * line.quantity, currency),
            )
            for line in await info.context.loaders.lines_by_order_id.load(self.row.id)
        ]

    @strawberry.field
    def total_amount(self) -> Decimal:
        return money.to_major(self.row.total, self.row.currency)

    @strawberry.field
    async def amount_paid(self, info: Info[Context, None]) -> Decimal:
        paid, _ = await self._settled(info)
        return money.to_major(paid, self.row.currency)

    @strawberry.field
    async def amount_refunded(self, info: Info[Context, None]) -> Decimal:
        _, refunded = await self._settled(info)
        return money.to_major(refunded, self.row.currency)

    @strawberry.field
    async def amount_due(self, info: Info[Context, None]) -> Decimal:
        due = 0
        if self.row.status is rules.OrderStatus.PENDING:
            paid, _ = await self._settled(info)
            due = max(self.row.total - paid, 0)
        return money.to_major(due, self.row.currency)

    async def _settled(self, info: Info[Context, None]) -> tuple[int, int]:
        payments = await info.context.loaders.payments_by_order_id.load(self.row.id)
        captured = [p for p in payments if p.status in rules.CAPTURED]
        return sum(p.captured for p in captured), sum(p.refunded for p in captured)

    @strawberry.field
    def customer(self) -> Customer:
        return Customer.of_order(self.row)

    @strawberry.field
    def billing_address(self) -> Address | None:
        return Address.of(self.row.billing_address)

    @strawberry.field
    async def payments(self, info: Info[Context, None]) -> list[Payment]:
        rows = await info.context.loaders.payments_by_order_id.load(self.row.id)
        return [Payment.of(p) for p in rows]

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def updated_at(self) -> datetime:
        return self.row.updated_at


@strawberry.type
class Payment:
    row: strawberry.Private[tables.Payment]
    # Shown as one change left it (a subscription's message), not as it is now.
    then: strawberry.Private[AsOf | None] = None

    @classmethod
    def of(cls, row: tables.Payment) -> Payment:
        return cls(row=row)

    @classmethod
    def as_of(cls, state: AsOf) -> Payment:
        return cls(row=state.payment, then=state)

    def _money(self, minor: int) -> Decimal:
        return money.to_major(minor, self.row.currency)

    async def _order(self, info: Info[Context, None]) -> tables.Order:
        order = await info.context.loaders.order_by_id.load(self.row.order_id)
        assert order is not None  # a foreign key
        return order

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def order_id(self) -> strawberry.ID:
        return strawberry.ID(self.row.order_id)

    @strawberry.field
    async def order(self, info: Info[Context, None]) -> Order:
        return Order.of(await self._order(info))

    @strawberry.field
    def amount(self) -> Decimal:
        return self._money(self.row.amount)

    @strawberry.field
    def currency(self) -> str:
        return self.row.currency

    @strawberry.field
    def status(self) -> PaymentStatus:
        return self.row.status

    @strawberry.field
    def payment_method(self) -> PaymentMethod:
        return self.row.payment_method

    @strawberry.field
    def capture_method(self) -> CaptureMethod:
        return self.row.capture_method

    @strawberry.field
    def gateway(self) -> str:
        return self.row.gateway

    @strawberry.field
    def gateway_transaction_id(self) -> str | None:
        return self.row.gateway_transaction_id

    @strawberry.field(
        description=(
            "Set while the customer must act (client-confirmed flow, 3-D Secure); "
            "only its owner sees it."
        )
    )
    def client_secret(self, info: Info[Context, None]) -> str | None:
        actor = info.context.actor
        if actor is None or not owns(actor, self.row):
            return None
        return self.row.client_secret

    @strawberry.field(
        description=(
            "Beyond the contract: where the customer goes to act (PayPal's approval page), "
            "while they must; only its owner sees it."
        )
    )
    def next_action(self, info: Info[Context, None]) -> NextAction | None:
        actor = info.context.actor
        if actor is None or not owns(actor, self.row) or not self.row.redirect_url:
            return None
        if self.row.status not in rules.AWAITING_CUSTOMER:
            return None
        return NextAction(type="REDIRECT_TO_URL", redirect_url=self.row.redirect_url)

    @strawberry.field
    def failure_code(self) -> str | None:
        return self.row.failure_code

    @strawberry.field
    def failure_message(self) -> str | None:
        return self.row.failure_message

    @strawberry.field
    async def customer(self, info: Info[Context, None]) -> Customer:
        return Customer.of_order(await self._order(info))

    @strawberry.field
    def billing_address(self) -> Address | None:
        return Address.of(self.row.billing_address)

    @strawberry.field(
        description=(
            "Brand, last four digits and expiry only: the service never holds a card number or CVC."
        )
    )
    def card_details(self) -> CardDetails | None:
        r = self.row
        if r.card_brand is None or r.card_last4 is None:
            return None
        return CardDetails(
            brand=r.card_brand,
            last4=r.card_last4,
            expiry_month=r.card_exp_month or 0,
            expiry_year=r.card_exp_year or 0,
        )

    @strawberry.field
    def metadata(self) -> JSON:
        return cast(JSON, self.row.metadata or {})

    @strawberry.field
    def captured_amount(self) -> Decimal:
        return self._money(self.row.captured)

    @strawberry.field
    def refunded_amount(self) -> Decimal:
        return self._money(self.row.refunded)

    @strawberry.field
    def refundable_amount(self) -> Decimal:
        r = self.row
        available = 0
        if r.status in rules.REFUNDABLE:
            available = rules.refundable_amount(r.captured, r.refunded, r.refund_pending)
        return self._money(available)

    @strawberry.field
    async def refunds(self, info: Info[Context, None]) -> list[Refund]:
        if self.then is not None:
            return [Refund.of(r) for r in self.then.refunds]
        rows = await info.context.loaders.refunds_by_payment_id.load(self.row.id)
        return [Refund.of(r) for r in rows]

    @strawberry.field(
        description=(
            "Beyond the contract, admins only (others see none): the customer's emails and "
            "the merchant's webhooks this payment's changes made, oldest first."
        )
    )
    async def notifications(self, info: Info[Context, None]) -> list[Notification]:
        actor = info.context.actor
        if actor is None:
            return []
        rows = await info.context.service.outbox.of_payment(actor, self.row.id)
        return [Notification.of(row) for row in rows]

    @strawberry.field(description="Chargebacks the gateway reported, oldest first.")
    async def disputes(self, info: Info[Context, None]) -> list[Dispute]:
        if self.then is not None:
            rows = self.then.disputes
        else:
            rows = await info.context.loaders.disputes_by_payment_id.load(self.row.id)
        return [
            Dispute(
                id=strawberry.ID(d.id),
                amount=money.to_major(d.amount, d.currency),
                currency=d.currency,
                status=d.status,
                reason=d.reason,
                created_at=d.created_at,
                updated_at=d.updated_at,
            )
            for d in rows
        ]

    @strawberry.field(description="The audit trail, oldest first.")
    async def events(self, info: Info[Context, None]) -> list[PaymentEvent]:
        rows = await info.context.loaders.events_by_payment_id.load(self.row.id)
        if self.then is not None:  # a payment's events are numbered in commit order
            rows = [e for e in rows if e.id <= self.then.event_id]
        return [PaymentEvent.of(e) for e in rows]

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def processed_at(self) -> datetime | None:
        return self.row.processed_at

    @strawberry.field
    def completed_at(self) -> datetime | None:
        return self.row.completed_at

    @strawberry.field
    def updated_at(self) -> datetime:
        return self.row.updated_at


@strawberry.type(description="A chargeback, as the gateway last reported it.")
class Dispute:
    id: strawberry.ID
    amount: Decimal
    currency: str
    status: str = strawberry.field(
        description="The gateway's: needs_response, under_review, won, lost, …"
    )
    reason: str | None
    created_at: datetime
    updated_at: datetime


@strawberry.type(
    description=(
        "Beyond the contract, admins only: one delivery of a notification, a customer's "
        "email or a merchant's webhook, with every attempt counted."
    )
)
class Notification:
    row: strawberry.Private[tables.Notification]

    @classmethod
    def of(cls, row: tables.Notification) -> Notification:
        return cls(row=row)

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field(description="EMAIL or WEBHOOK")
    def channel(self) -> str:
        return self.row.channel.upper()

    @strawberry.field(description="The event it tells of: the same for each delivery of it.")
    def event_id(self) -> strawberry.ID:
        return strawberry.ID(self.row.event_id)

    @strawberry.field(description="payment.completed, refund.succeeded, …")
    def event_type(self) -> str:
        return self.row.event_type

    @strawberry.field
    def payment_id(self) -> strawberry.ID:
        return strawberry.ID(self.row.payment_id)

    @strawberry.field
    def endpoint_id(self) -> strawberry.ID | None:
        return strawberry.ID(self.row.endpoint_id) if self.row.endpoint_id else None

    @strawberry.field(description="The email address, or the endpoint's URL.")
    def recipient(self) -> str:
        return self.row.recipient

    @strawberry.field(description="PENDING (being tried), DELIVERED or FAILED (given up).")
    def status(self) -> str:
        return self.row.status.upper()

    @strawberry.field
    def attempts(self) -> int:
        return self.row.attempts

    @strawberry.field
    def last_error(self) -> str | None:
        return self.row.last_error

    @strawberry.field
    def next_attempt_at(self) -> datetime | None:
        return self.row.next_attempt_at if self.row.status == "pending" else None

    @strawberry.field
    def delivered_at(self) -> datetime | None:
        return self.row.delivered_at

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(description="The delivery this one repeats (redeliverWebhook).")
    def redelivery_of(self) -> strawberry.ID | None:
        return strawberry.ID(self.row.redelivery_of) if self.row.redelivery_of else None

    @strawberry.field(description="A webhook's event, as its endpoint receives it.")
    def body(self) -> JSON | None:
        if self.row.channel != "webhook":
            return None
        return cast(JSON, self.row.payload.get("body"))


@strawberry.type(description="Beyond the contract: a merchant's system that gets signed events.")
class WebhookEndpoint:
    row: strawberry.Private[tables.WebhookEndpoint]

    @classmethod
    def of(cls, row: tables.WebhookEndpoint) -> WebhookEndpoint:
        return cls(row=row)

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def url(self) -> str:
        return self.row.url

    @strawberry.field(description='The event types it gets, or ["*"] for all.')
    def event_types(self) -> list[str]:
        return list(self.row.event_types)

    @strawberry.field
    def description(self) -> str | None:
        return self.row.description

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(
        description="After rollWebhookEndpointSecret: until when the old secret still signs."
    )
    def previous_secret_expires_at(self) -> datetime | None:
        if self.row.previous_secret is None:
            return None
        return self.row.previous_secret_expires_at


@strawberry.type
class Refund:
    row: strawberry.Private[tables.Refund]

    @classmethod
    def of(cls, row: tables.Refund) -> Refund:
        return cls(row=row)

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.id)

    @strawberry.field
    def payment_id(self) -> strawberry.ID:
        return strawberry.ID(self.row.payment_id)

    @strawberry.field
    async def payment(self, info: Info[Context, None]) -> Payment:
        return Payment.of(await tables.Payment.get(id=self.row.payment_id))

    @strawberry.field
    def amount(self) -> Decimal:
        return money.to_major(self.row.amount, self.row.currency)

    @strawberry.field
    def currency(self) -> str:
        return self.row.currency

    @strawberry.field
    def reason(self) -> str | None:
        return self.row.reason

    @strawberry.field
    def status(self) -> RefundStatus:
        return self.row.status

    @strawberry.field
    def gateway_refund_id(self) -> str | None:
        return self.row.gateway_refund_id

    @strawberry.field
    def failure_reason(self) -> str | None:
        return self.row.failure_reason

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def completed_at(self) -> datetime | None:
        return self.row.completed_at


@strawberry.type
class PaymentEvent:
    row: strawberry.Private[tables.PaymentEvent]

    @classmethod
    def of(cls, row: tables.PaymentEvent) -> PaymentEvent:
        return cls(row=row)

    @strawberry.field
    def id(self, info: Info[Context, None]) -> strawberry.ID:
        return strawberry.ID(public_id(info.context.service.installation, self.row.id))

    @strawberry.field
    def payment_id(self) -> strawberry.ID:
        return strawberry.ID(self.row.payment_id)

    @strawberry.field(
        description=(
            "payment.created, payment.status_changed, refund.created, refund.succeeded, "
            "refund.failed, webhook.applied, …"
        )
    )
    def type(self) -> str:
        return self.row.type

    @strawberry.field
    def from_status(self) -> PaymentStatus | None:
        return self.row.from_status

    @strawberry.field
    def to_status(self) -> PaymentStatus | None:
        return self.row.to_status

    @strawberry.field
    def source(self) -> EventSource:
        return self.row.source

    @strawberry.field(description="What the event carried: amounts, refund ids, reasons.")
    def data(self) -> JSON:
        return cast(JSON, self.row.data or {})

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at


@strawberry.type
class UserError:
    code: ErrorCode
    field: str | None
    message: str

    @classmethod
    def of(cls, error: DomainError) -> UserError:
        return cls(code=error.code, field=error.field, message=error.message)
