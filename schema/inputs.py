"""Input types, as the contract defines them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from schema.enums import CaptureMethod, PaymentMethod, PaymentStatus


@strawberry.input
class PaymentFilter:
    status: list[PaymentStatus] | None = None
    order_id: strawberry.ID | None = None
    gateway: str | None = None
    payment_method: PaymentMethod | None = None
    customer_email: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    order_number: str | None = strawberry.field(
        default=None, description="Beyond the contract: the order's number (ORD-2026-000042)."
    )


@strawberry.input
class OrderLineInput:
    sku: strawberry.ID
    quantity: int


@strawberry.input
class CustomerInput:
    name: str
    email: str
    id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Admins only: the customer's id (as in their token's `sub`). "
        "Without it, the id is derived from the email.",
    )


@strawberry.input
class AddressInput:
    street: str
    city: str
    state: str | None = None
    zip: str
    country: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "street": self.street,
            "city": self.city,
            "state": self.state,
            "zip": self.zip,
            "country": self.country,
        }


@strawberry.input
class CreateOrderInput:
    lines: list[OrderLineInput]
    customer: CustomerInput | None = None
    billing_address: AddressInput | None = None


@strawberry.input
class ProcessPaymentInput:
    order_id: strawberry.ID
    payment_method: PaymentMethod
    gateway: str | None = strawberry.field(
        default=None,
        description="Defaults by method and configuration (simulated, stripe, manual, …).",
    )
    token: str | None = strawberry.field(
        default=None,
        description="A gateway token (pm_…, tok_…). Leave it out to get a clientSecret and "
        "confirm on the client.",
    )
    amount: Decimal | None = strawberry.field(
        default=None,
        description="Optional; when given it must equal the amount due, which the server "
        "computes itself.",
    )
    currency: str | None = None
    capture_method: CaptureMethod | None = CaptureMethod.AUTOMATIC
    billing_address: AddressInput | None = None
    metadata: JSON | None = None
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Same key and same input: the first result again, and no second charge.",
    )


@strawberry.input
class RefundPaymentInput:
    payment_id: strawberry.ID
    amount: Decimal | None = strawberry.field(
        default=None, description="Leave it out to refund everything still refundable."
    )
    reason: str | None = None
    idempotency_key: str | None = None


@strawberry.input(description="Beyond the contract: a merchant's endpoint for signed events.")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="https://… (http:// too); public addresses only.")
    event_types: list[str] = strawberry.field(
        description="payment.completed, payment.failed, refund.succeeded, …, or * for all."
    )
    description: str | None = None
