"""The audit log and its broadcast: events appended with commit-ordered positions (the
cursors subscribers resume after), the status changes published once committed, and
the counters the write path takes numbers from."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from models.rules import EventSource, PaymentStatus
from models.tables import Counter, Payment, PaymentEvent

if TYPE_CHECKING:
    pass


ORDER_COUNTER = "order"


EVENT_COUNTER = "event"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StatusChange:
    """A committed status change, as broadcast to subscribers: small and flat."""

    cursor: int
    payment_id: str
    order_id: str
    customer_id: str
    previous: PaymentStatus | None
    status: PaymentStatus
    occurred_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "cursor": self.cursor,
                "paymentId": self.payment_id,
                "orderId": self.order_id,
                "customerId": self.customer_id,
                "previous": self.previous.value if self.previous else None,
                "status": self.status.value,
                "occurredAt": self.occurred_at.isoformat(),
            },
            separators=(",", ":"),
        )


class Publisher(Protocol):
    async def publish(self, change: StatusChange) -> None: ...


class NoPublisher:
    async def publish(self, change: StatusChange) -> None:
        return None


async def append_events(
    conn: Any,
    payment_id: str,
    source: EventSource,
    now: datetime,
    specs: Sequence[Mapping[str, Any]],
) -> list[PaymentEvent]:
    """Append audit events with commit-ordered positions (their ids, the cursors).

    The counter row stays locked until commit, so no position ever commits after a
    higher one: a reader that has seen position N has seen every position below it.
    """
    if not specs:
        return []
    taken = (
        await Counter.filter(name=EVENT_COUNTER)
        .using_db(conn)
        .update(value=F("value") + len(specs))
    )
    if taken != 1:
        raise RuntimeError("the event counter is missing: start the service once to create it")
    last = (await Counter.filter(name=EVENT_COUNTER).using_db(conn).get()).value
    events = [
        PaymentEvent(
            id=last - len(specs) + 1 + offset,
            payment_id=payment_id,
            source=source,
            created_at=now,
            **spec,
        )
        for offset, spec in enumerate(specs)
    ]
    await PaymentEvent.bulk_create(events, using_db=conn)
    return events


async def ensure_counters() -> None:
    """The counters the write path takes numbers from (order numbers, event positions)."""
    for name in (ORDER_COUNTER, EVENT_COUNTER):
        try:
            await Counter.get_or_create(name=name, defaults={"value": 0})
        except IntegrityError:  # another worker created it first
            pass


def change_of(payment: Payment, event: PaymentEvent) -> StatusChange:
    assert event.to_status is not None
    return StatusChange(
        cursor=event.id,
        payment_id=payment.id,
        order_id=payment.order_id,
        customer_id=payment.customer_id,
        previous=event.from_status,
        status=event.to_status,
        occurred_at=event.created_at,
    )
