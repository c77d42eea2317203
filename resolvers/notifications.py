"""Entry points for notifications (beyond the contract, admins only): merchants'
webhook endpoints, their deliveries, and redelivery. Each calls the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.errors import DomainError
from models.tables import Notification, WebhookEndpoint
from models.write_path import utcnow
from resolvers.context import Context
from resolvers.queries import query_error


@dataclass
class Result:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = None
    delivery: Notification | None = None
    deleted_id: str | None = None
    error: DomainError | None = None


async def create_endpoint(
    ctx: Context, url: str, event_types: Sequence[str], description: str | None
) -> Result:
    try:
        endpoint, secret = await ctx.service.outbox.create_endpoint(
            ctx.who, url, event_types, description
        )
    except DomainError as error:
        return Result(error=error)
    return Result(endpoint=endpoint, secret=secret)


async def roll_secret(ctx: Context, endpoint_id: str) -> Result:
    try:
        endpoint, secret = await ctx.service.outbox.roll_secret(ctx.who, endpoint_id, utcnow())
    except DomainError as error:
        return Result(error=error)
    return Result(endpoint=endpoint, secret=secret)


async def delete_endpoint(ctx: Context, endpoint_id: str) -> Result:
    try:
        deleted = await ctx.service.outbox.delete_endpoint(ctx.who, endpoint_id, utcnow())
    except DomainError as error:
        return Result(error=error)
    return Result(deleted_id=deleted)


async def redeliver(ctx: Context, delivery_id: str) -> Result:
    try:
        delivery = await ctx.service.outbox.redeliver(ctx.who, delivery_id, utcnow())
    except DomainError as error:
        return Result(error=error)
    if ctx.service.outbox.wake is not None:
        ctx.service.outbox.wake()
    return Result(delivery=delivery)


async def endpoints(ctx: Context) -> list[WebhookEndpoint]:
    try:
        return await ctx.service.outbox.endpoints(ctx.who)
    except DomainError as error:
        raise query_error(error.code.value, error.message) from None


async def deliveries(
    ctx: Context,
    endpoint_id: str | None,
    payment_id: str | None,
    status: str | None,
    first: int,
) -> list[Notification]:
    try:
        return await ctx.service.outbox.deliveries(
            ctx.who, endpoint_id, payment_id, status.lower() if status else None, first
        )
    except DomainError as error:
        raise query_error(error.code.value, error.message) from None
