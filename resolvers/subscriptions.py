"""The paymentStatusChanged subscription: backlog or current state first, then live.

Every committed change is a message (its audit event's type, and the payment as that
change left it), in the log's order: after a cursor, each change committed since is
sent once, none skipped (models/event_log.py says why that holds across processes).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from graphql import GraphQLError
from tortoise.queryset import QuerySet

from models import event_log
from models.access import Actor, one_order, one_payment
from models.event_log import Position
from models.tables import PaymentEvent
from resolvers.context import Context
from resolvers.live import Change, change_of

# How many replayed changes are read at a time (each carries its snapshot).
BACKLOG_PAGE = 200


@dataclass(frozen=True)
class _Scope:
    actor: Actor
    payment_id: str | None
    order_id: str | None

    def matches(self, change: Change) -> bool:
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
        position = event_log.parse_cursor(ctx.service.installation, after)
        if position is not None and after.startswith("evt_"):
            position = await event_log.legacy_position(position[1])
        if position is None:
            raise _refuse(
                "VALIDATION",
                "after is not a cursor from this subscription (a message's `cursor`, or "
                "liveCursor; an event's id is not one)",
            )
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
                del change  # while it waits, a subscription holds no change
    finally:
        ctx.active_subscriptions -= 1


async def _follow(
    ctx: Context, scope: _Scope, position: Position | None
) -> AsyncGenerator[Change, None]:
    assert ctx.live is not None
    # Listen first, then read: a change committed in between is in both, and sent
    # once. The hub hands on every change after the position it had when we began
    # listening, and the backlog holds every final one up to now: no gap between.
    async with ctx.live.listen() as listener:
        floor = position or event_log.START
        sent: dict[str, Position] = {}  # payment id -> the last change sent for it
        async with aclosing(_replayed(scope, position)) as replayed:
            async for event in replayed:
                change = await change_of(event)
                del event
                sent[change.payment_id] = change.position
                yield change
                del change  # an idle subscription keeps none of it (nor its snapshot)
        del replayed
        while True:
            live = await listener.get()
            if live.position <= max(floor, sent.get(live.payment_id, event_log.START)):
                continue
            if not scope.matches(live):
                continue
            sent[live.payment_id] = live.position
            yield live
            del live


async def _replayed(scope: _Scope, position: Position | None) -> AsyncGenerator[PaymentEvent, None]:
    """What a subscription is sent before live changes: with `after`, every final
    change since, a page at a time; else, with a payment or an order, each one's
    latest change (its state now)."""
    if position is None:
        if scope.payment_id is not None or scope.order_id is not None:
            for event in await _current_state(scope):
                yield event
        return
    mark = position
    while True:
        page = await _page_after(scope, mark)
        for event in page:
            yield event
        if len(page) < BACKLOG_PAGE:
            return
        mark = event_log.position(page[-1])


async def _page_after(scope: _Scope, mark: Position) -> list[PaymentEvent]:
    """The next page of final changes after `mark`: each page below a horizon of its
    own, which only moves on, so the pages join with no gap."""
    query = await event_log.final(_events(scope))
    page: list[PaymentEvent] = (
        await query.filter(event_log.after(mark)).order_by("xid", "id").limit(BACKLOG_PAGE)
    )
    return page


def _events(scope: _Scope) -> QuerySet[PaymentEvent]:
    query = PaymentEvent.all()
    if scope.payment_id is not None:
        query = query.filter(payment_id=scope.payment_id)
    if scope.order_id is not None:
        query = query.filter(payment__order_id=scope.order_id)
    if not scope.actor.admin:
        query = query.filter(payment__customer_id=scope.actor.customer_id)
    return query


async def _current_state(scope: _Scope) -> list[PaymentEvent]:
    """Each matching payment's latest change: its state now, oldest payment first."""
    latest: dict[str, PaymentEvent] = {}
    for event in await (await event_log.final(_events(scope))).order_by("xid", "id"):
        latest[event.payment_id] = event
    return sorted(latest.values(), key=event_log.position)
