"""The event log: every committed change is a message, with the payment as it left it,
in an order readers can resume from (models/event_log.py), on both databases."""

from __future__ import annotations

import asyncio
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients import Client, Subscription, cursor_number
from conftest import pay, place_order, refund
from gateway_support import post_webhook, stripe_event
from servers import LiveServer
from tortoise.transactions import in_transaction

from gateways.base import RefundOutcome, RefundState
from models import event_log
from models.rules import EventSource
from models.tables import Payment
from models.write_path import append_events
from resolvers import subscriptions

WATCH = """
subscription ($paymentId: ID, $after: ID) {
  paymentStatusChanged(paymentId: $paymentId, after: $after) {
    cursor type previousStatus status
    payment {
      status capturedAmount refundedAmount refundableAmount
      refunds { amount status }
      disputes { status }
      events { id }
    }
  }
}
"""

TRAIL = "query ($id: ID!) { payment(id: $id) { events { id type } } }"
CAPTURE = """mutation ($id: ID!, $amount: Decimal) {
  capturePayment(id: $id, amount: $amount) { payment { status } errors { code message } }
}"""


def shown(message: dict[str, Any]) -> tuple[Any, ...]:
    p = message["payment"]
    return (message["type"], message["status"], p["refundedAmount"], len(p["refunds"]))


async def read_until(sub: Subscription, count: int) -> list[dict[str, Any]]:
    return [(await sub.next())["paymentStatusChanged"] for _ in range(count)]


async def test_every_change_arrives_live_with_its_type_and_the_amounts_of_that_moment(
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    completed_payment: dict[str, Any],
) -> None:
    # given an admin watching a completed USD 64.99 payment
    payment_id = completed_payment["id"]
    token = server.token("admin", role="admin")
    async with Subscription.connect(server.url, http, token) as sub:
        await sub.ack()
        await sub.subscribe(WATCH, paymentId=payment_id)
        start = (await sub.next())["paymentStatusChanged"]
        assert (start["status"], start["payment"]["refundedAmount"]) == ("COMPLETED", "0.00")
        # when a tenth is refunded three times
        live = []
        for _ in range(3):
            assert (await refund(admin, payment_id, amount="6.50"))["errors"] == []
        live += await read_until(sub, 7)
        # then each refund arrives, reserved then made, with the amounts of that moment
        assert [shown(m) for m in live] == [
            ("refund.created", "COMPLETED", "0.00", 1),
            ("refund.succeeded", "COMPLETED", "6.50", 1),
            ("payment.status_changed", "PARTIALLY_REFUNDED", "6.50", 1),
            ("refund.created", "PARTIALLY_REFUNDED", "6.50", 2),
            ("refund.succeeded", "PARTIALLY_REFUNDED", "13.00", 2),
            ("refund.created", "PARTIALLY_REFUNDED", "13.00", 3),
            ("refund.succeeded", "PARTIALLY_REFUNDED", "19.50", 3),
        ]
        assert [(m["previousStatus"], m["status"]) for m in live[:3]] == [
            ("COMPLETED", "COMPLETED"),
            ("COMPLETED", "COMPLETED"),
            ("COMPLETED", "PARTIALLY_REFUNDED"),
        ]
        # when a refund fails at the gateway
        server.simulated.inject("refund", RefundState("", RefundOutcome.FAILED, "card closed"))
        await refund(admin, payment_id, amount="1.00")
        failed = await read_until(sub, 2)
        # then it is sent too, and the payment shows the failed refund beside the others
        assert [shown(m) for m in failed] == [
            ("refund.created", "PARTIALLY_REFUNDED", "19.50", 4),
            ("refund.failed", "PARTIALLY_REFUNDED", "19.50", 4),
        ]
        assert failed[1]["payment"]["refunds"][-1] == {"amount": "1.00", "status": "FAILED"}
        assert failed[1]["payment"]["refundableAmount"] == "45.49"
        # when a dispute is opened, then closed, at the gateway
        dispute = {
            "id": f"dp_{payment_id}",
            "object": "dispute",
            "amount": 6499,
            "currency": "usd",
            "reason": "fraudulent",
            "status": "needs_response",
            "payment_intent": completed_payment["gatewayTransactionId"],
        }
        for kind, status in (("created", "needs_response"), ("closed", "lost")):
            event = stripe_event(f"charge.dispute.{kind}", {**dispute, "status": status})
            assert (await post_webhook(http, server, event)).status_code == 200
        disputed = await read_until(sub, 2)
        assert [(m["type"], m["payment"]["disputes"]) for m in disputed] == [
            ("dispute.created", [{"status": "needs_response"}]),
            ("dispute.closed", [{"status": "lost"}]),
        ]
        # when a refund is made in the gateway's dashboard, and its webhook arrives
        charge = {
            "id": "ch_dashboard",
            "object": "charge",
            "payment_intent": completed_payment["gatewayTransactionId"],
            "refunds": {
                "data": [{"id": f"re_dash_{payment_id}", "amount": 50, "status": "succeeded"}]
            },
        }
        assert (
            await post_webhook(http, server, stripe_event("charge.refunded", charge))
        ).is_success
        outside = await read_until(sub, 2)
        assert [shown(m) for m in outside] == [
            ("refund.created", "PARTIALLY_REFUNDED", "19.50", 5),
            ("refund.succeeded", "PARTIALLY_REFUNDED", "20.00", 5),
        ]
        # (one transaction made both: each event has the lists as they stood at it)
        assert [m["payment"]["refunds"][-1] for m in outside] == [
            {"amount": "0.50", "status": "PENDING"},
            {"amount": "0.50", "status": "SUCCEEDED"},
        ]
    received = live + failed + disputed + outside
    # and what was sent is the audit trail, change for change
    trail = (await admin(TRAIL, id=payment_id))["payment"]["events"]
    numbers = [cursor_number(e["id"]) for e in trail]
    first_sent = numbers.index(cursor_number(start["cursor"])) + 1
    assert [(cursor_number(m["cursor"]), m["type"]) for m in received] == [
        (cursor_number(e["id"]), e["type"]) for e in trail[first_sent:]
    ]
    # and each message's payment has the history up to that change, no further
    for message in received:
        assert cursor_number(message["payment"]["events"][-1]["id"]) == cursor_number(
            message["cursor"]
        )
    # when a subscriber resumes from each of those cursors
    for n, message in enumerate([start, *received[:-1]]):
        async with Subscription.connect(server.url, http, token) as again:
            await again.ack()
            await again.subscribe(WATCH, paymentId=payment_id, after=message["cursor"])
            replayed = await read_until(again, len(received) - n)
        # then it gets exactly the rest, as it happened then (not as the payment is now)
        assert replayed == received[n:]


async def test_a_partial_capture_arrives_with_the_amount_captured(
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    authorized_payment: dict[str, Any],
) -> None:
    # given a subscriber to an authorized USD 64.99 payment
    payment_id = authorized_payment["id"]
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe(WATCH, paymentId=payment_id)
        assert (await sub.next())["paymentStatusChanged"]["status"] == "AUTHORIZED"
        # when 20.00 of it is captured
        captured = await admin(CAPTURE, id=payment_id, amount="20.00")
        assert captured["capturePayment"]["errors"] == []
        trail = (await admin(TRAIL, id=payment_id))["payment"]["events"]
        news = await read_until(sub, 2)
    # then the request and the capture arrive, the capture with what was taken
    assert [m["type"] for m in news] == [e["type"] for e in trail[-2:]]
    assert (news[0]["status"], news[0]["payment"]["capturedAmount"]) == ("AUTHORIZED", "0.00")
    assert (news[1]["previousStatus"], news[1]["status"]) == ("AUTHORIZED", "COMPLETED")
    assert news[1]["payment"]["capturedAmount"] == "20.00"


async def test_a_cursor_from_another_installation_is_refused(
    server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any]
) -> None:
    # given this installation's own cursors
    installation = server.service.installation
    assert installation and len(installation) == 8
    # when a subscriber resumes with a cursor another installation gave
    foreign = event_log.cursor("zzzzzzzz" if installation != "zzzzzzzz" else "yyyyyyyy", (0, 1))
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe(WATCH, paymentId=completed_payment["id"], after=foreign)
        # then it is told so, and nothing is replayed
        assert await sub.refusal() == "VALIDATION"


async def test_a_long_backlog_is_replayed_a_page_at_a_time_with_nothing_missed(
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    completed_payment: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given pages of two changes, and a cursor from before three refunds (seven changes)
    monkeypatch.setattr(subscriptions, "BACKLOG_PAGE", 2)
    start = (await admin("{ liveCursor }"))["liveCursor"]
    for _ in range(3):
        assert (await refund(admin, completed_payment["id"], amount="1.00"))["errors"] == []
    trail = (await admin(TRAIL, id=completed_payment["id"]))["payment"]["events"]
    token = server.token("admin", role="admin")
    async with Subscription.connect(server.url, http, token) as sub:
        await sub.ack()
        # when a subscriber resumes after it
        await sub.subscribe(WATCH, paymentId=completed_payment["id"], after=start)
        replayed = await read_until(sub, 7)
    # then it gets the seven, in order, across four pages
    assert [cursor_number(m["cursor"]) for m in replayed] == [
        cursor_number(e["id"]) for e in trail[-7:]
    ]


async def test_an_event_id_is_not_a_cursor(
    admin: Client, server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any]
) -> None:
    # given an event id, seen in the payment's trail (it may be seen before every
    # change below its position has committed: resuming after it could skip those)
    trail = (await admin(TRAIL, id=completed_payment["id"]))["payment"]["events"]
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        # when it is passed as `after`
        await sub.subscribe(WATCH, paymentId=completed_payment["id"], after=trail[-1]["id"])
        # then it is refused, and nothing is replayed
        assert await sub.refusal() == "VALIDATION"


async def test_two_payments_changed_at_once_never_wait_on_each_other(
    backend: str,
    alice: Client,
    server: LiveServer,
    completed_payment: dict[str, Any],
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has one writer: only PostgreSQL can show writers not waiting")
    # given a change to one payment whose transaction stays open after its event is
    # appended (a slow commit: every lock it takes is held)
    holding, release = threading.Event(), threading.Event()  # across the two loops
    order = await place_order(alice)

    async def slow_change() -> None:
        async with in_transaction() as conn:
            await event_log.serialize(conn, completed_payment["id"])
            payment = (
                await Payment.select_for_update().using_db(conn).get(id=completed_payment["id"])
            )
            await append_events(
                conn, payment, EventSource.ADMIN, payment.updated_at, [note("test.slow")]
            )
            holding.set()
            while not release.is_set():  # noqa: ASYNC110 (a thread's event: across loops)
                await asyncio.sleep(0.005)

    async def waiting_on_locks() -> int:
        conn = Payment._meta.db
        _, rows = await conn.execute_query(
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(rows[0]["n"])

    slow = asyncio.ensure_future(server.on_server_loop(slow_change()))
    while not holding.is_set():  # noqa: ASYNC110 (a thread's event: across loops)
        await asyncio.sleep(0.005)
    try:
        # when another customer pays another order meanwhile, while a probe watches for
        # any backend waiting on a lock
        waits: list[int] = []
        paying = asyncio.ensure_future(pay(alice, order["id"], token="pm_card_visa"))
        while not paying.done():
            waits.append(await server.on_server_loop(waiting_on_locks()))
            if waits[-1]:
                break  # (the counter row did this: every write queued behind the open one)
            await asyncio.sleep(0.005)
        # then no backend ever waited on a lock, and the payment completes while the
        # first change is still open
        assert waits and max(waits) == 0
        assert (await paying)["payment"]["status"] == "COMPLETED"
        assert not slow.done()
    finally:
        release.set()
        await asyncio.wait_for(slow, 10)


def note(type_: str) -> dict[str, Any]:
    return {"type": type_, "from_status": None, "to_status": None, "data": {}}


OLD_ROWS = [
    """INSERT INTO customer_order (id, number, customer_id, customer_name, customer_email,
         currency, total, status, stock_restored, version, created_at, updated_at)
       VALUES ('ord_old', '000001', 'cus_old', 'Old', 'old@example.com', 'USD', 1299,
         'PAID', false, 1, '2026-11-01T10:00:00+00:00', '2026-11-01T10:00:00+00:00')""",
    """INSERT INTO payment (id, order_id, customer_id, amount, currency, status,
         payment_method, capture_method, gateway, metadata, captured, refunded,
         refund_pending, version, created_at, updated_at)
       VALUES ('pay_old', 'ord_old', 'cus_old', 1299, 'USD', 'COMPLETED', 'CREDIT_CARD',
         'AUTOMATIC', 'simulated', '{}', 1299, 0, 0, 1, '2026-11-01T10:00:00+00:00',
         '2026-11-01T10:00:01+00:00')""",
    """INSERT INTO payment_event (id, payment_id, type, from_status, to_status, source,
         data, created_at)
       VALUES (1, 'pay_old', 'payment.created', NULL, 'PENDING', 'API', '{}',
         '2026-11-01T10:00:00+00:00'),
              (2, 'pay_old', 'payment.status_changed', 'PENDING', 'COMPLETED', 'GATEWAY',
         '{}', '2026-11-01T10:00:01+00:00')""",
    "INSERT INTO counter (name, value) VALUES ('event', 2), ('order', 1)",
]


async def test_a_database_from_before_the_event_log_keeps_its_cursors_and_history(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from servers import base_settings, database, running_server

    from payql.app import MIGRATIONS, engine_of, migrate_database

    with database(backend, tmp_path_factory.mktemp("old")) as url:
        # given a database migrated as it was before the event log, with a payment
        # and its two events, numbered by the counter row
        older = tmp_path_factory.mktemp("migrations")
        engine = engine_of(url)
        shutil.copytree(MIGRATIONS / engine, older / engine)
        for newer in (older / engine / "models").glob("4_*"):
            newer.unlink()
        await in_own_loop(migrate_at(url, older / engine))
        await in_own_loop(run_sql(url, OLD_ROWS))
        # when it is migrated now, and served
        await in_own_loop(migrate_database(url))
        settings = replace(base_settings(url), generate_schemas=False)
        with running_server(settings) as server:
            async with httpx.AsyncClient(timeout=30) as http:
                token = server.token("admin", role="admin")
                async with Subscription.connect(server.url, http, token) as sub:
                    await sub.ack()
                    # then an old cursor still resumes: the old change is replayed,
                    # with the state its history had reached
                    await sub.subscribe(WATCH, paymentId="pay_old", after="evt_1")
                    old = (await sub.next())["paymentStatusChanged"]
                    assert (old["cursor"], old["type"], old["status"]) == (
                        f"cur_{server.service.installation}_0_2",
                        "payment.status_changed",
                        "COMPLETED",
                    )
                    assert old["payment"]["capturedAmount"] == "12.99"
                # and new events are numbered after the old ones
                admin = Client(server.url, token, http)
                order = await place_order(admin)
                cursor = (await admin("{ liveCursor }"))["liveCursor"]
                assert int(cursor.rsplit("_", 1)[1]) == 2
                paid_now = await pay(admin, order["id"], token="pm_card_visa")
                trail = (await admin(TRAIL, id=paid_now["payment"]["id"]))["payment"]["events"]
                assert all(int(e["id"].rsplit("_", 1)[1]) > 2 for e in trail)


async def migrate_at(url: str, location: Path) -> None:
    from aerich import Command

    from payql.app import tortoise_config

    command = Command(tortoise_config=tortoise_config(url), app="models", location=str(location))
    await command.init()
    try:
        await command.upgrade(run_in_transaction=True)
    finally:
        await command.aclose()


async def run_sql(url: str, statements: list[str]) -> None:
    from tortoise import Tortoise

    from payql.app import tortoise_config

    await Tortoise.init(config=tortoise_config(url))
    try:
        conn = Tortoise.get_connection(engine_of_url(url))
        for statement in statements:
            await conn.execute_script(statement)
    finally:
        await Tortoise.close_connections()


def engine_of_url(url: str) -> str:
    return url.partition(":")[0]


async def in_own_loop(coro: Any) -> Any:
    """Run on a loop and ORM of its own, in a thread (the session's loop has its own)."""
    return await asyncio.to_thread(asyncio.run, coro)


async def test_the_installation_id_is_made_once_and_kept_across_restarts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from servers import base_settings, database, running_server

    with database("sqlite", tmp_path_factory.mktemp("installation")) as url:
        # given a service started on a new database, then started again on it
        ids = []
        for _ in range(2):
            with running_server(base_settings(url)) as server:
                ids.append(server.service.installation)
        # then both had the same installation id, the one in every public event id
        assert ids[0] == ids[1] and len(ids[0]) == 8
