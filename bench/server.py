"""The benchmark's server: payql's own app, plus bare Starlette routes doing the same
database work with the same ORM, as baselines. Bench-only: never in payql's app.

    uvicorn bench.server:create_bench_app --factory

- GET  /bare/payment/{id}: the same token check, the same row, the same fields as
  `payment(id)` in GraphQL, as plain JSON.
- WS   /bare/ws and POST /bare/push: N open websockets, each sent the same payload.
- POST /bare/pay: the writes of processPayment (payment and event rows, the order's
  version, the outcome in a second transaction) and, between them, the same call to
  the same simulated gateway (its wait, and the intent it keeps in its own tables).
  Its events are appended as the write path appends them: no row every writer shares.
- GET  /bare/sql: how many SQL statements the server has sent (for statement counts).
- POST /bare/restock: stock enough for any number of benchmark orders.
- GET  /bare/memory: with PYTHONTRACEMALLOC=1, what was allocated since the last call.
- GET  /bare/published: when the hub last published (time.perf_counter()).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import tracemalloc
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from tortoise.transactions import in_transaction

from gateways.base import ChargeRequest
from models import event_log, money
from models.access import one_payment
from models.ids import new_id
from models.rules import CaptureMethod, EventSource, OrderStatus, PaymentMethod, PaymentStatus
from models.tables import IdempotencyKey, Order, Payment, Product
from models.write_path import append_events, utcnow
from payql.app import create_app
from resolvers.auth import AuthError, actor_from_header


class StatementCounter(logging.Handler):
    """Counts the statements Tortoise's clients log (at DEBUG) as they send them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def create_bench_app() -> Starlette:
    app = create_app()
    settings = app.state.settings
    counter = StatementCounter()
    db_log = logging.getLogger("tortoise.db_client")
    db_log.addHandler(counter)
    db_log.propagate = False
    sockets: set[WebSocket] = set()
    gateway = app.state.service.gateways["simulated"]

    async def payment(request: Request) -> Response:
        try:
            actor = actor_from_header(settings.jwt_secret, request.headers.get("authorization"))
        except AuthError as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        row = await one_payment(actor, request.path_params["id"]).first()
        if row is None:
            return JSONResponse({"data": {"payment": None}})
        return JSONResponse({"data": {"payment": payment_fields(row)}})

    async def bare_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        sockets.add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            sockets.discard(websocket)

    async def push(request: Request) -> Response:
        payload = json.dumps(await request.json())
        await asyncio.gather(*(ws.send_text(payload) for ws in list(sockets)))
        return JSONResponse({"sent": len(sockets)})

    async def pay(request: Request) -> Response:
        actor = actor_from_header(settings.jwt_secret, request.headers.get("authorization"))
        body = await request.json()
        payment_id = new_id("pay")
        now = utcnow()
        async with in_transaction() as conn:
            key = await IdempotencyKey.create(
                using_db=conn,
                scope=f"{actor.scope}:bare",
                key=body["idempotencyKey"],
                fingerprint="-",
                resource_id=payment_id,
            )
            order = await Order.filter(id=body["orderId"]).select_for_update().using_db(conn).get()
            await Order.filter(id=order.id).using_db(conn).update(version=order.version + 1)
            created_row = await Payment.create(
                using_db=conn,
                id=payment_id,
                order_id=order.id,
                customer_id=actor.customer_id,
                amount=order.total,
                currency=order.currency,
                payment_method=PaymentMethod.CREDIT_CARD,
                capture_method=CaptureMethod.AUTOMATIC,
                gateway="simulated",
                metadata={},
            )
            await append_events(
                conn, created_row, EventSource.API, now, [created(PaymentStatus.PENDING)]
            )
        charge = ChargeRequest(
            reference=payment_id,
            amount=order.total,
            currency=order.currency,
            method=PaymentMethod.CREDIT_CARD.value,
            token="pm_card_visa",
            manual_capture=False,
            idempotency_key=f"payql-{payment_id}",
            metadata={"payql_payment_id": payment_id, "payql_order_id": order.id},
        )
        state = await gateway.charge(charge)  # the same gateway, outside any transaction
        async with in_transaction() as conn:
            await event_log.serialize(conn, payment_id)  # as the write path does
            row = await Payment.select_for_update().using_db(conn).get(id=payment_id)
            await (
                Payment.filter(id=row.id, version=row.version)
                .using_db(conn)
                .update(
                    status=PaymentStatus.COMPLETED,
                    captured=row.amount,
                    gateway_transaction_id=state.transaction_id,
                    version=row.version + 1,
                )
            )
            await append_events(
                conn, row, EventSource.GATEWAY, now, [created(PaymentStatus.COMPLETED)]
            )
            await Order.filter(id=row.order_id).using_db(conn).update(status=OrderStatus.PAID)
            await IdempotencyKey.filter(id=key.id).using_db(conn).update(completed=True)
        return JSONResponse({"data": {"payment": {"id": payment_id, "status": "COMPLETED"}}})

    async def restock(request: Request) -> Response:
        await Product.all().update(stock=10**9)
        return JSONResponse({"restocked": True})

    # When the hub was last asked to publish (perf_counter: CLOCK_MONOTONIC, which the
    # driver's clock is too), so the driver can time a fan-out from the publish on.
    hub = app.state.hub
    publish = hub.publish
    published: dict[str, float] = {"at": 0.0}

    async def timed_publish(change: Any) -> None:
        published["at"] = time.perf_counter()
        await publish(change)

    hub.publish = timed_publish

    async def last_publish(request: Request) -> Response:
        return JSONResponse(published)

    snapshots: list[Any] = []

    async def memory_diff(request: Request) -> Response:
        """With PYTHONTRACEMALLOC set: what was allocated since the previous call, by
        line, largest first (the first call only takes the starting snapshot)."""
        if not tracemalloc.is_tracing():
            return JSONResponse({"error": "start the server with PYTHONTRACEMALLOC=1"}, 400)
        snapshot = tracemalloc.take_snapshot()
        top: list[str] = []
        total = 0
        if snapshots:
            stats = snapshot.compare_to(snapshots[-1], "lineno")
            top = [str(stat) for stat in stats[: int(request.query_params.get("top", "25"))]]
            total = sum(stat.size_diff for stat in stats)
        snapshots[:] = [snapshot]
        return JSONResponse({"top": top, "total_bytes": total})

    async def statements(request: Request) -> Response:
        """The statement count; ?counting=1 or 0 turns counting on or off (it costs a
        log record per statement, so it is on only while a scenario counts)."""
        if "counting" in request.query_params:
            on = request.query_params["counting"] == "1"
            db_log.setLevel(logging.DEBUG if on else logging.WARNING)
        return JSONResponse({"statements": counter.count})

    app.router.routes.extend(
        [
            Route("/bare/payment/{id}", payment),
            WebSocketRoute("/bare/ws", bare_ws),
            Route("/bare/push", push, methods=["POST"]),
            Route("/bare/pay", pay, methods=["POST"]),
            Route("/bare/sql", statements),
            Route("/bare/restock", restock, methods=["POST"]),
            Route("/bare/memory", memory_diff),
            Route("/bare/published", last_publish),
        ]
    )
    return app


def created(status: PaymentStatus) -> dict[str, Any]:
    return {"type": "payment.status", "from_status": None, "to_status": status, "data": {}}


def payment_fields(row: Payment) -> dict[str, Any]:
    """What READ_PAYMENT asks GraphQL for, computed the same way."""
    return {
        "id": row.id,
        "status": row.status.value,
        "amount": str(money.to_major(row.amount, row.currency)),
        "currency": row.currency,
        "capturedAmount": str(money.to_major(row.captured, row.currency)),
        "refundedAmount": str(money.to_major(row.refunded, row.currency)),
        "createdAt": row.created_at.isoformat(),
    }
