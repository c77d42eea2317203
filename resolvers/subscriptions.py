"""The paymentStatusChanged subscription: checked once at subscribe, then its backlog
(or current state); live changes follow from the hub (resolvers/live.py).

Every committed change is a message (its audit event's type, and the payment as that
change left it), in the log's order: after a cursor, each change committed since is
sent once, none skipped (models/event_log.py says why that holds across processes).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing, nullcontext
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Scope:
    """Which changes a subscription is sent: its payment's or order's (or all, for an
    admin who names neither), and only what its caller may see."""

    actor: Actor
    payment_id: str | None
    order_id: str | None

    def matches(self, change: Change) -> bool:
        if self.payment_id is not None and change.payment_id != self.payment_id:
            return False
        if self.order_id is not None and change.order_id != self.order_id:
            return False
        return self.actor.admin or change.customer_id == self.actor.customer_id


@dataclass(frozen=True, slots=True)
class Opening:
    """A subscription validated and authorised: what it watches, and the cursor it
    resumes after. The schema's resolver returns it; the hub serves it (a record per
    subscriber, no stream of its own: payql/graphql_ws.py), so it is not iterable."""

    scope: Scope
    after: Position | None

    def __aiter__(self) -> AsyncIterator[Any]:
        raise TypeError(
            "paymentStatusChanged is served by payql's websocket (payql/graphql_ws.py), "
            "not by iterating the resolver's result"
        )


def _refuse(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


async def open_subscription(
    ctx: Context, payment_id: str | None, order_id: str | None, after: str | None
) -> Opening:
    """Check a subscribe once, before anything is sent: the caller may see what it
    names, a customer names a payment or an order, `after` is one of our cursors."""
    actor = ctx.who
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
    return Opening(Scope(actor, payment_id, order_id), position)


async def backlog(
    opening: Opening, gate: AbstractAsyncContextManager[Any] | None = None
) -> AsyncGenerator[Change, None]:
    """What a subscription is sent before live changes, in the log's order: with
    `after`, every final change since, a page at a time; else, with a payment or an
    order, each one's latest change (its state now); else nothing. Hold the subscriber
    in the hub before reading it: a change committed in between is in both, and sent
    once (Subscriber.mark); the hub holds every change after the position it had then,
    and this every final one up to now, so nothing falls between. Each read of the
    database is made inside `gate` (which bounds how many run at once)."""
    async with aclosing(_replayed(opening.scope, opening.after, gate or nullcontext())) as replayed:
        async for event in replayed:
            yield await change_of(event)


async def _replayed(
    scope: Scope, position: Position | None, gate: AbstractAsyncContextManager[Any]
) -> AsyncGenerator[PaymentEvent, None]:
    """What a subscription is sent before live changes: with `after`, every final
    change since, a page at a time; else, with a payment or an order, each one's
    latest change (its state now)."""
    if position is None:
        if scope.payment_id is not None or scope.order_id is not None:
            async with gate:
                latest = await _current_state(scope)
            for event in latest:
                yield event
        return
    mark = position
    while True:
        async with gate:
            page = await _page_after(scope, mark)
        for event in page:
            yield event
        if len(page) < BACKLOG_PAGE:
            return
        mark = event_log.position(page[-1])


async def _page_after(scope: Scope, mark: Position) -> list[PaymentEvent]:
    """The next page of final changes after `mark`: each page below a horizon of its
    own, which only moves on, so the pages join with no gap."""
    query = await event_log.final(_events(scope))
    page: list[PaymentEvent] = (
        await query.filter(event_log.after(mark)).order_by("xid", "id").limit(BACKLOG_PAGE)
    )
    return page


def _events(scope: Scope) -> QuerySet[PaymentEvent]:
    query = PaymentEvent.all()
    if scope.payment_id is not None:
        query = query.filter(payment_id=scope.payment_id)
    if scope.order_id is not None:
        query = query.filter(payment__order_id=scope.order_id)
    if not scope.actor.admin:
        query = query.filter(payment__customer_id=scope.actor.customer_id)
    return query


async def _current_state(scope: Scope) -> list[PaymentEvent]:
    """Each matching payment's latest change: its state now, oldest payment first."""
    if scope.payment_id is not None:  # one payment: its latest change only is read
        query = await event_log.final(_events(scope))
        last = await query.order_by("-xid", "-id").first()
        return [last] if last is not None else []
    latest: dict[str, PaymentEvent] = {}
    for event in await (await event_log.final(_events(scope))).order_by("xid", "id"):
        latest[event.payment_id] = event
    return sorted(latest.values(), key=event_log.position)
