"""The event log's order: positions every reader can trust, with no row every writer shares.

Every committed change to a payment is an audit event (`payment_event`), and each event
has a position. Subscribers resume `after` a position, so the positions must promise:
once a reader has been given position P, no event below P can still commit. Two ways
to keep that promise:

- Hand positions out under one lock held until commit (payql did, with a counter row):
  positions are commit-ordered, but every write transaction in the service waits on
  every other one: two customers paying two orders queue on one row, on every host.
- Let writers take positions freely, and make readers wait for the ones still in
  flight. That is what this module does.

On PostgreSQL an event's position is (xid, id): the id of the transaction that wrote
it (`pg_current_xact_id()`) and a number from the table's sequence. Readers (the
backlog of a subscription, the live hub, `liveCursor`) deliver only events whose
transaction is below the horizon: the oldest transaction still running when the reader
looked (`pg_snapshot_xmin(pg_current_snapshot())`). Every transaction below it has
ended, so every event below it that will ever exist is visible already; sorted by
(xid, id) they form a prefix that never grows in the middle. A transaction still open
only holds back *delivery*, by as long as it stays open. payql never holds a
transaction open across a gateway call (the write path's three phases), so that is
milliseconds, and no writer ever waits for another.

Per payment, the order is also the order of commit. A row lock (FOR UPDATE) would not
do that by itself: it gives the transaction its xid when it starts to wait, and of two
waiters the younger may get the row first (seen here: ids 12 and 13 of one payment
written by xids 1854 and 1849). So a change first takes an advisory lock on its
payment (`serialize`), which needs no xid; its first write comes after, and so does
its xid: of two changes to one payment, the one that went first has the lower xid,
and its events the lower ids.

SQLite has one writer at a time (the database's lock, and one connection per process
under Tortoise's own lock): an event's id, given at its insert, is commit-ordered
already. There its position is (0, id), and the horizon is infinite.

Events written before positions had two parts (the counter's numbers) have xid 0:
they sort before every newer one, so their old cursors still work.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, RawSQL

from models.tables import Counter, PaymentEvent

Position = tuple[int, int]  # (xid, id)
START: Position = (0, 0)
NO_HORIZON = 2**63 - 1
# The sequence behind payment_event.id on PostgreSQL (its BIGSERIAL).
SEQUENCE = "payment_event_id_seq"
INSTALLATION = "installation"
HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


def is_postgres(conn: Any) -> bool:
    return bool(conn.capabilities.dialect == "postgres")


def position(event: PaymentEvent) -> Position:
    return (event.xid, event.id)


async def take_positions(conn: Any, count: int) -> tuple[int, list[int]] | None:
    """For `count` events of the writing transaction `conn`: its xid and as many ids
    from the sequence, in one round trip (PostgreSQL). None on SQLite, where the
    insert gives the id."""
    if not is_postgres(conn):
        return None
    _, rows = await conn.execute_query(
        "SELECT pg_current_xact_id()::text::bigint AS xid, "
        f"nextval('{SEQUENCE}') AS id FROM generate_series(1, $1)",
        [count],
    )
    return int(rows[0]["xid"]), sorted(int(r["id"]) for r in rows)


async def serialize(conn: Any, payment_id: str) -> None:
    """Wait for this payment's other changes, before this transaction writes anything
    (PostgreSQL; SQLite has one writer). Held until commit."""
    await hold(conn, payment_id)


async def hold(conn: Any, name: str) -> None:
    """Take the transaction-long lock named `name` (PostgreSQL: an advisory lock; on
    SQLite, one writer at a time already)."""
    if is_postgres(conn):
        await conn.execute_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [name])


async def horizon() -> int:
    """Every event with an xid below this has committed or never will."""
    conn = PaymentEvent._meta.db
    if not is_postgres(conn):
        return NO_HORIZON
    _, rows = await conn.execute_query(f"SELECT {HORIZON} AS horizon")
    return int(rows[0]["horizon"])


async def newer(mark: Position, limit: int) -> tuple[list[PaymentEvent], int]:
    """The events after `mark` that have committed, oldest first, and the horizon, in
    one statement (its own snapshot gives both, so they agree)."""
    query = PaymentEvent.filter(after(mark)).order_by("xid", "id").limit(limit)
    if not is_postgres(PaymentEvent._meta.db):
        return await query, NO_HORIZON
    rows = await query.annotate(horizon=RawSQL(HORIZON))
    first: Any = rows[0] if rows else None  # annotated with the horizon
    return rows, (int(first.horizon) if first is not None else NO_HORIZON)


def after(mark: Position) -> Q:
    xid, id_ = mark
    return Q(xid__gt=xid) | Q(xid=xid, id__gt=id_)


async def final(query: Any) -> Any:
    """The query, limited to events that can no longer be preceded by another."""
    return query.filter(xid__lt=await horizon())


async def end() -> Position:
    """The newest final position: every change up to it can be read now."""
    newest = await (await final(PaymentEvent.all())).order_by("-xid", "-id").first()
    return position(newest) if newest is not None else START


async def resolve(event_id: int) -> Position | None:
    """The position of the event with this id (0: the start), None if there is none."""
    if event_id == 0:
        return START
    row = await PaymentEvent.filter(id=event_id).only("id", "xid").first()
    return position(row) if row is not None else None


# -- cursors: positions a reader was given, and so final ----------------------------
#
# A cursor is not an event id. An event's id may be seen (in a mutation's answer, a
# webhook, a payment's `events`) before every event below its position has
# committed; resuming after it could skip those. A cursor is handed out only by a
# reader (a subscription's message, `liveCursor`), below the horizon: nothing below
# it can still commit.


def cursor(installation: str, mark: Position) -> str:
    """cur_<installation>_<xid>_<id>: where a reader stands."""
    return f"cur_{installation}_{mark[0]}_{mark[1]}"


def parse_cursor(installation: str, text: str) -> Position | None:
    """The position a cursor of this installation names; None for anything else. Old
    cursors (evt_<n>, from before cursors had their own form) name an event from
    before positions had two parts: final, so they still serve."""
    parts = text.split("_")
    numbers = [p for p in parts[1:] if p.isascii() and p.isdigit() and len(p) <= 19]
    if parts[0] == "evt" and len(parts) == 2 and len(numbers) == 1:
        return (0, int(numbers[0]))  # resolved against the table: see legacy_position
    if parts[0] != "cur" or len(parts) != 4 or parts[1] != installation or len(numbers) != 2:
        return None
    return (int(numbers[0]), int(numbers[1]))


async def legacy_position(event_id: int) -> Position | None:
    """An old cursor's event, if it is one from before positions had two parts."""
    found = await resolve(event_id)
    return found if found is not None and found[0] == 0 else None


# -- public ids: unique across installations ---------------------------------------


async def installation() -> str:
    """This installation's id, made once and kept in the database: in every public
    event id, so that two installations' events never collide at one receiver."""
    made = int.from_bytes(secrets.token_bytes(5), "big") or 1
    try:
        row, _ = await Counter.get_or_create(name=INSTALLATION, defaults={"value": made})
    except IntegrityError:  # another worker made it first
        row = await Counter.get(name=INSTALLATION)
    return base64.b32encode(row.value.to_bytes(5, "big")).decode().lower()


def public_id(installation: str, event_id: int) -> str:
    """evt_<installation>_<id>: an audit event's id (in the API and in merchants'
    webhooks); not a cursor (see `cursor`)."""
    return f"evt_{installation}_{event_id}" if installation else f"evt_{event_id}"
