"""Mutation entry points: one per concern, each a call into the write path.

Expected failures come back as an Outcome carrying a DomainError, which the
schema reports as a typed UserError; nothing here decides a payment's fate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from decimal import Decimal

from models.errors import DomainError
from models.write_path import CustomerData, Outcome, PaymentRequest
from resolvers.context import Context


async def _guard(call: Awaitable[Outcome]) -> Outcome:
    try:
        return await call
    except DomainError as error:
        return Outcome(error=error)


async def create_order(
    ctx: Context,
    lines: Sequence[tuple[str, int]],
    customer: CustomerData | None,
    billing_address: Mapping[str, str | None] | None,
) -> Outcome:
    async def create() -> Outcome:
        order = await ctx.service.create_order(ctx.who, lines, customer, billing_address)
        return Outcome(order=order)

    return await _guard(create())


async def process_payment(ctx: Context, request: PaymentRequest) -> Outcome:
    return await _guard(ctx.service.process_payment(ctx.who, request))


async def refund_payment(
    ctx: Context,
    payment_id: str,
    amount: Decimal | None,
    reason: str | None,
    idempotency_key: str | None,
) -> Outcome:
    return await _guard(
        ctx.service.refund_payment(ctx.who, payment_id, amount, reason, idempotency_key)
    )


async def capture_payment(ctx: Context, payment_id: str, amount: Decimal | None) -> Outcome:
    return await _guard(ctx.service.capture_payment(ctx.who, payment_id, amount))


async def cancel_payment(ctx: Context, payment_id: str) -> Outcome:
    return await _guard(ctx.service.cancel_payment(ctx.who, payment_id))


async def sync_payment(ctx: Context, payment_id: str) -> Outcome:
    return await _guard(ctx.service.sync_payment(ctx.who, payment_id))


async def mark_payment_received(ctx: Context, payment_id: str) -> Outcome:
    return await _guard(ctx.service.mark_payment_received(ctx.who, payment_id))
