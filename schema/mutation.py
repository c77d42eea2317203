"""The Mutation root: one thin field per concern over resolvers/mutations.py."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.types import Info

from models.write_path import CustomerData, PaymentRequest, attempt_source
from resolvers import mutations, notifications
from resolvers.context import Context
from schema.enums import CaptureMethod
from schema.guards import GuardInput
from schema.inputs import (
    CreateOrderInput,
    CreateWebhookEndpointInput,
    ProcessPaymentInput,
    RefundPaymentInput,
)
from schema.payloads import (
    CreateOrderPayload,
    CreateWebhookEndpointPayload,
    DeleteWebhookEndpointPayload,
    PaymentPayload,
    ProcessPaymentPayload,
    RedeliverWebhookPayload,
    RefundPaymentPayload,
)


@strawberry.type
class Mutation:
    @strawberry.mutation(extensions=[GuardInput()])
    async def create_order(
        self, info: Info[Context, None], input: CreateOrderInput
    ) -> CreateOrderPayload:
        customer = None
        if input.customer is not None:
            c = input.customer
            customer = CustomerData(name=c.name, email=c.email, id=c.id)
        outcome = await mutations.create_order(
            info.context,
            [(line.sku, line.quantity) for line in input.lines],
            customer,
            input.billing_address.as_dict() if input.billing_address else None,
        )
        return CreateOrderPayload.of(outcome)

    @strawberry.mutation(extensions=[GuardInput()])
    async def process_payment(
        self, info: Info[Context, None], input: ProcessPaymentInput
    ) -> ProcessPaymentPayload:
        request = PaymentRequest(
            order_id=input.order_id,
            method=input.payment_method,
            gateway=input.gateway,
            token=input.token,
            amount=input.amount,
            currency=input.currency,
            capture_method=input.capture_method or CaptureMethod.AUTOMATIC,
            billing_address=input.billing_address.as_dict() if input.billing_address else None,
            metadata=input.metadata,
            idempotency_key=input.idempotency_key,
            client_ip=attempt_source(info.context.client_ip),
        )
        return ProcessPaymentPayload.of(await mutations.process_payment(info.context, request))

    @strawberry.mutation(extensions=[GuardInput()])
    async def refund_payment(
        self, info: Info[Context, None], input: RefundPaymentInput
    ) -> RefundPaymentPayload:
        outcome = await mutations.refund_payment(
            info.context, input.payment_id, input.amount, input.reason, input.idempotency_key
        )
        return RefundPaymentPayload.of(outcome)

    @strawberry.mutation(
        extensions=[GuardInput()],
        description="Capture an AUTHORIZED payment, all of it or less.",
    )
    async def capture_payment(
        self, info: Info[Context, None], id: strawberry.ID, amount: Decimal | None = None
    ) -> PaymentPayload:
        return PaymentPayload.of(await mutations.capture_payment(info.context, id, amount))

    @strawberry.mutation(
        extensions=[GuardInput()],
        description="Cancel a payment that has not completed; voids an authorization.",
    )
    async def cancel_payment(self, info: Info[Context, None], id: strawberry.ID) -> PaymentPayload:
        return PaymentPayload.of(await mutations.cancel_payment(info.context, id))

    @strawberry.mutation(
        extensions=[GuardInput()],
        description="Ask the gateway for the payment's true state and apply it "
        "(never trusts the client).",
    )
    async def sync_payment(self, info: Info[Context, None], id: strawberry.ID) -> PaymentPayload:
        return PaymentPayload.of(await mutations.sync_payment(info.context, id))

    @strawberry.mutation(
        extensions=[GuardInput()],
        description="Admin only: an offline payment (bank transfer, cash on delivery) has arrived.",
    )
    async def mark_payment_received(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> PaymentPayload:
        return PaymentPayload.of(await mutations.mark_payment_received(info.context, id))

    @strawberry.mutation(
        extensions=[GuardInput()],
        description="Beyond the contract, admins only: register a merchant's webhook endpoint.",
    )
    async def create_webhook_endpoint(
        self, info: Info[Context, None], input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        result = await notifications.create_endpoint(
            info.context, input.url, input.event_types, input.description
        )
        return CreateWebhookEndpointPayload.of(result)

    @strawberry.mutation(
        extensions=[GuardInput()],
        description=(
            "Beyond the contract, admins only: a new signing secret for an endpoint, shown "
            "this once. The old one signs beside it for 24 h (two v1 in Payql-Signature), "
            "so the receiver can switch without refusing a delivery."
        ),
    )
    async def roll_webhook_endpoint_secret(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> CreateWebhookEndpointPayload:
        return CreateWebhookEndpointPayload.of(await notifications.roll_secret(info.context, id))

    @strawberry.mutation(
        extensions=[GuardInput()],
        description="Beyond the contract, admins only: stop sending to an endpoint.",
    )
    async def delete_webhook_endpoint(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> DeleteWebhookEndpointPayload:
        return DeleteWebhookEndpointPayload.of(
            await notifications.delete_endpoint(info.context, id)
        )

    @strawberry.mutation(
        extensions=[GuardInput()],
        description=(
            "Beyond the contract, admins only: send a webhook delivery again, as a new "
            "delivery of the same event (same event id)."
        ),
    )
    async def redeliver_webhook(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> RedeliverWebhookPayload:
        return RedeliverWebhookPayload.of(await notifications.redeliver(info.context, id))
