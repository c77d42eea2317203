"""Query entry points: read what the caller may see."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from graphql import GraphQLError
from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from models import event_log
from models.access import fits, one_order, one_payment, visible_orders, visible_payments
from models.rules import SUCCEEDED, PaymentMethod, PaymentStatus
from models.tables import Order, Payment, Product
from resolvers.context import Context

MAX_PAGE = 100
M = TypeVar("M", Order, Payment)


@dataclass
class Page(Generic[M]):
    items: list[M]
    total: int
    end_cursor: str | None
    has_next_page: bool


@dataclass
class PaymentQuery:
    status: list[PaymentStatus] | None = None
    order_id: str | None = None
    gateway: str | None = None
    payment_method: PaymentMethod | None = None
    customer_email: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    order_number: str | None = None


@dataclass(frozen=True)
class StatsBucket:
    start: datetime
    payments: int
    succeeded: int
    failed: int


# paymentStats: at most this many buckets (one grouped count each), over at most a day.
MAX_BUCKETS = 60
MAX_STATS_SPAN = timedelta(days=1)


def query_error(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


def instant(value: datetime, name: str) -> datetime:
    """A client's time as the database keeps it: in UTC (SQLite compares the stored
    text). One with no time zone names no instant, so it is refused."""
    if value.tzinfo is None:
        raise query_error(
            "VALIDATION", f"{name} needs a time zone, e.g. 2026-11-22T10:00:00Z or +02:00"
        )
    return value.astimezone(UTC)


async def payment(ctx: Context, payment_id: str) -> Payment | None:
    return await one_payment(ctx.who, payment_id).first()


async def payments(
    ctx: Context, where: PaymentQuery | None, first: int, after: str | None
) -> Page[Payment]:
    if not ctx.who.admin:
        raise query_error("FORBIDDEN", "only an admin can list all payments")
    query = visible_payments(ctx.who)
    if where is not None:
        if where.status:
            query = query.filter(status__in=where.status)
        if where.order_id:
            query = query.filter(order_id=fits(where.order_id, Order))
        if where.gateway:
            query = query.filter(gateway=fits(where.gateway, Payment, "gateway"))
        if where.payment_method:
            query = query.filter(payment_method=where.payment_method)
        if where.customer_email:
            query = query.filter(order__customer_email__iexact=where.customer_email.strip())
        if where.created_after:
            query = query.filter(created_at__gte=instant(where.created_after, "createdAfter"))
        if where.created_before:
            query = query.filter(created_at__lt=instant(where.created_before, "createdBefore"))
        if where.order_number:
            number = fits(where.order_number.strip().upper(), Order, "number")
            query = query.filter(order__number=number)
    return await _page(query, first, after)


async def live_cursor(ctx: Context) -> event_log.Position:
    """The newest final change (models/event_log.py): every change up to it is
    visible now, and none before it can still commit."""
    if not ctx.who.admin:
        raise query_error("FORBIDDEN", "only an admin can see the live cursor")
    return await event_log.end()


async def payment_stats(
    ctx: Context, since: datetime, bucket_minutes: int, now: datetime
) -> list[StatsBucket]:
    """Payments made since `since`, in buckets of `bucket_minutes`, oldest first: how
    many, how many succeeded and how many failed (for volume and success rate)."""
    if not ctx.who.admin:
        raise query_error("FORBIDDEN", "only an admin can see payment statistics")
    since = instant(since, "since")
    if not 1 <= bucket_minutes <= 24 * 60:
        raise query_error("VALIDATION", "bucketMinutes must be between 1 and 1440")
    if not now - MAX_STATS_SPAN <= since < now:
        raise query_error("VALIDATION", "since must be within the last 24 hours")
    width = timedelta(minutes=bucket_minutes)
    count = -(-(now - since) // width)  # ceiling
    if count > MAX_BUCKETS:
        raise query_error(
            "VALIDATION", f"that is {count} buckets; at most {MAX_BUCKETS}: ask for wider ones"
        )
    buckets = []
    for n in range(count):
        start = since + n * width
        rows = (
            await Payment.filter(created_at__gte=start, created_at__lt=start + width)
            .annotate(n=Count("id"))
            .group_by("status")
            .values("status", "n")
        )
        by_status = {PaymentStatus(r["status"]): r["n"] for r in rows}
        buckets.append(
            StatsBucket(
                start=start,
                payments=sum(by_status.values()),
                succeeded=sum(n for status, n in by_status.items() if status in SUCCEEDED),
                failed=by_status.get(PaymentStatus.FAILED, 0),
            )
        )
    return buckets


async def payments_by_order(ctx: Context, order_id: str) -> list[Payment]:
    order = await one_order(ctx.who, order_id).first()
    if order is None:
        return []
    return await ctx.loaders.payments_by_order_id.load(order.id)


async def order(ctx: Context, order_id: str) -> Order | None:
    return await one_order(ctx.who, order_id).first()


async def orders(ctx: Context, first: int, after: str | None) -> Page[Order]:
    return await _page(visible_orders(ctx.who), first, after)


async def products(ctx: Context) -> list[Product]:
    ctx.who  # noqa: B018 - every operation needs a caller
    return await Product.all().order_by("sku")


async def _page(query: QuerySet[M], first: int, after: str | None) -> Page[M]:
    """Newest first, keyset-paginated on (created_at, id)."""
    if not 1 <= first <= MAX_PAGE:
        raise query_error("VALIDATION", f"first must be between 1 and {MAX_PAGE}")
    total = await query.count()
    if after:
        created_at, last_id = _decode_cursor(after, query.model)
        query = query.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=last_id)
        )
    rows = await query.order_by("-created_at", "-id").limit(first + 1)
    items = rows[:first]
    end = _encode_cursor(items[-1]) if items else None
    return Page(items=items, total=total, end_cursor=end, has_next_page=len(rows) > first)


def _encode_cursor(row: Order | Payment) -> str:
    raw = f"{row.created_at.isoformat()}|{row.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str, model: type[Order | Payment]) -> tuple[datetime, str]:
    try:
        created, _, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        if not last_id or last_id != fits(last_id, model):
            raise ValueError("no id of ours")
        return datetime.fromisoformat(created), last_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise query_error("VALIDATION", "after is not a cursor from this list") from None
