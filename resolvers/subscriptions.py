"""The paymentStatusChanged subscription: backlog or current state first, then live."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime

from graphql import GraphQLError
from tortoise.queryset import QuerySet

from models.access import Actor, one_order, one_payment
from models.ids import event_position
from models.rules import PaymentStatus
from models.tables import PaymentEvent
from resolvers.context import Context
from resolvers.live import LiveChange


@dataclass(frozen=True)
class Change:
    cursor: int
    payment_id: str
    previous: PaymentStatus | None
    status: PaymentStatus
    occurred_at: datetime
    live: bool = False  # just broadcast (not replayed from the backlog)


@dataclass(frozen=True)
class _Scope:
    actor: Actor
    payment_id: str | None
    order_id: str | None

    def matches(self, change: LiveChange) -> bool:
        if self.payment_id is not None and change.payment_id != self.payment_id:
            return False
        if self.order_id is not None and change.order_id != self.order_id:
            return False
        return self.actor.admin or change.customer_id == self.actor.customer_id


def _refuse(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


async def payment_status_changed(
    ctx: Context, payment_id: str | None, order_id: str | None, after: str | None
) -> AsyncIterator[Change]:
    actor = ctx.who
    if ctx.live is None:
        raise _refuse("INTERNAL", "live status is not running")
    if payment_id is not None and not await one_payment(actor, payment_id).exists():
        raise _refuse("NOT_FOUND", "payment not found")
    if order_id is not None and not await one_order(actor, order_id).exists():
        raise _refuse("NOT_FOUND", "order not found")
    if payment_id is None and order_id is None and not actor.admin:
        raise _refuse("FORBIDDEN", "name a paymentId or orderId (only admins may watch all)")
    position = None
    if after is not None:
        position = event_position(after)
        if position is None:
            raise _refuse("VALIDATION", "after is not a cursor from this subscription")
    scope = _Scope(actor, payment_id, order_id)
    if ctx.active_subscriptions >= ctx.max_subscriptions:
        raise _refuse(
            "RATE_LIMITED",
            f"this connection already has {ctx.max_subscriptions} subscriptions open, the "
            "most it may: end one, or open another connection",
        )
    ctx.active_subscriptions += 1
    try:
        async with aclosing(_follow(ctx, scope, position)) as changes:
            async for change in changes:
                yield change
    finally:
        ctx.active_subscriptions -= 1


async def _follow(
    ctx: Context, scope: _Scope, position: int | None
) -> AsyncGenerator[Change, None]:
    assert ctx.live is not None
    payment_id, order_id = scope.payment_id, scope.order_id
    # Listen first, then read: a change committed in between is in both, and skipped
    # once. Positions are commit-ordered (models/write_path/events.append_events), so the
    # backlog after a cursor has no gaps; per payment, nothing older than what was
    # sent is sent again, so a page never steps back to a stale status.
    async with ctx.live.listen() as listener:
        floor = position or 0
        sent: dict[str, int] = {}  # payment id -> the last cursor sent for it
        backlog: list[PaymentEvent] = []
        if position is not None:
            backlog = await _events(scope).filter(id__gt=position).order_by("id")
        elif payment_id is not None or order_id is not None:
            backlog = await _current_state(scope)
        for event in backlog:
            sent[event.payment_id] = event.id
            assert event.to_status is not None
            yield Change(
                cursor=event.id,
                payment_id=event.payment_id,
                previous=event.from_status,
                status=event.to_status,
                occurred_at=event.created_at,
            )
        while True:
            live = await listener.get()
            if live.cursor <= max(floor, sent.get(live.payment_id, 0)):
                continue
            if not scope.matches(live):
                continue
            sent[live.payment_id] = live.cursor
            yield Change(
                cursor=live.cursor,
                payment_id=live.payment_id,
                previous=PaymentStatus(live.previous) if live.previous else None,
                status=PaymentStatus(live.status),
                occurred_at=datetime.fromisoformat(live.occurred_at),
                live=True,
            )


def _events(scope: _Scope) -> QuerySet[PaymentEvent]:
    query = PaymentEvent.filter(to_status__isnull=False)
    if scope.payment_id is not None:
        query = query.filter(payment_id=scope.payment_id)
    if scope.order_id is not None:
        query = query.filter(payment__order_id=scope.order_id)
    if not scope.actor.admin:
        query = query.filter(payment__customer_id=scope.actor.customer_id)
    return query


async def _current_state(scope: _Scope) -> list[PaymentEvent]:
    """Each matching payment's latest status event: its state now, oldest payment first."""
    latest: dict[str, PaymentEvent] = {}
    for event in await _events(scope).order_by("id"):
        latest[event.payment_id] = event
    return sorted(latest.values(), key=lambda e: e.id)
