"""The audit log and its broadcast: events appended with their positions (see
models/event_log.py: no row every writer shares) and the payment each change left
(models/snapshots.py); after the commit, one message that says the log grew.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tortoise.exceptions import IntegrityError

from models import event_log, snapshots
from models.rules import EventSource
from models.tables import Counter, Payment, PaymentEvent

ORDER_COUNTER = "order"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Committed:
    """The newest event of a committed change, as broadcast: small and flat. Live
    status reads the log itself (resolvers/live.py); this only says it grew."""

    xid: int
    event_id: int
    payment_id: str
    type: str

    def to_json(self) -> str:
        return json.dumps(
            {"xid": self.xid, "id": self.event_id, "paymentId": self.payment_id, "type": self.type},
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, text: Any) -> Committed | None:
        """What to_json wrote, or None for a message that is not one."""
        try:
            told = json.loads(text)
            return cls(int(told["xid"]), int(told["id"]), str(told["paymentId"]), told["type"])
        except (ValueError, KeyError, TypeError):
            return None


class Publisher(Protocol):
    async def publish(self, change: Committed) -> None: ...


class NoPublisher:
    async def publish(self, change: Committed) -> None:
        return None


async def append_events(
    conn: Any,
    payment: Payment,
    source: EventSource,
    now: datetime,
    specs: Sequence[Mapping[str, Any]],
) -> list[PaymentEvent]:
    """Append audit events, each with its position and a snapshot of the payment: the
    spec's "state" (the payment and its lists when the event happened in the
    transaction: core.Tx), or else the payment as it is now (a new payment: no lists)."""
    if not specs:
        return []
    now_state = snapshots.encode(snapshots.payment_state(payment), (), ())
    rows = [
        {
            **{k: v for k, v in spec.items() if k != "state"},
            "payment_id": payment.id,
            "source": source,
            "created_at": now,
            "snapshot": spec.get("state") or now_state,
        }
        for spec in specs
    ]
    taken = await event_log.take_positions(conn, len(rows))
    if taken is None:  # SQLite: the insert numbers them, in commit order
        return [await PaymentEvent.create(using_db=conn, **row) for row in rows]
    xid, ids = taken
    events = [PaymentEvent(id=id_, xid=xid, **row) for row, id_ in zip(rows, ids, strict=True)]
    await PaymentEvent.bulk_create(events, using_db=conn)
    return events


async def ensure_counters() -> str:
    """The counters the write path takes numbers from (order numbers); returns this
    installation's id (models/event_log.installation)."""
    try:
        await Counter.get_or_create(name=ORDER_COUNTER, defaults={"value": 0})
    except IntegrityError:  # another worker created it first
        pass
    return await event_log.installation()


def committed(events: Sequence[PaymentEvent]) -> Committed | None:
    """What to broadcast once these events are committed: the newest."""
    if not events:
        return None
    last = events[-1]
    return Committed(xid=last.xid, event_id=last.id, payment_id=last.payment_id, type=last.type)
