"""Operations endpoints: /healthz (alive), /readyz (can serve), /metrics (Prometheus).

/metrics uses a registry of the app's own, not prometheus-client's process-global
one, so that several apps in one process (the tests) never mix their figures.
Counters are kept as requests and webhooks happen; payments, refunds and live
subscribers are counted when Prometheus scrapes, from the database and the hub.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from tortoise.functions import Count

from models.tables import Payment, Refund
from models.write_path import PaymentService
from resolvers.live import Hub

log = logging.getLogger("payql.ops")

READY_TIMEOUT_S = 2.0
# Operations are counted by type and first root field, names from the schema; past
# this many (a guard, should the schema grow), the rest count as one "other".
MAX_OPERATIONS = 200
# Request kinds: the HTTP methods payql serves, and websockets; anything else "other".
KINDS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "WS"})


async def healthz(request: Request) -> Response:
    """Alive: the process answers. (Whether it can serve is /readyz.)"""
    return JSONResponse({"status": "ok"})


def readyz(hub: Hub, service: PaymentService) -> Any:
    async def ready(request: Request) -> Response:
        """Ready: the database answers, the broadcast is connected and the card gateway
        loaded. 503 otherwise, saying which, so a load balancer sends traffic
        elsewhere meanwhile (and a deploy whose card gateway is broken never looks
        healthy)."""
        checks = {
            "database": await _database_ok(),
            "broadcast": hub.connected,
            "card_gateway": service.card_gateway in service.gateways,
        }
        ok = all(checks.values())
        body = {
            "status": "ready" if ok else "unavailable",
            **{name: "ok" if good else "unavailable" for name, good in checks.items()},
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    return ready


async def _database_ok() -> bool:
    try:
        connection = Payment._meta.db  # the connection the models use
        await asyncio.wait_for(connection.execute_query("SELECT 1"), READY_TIMEOUT_S)
        return True
    except Exception as exc:  # any failure means not ready; say why in the log
        log.warning("readiness: the database is unavailable (%s)", type(exc).__name__)
        return False


class Metrics:
    def __init__(self, hub: Hub, token: str = "", enabled: bool = True) -> None:
        self.hub = hub
        self.token = token
        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "payql_requests",
            "Requests served, by kind (GET, POST, WS, …), GraphQL operation (its type and "
            "first root field) and status class.",
            ["kind", "operation", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "payql_request_seconds",
            "Time to serve a request (a websocket: how long it stayed open), by kind.",
            ["kind"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600),
        )
        self.webhooks = Counter(
            "payql_webhooks",
            "Verified webhooks received, by gateway and outcome (applied, ignored, "
            "duplicate, retry).",
            ["gateway", "outcome"],
            registry=r,
        )
        self.webhook_lag = Histogram(
            "payql_webhook_lag_seconds",
            "From the gateway creating an event to payql receiving it, by gateway.",
            ["gateway"],
            registry=r,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 86400),
        )
        self.payments = Gauge(
            "payql_payments",
            "Payments in the database, by gateway and status.",
            ["gateway", "status"],
            registry=r,
        )
        self.refunds = Gauge(
            "payql_refunds", "Refunds in the database, by status.", ["status"], registry=r
        )
        self.subscribers = Gauge(
            "payql_live_subscribers",
            "Live-status subscriptions open in this process.",
            registry=r,
        )
        self._operations: set[str] = set()

    def observe_request(
        self, kind: str, operation: str | None, status: int, seconds: float
    ) -> None:
        """`operation`: the operation's type and first root field ("mutation
        refundPayment"), names from the schema; `kind`: the HTTP method or WS."""
        kind = kind if kind in KINDS else "other"
        name = operation or "-"
        if name not in self._operations:
            if len(self._operations) >= MAX_OPERATIONS:
                name = "other"
            else:
                self._operations.add(name)
        status_class = f"{status // 100}xx" if status else "-"
        self.requests.labels(kind, name, status_class).inc()
        self.request_seconds.labels(kind).observe(seconds)

    def observe_webhook(self, gateway: str, outcome: str, payload: Mapping[str, Any]) -> None:
        self.webhooks.labels(gateway, outcome).inc()
        created = payload.get("created") or payload.get("create_time")
        if isinstance(created, int | float) and not isinstance(created, bool):
            self.webhook_lag.labels(gateway).observe(max(0.0, time.time() - created))

    async def endpoint(self, request: Request) -> Response:
        if not self.enabled:
            return PlainTextResponse("Not Found", status_code=404)
        if self.token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return PlainTextResponse(
                    "a metrics token is required (Authorization: Bearer …)",
                    status_code=401,
                    headers={"www-authenticate": "Bearer"},
                )
        await self._count_now()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def _count_now(self) -> None:
        payments = (
            await Payment.annotate(n=Count("id"))
            .group_by("gateway", "status")
            .values("gateway", "status", "n")
        )
        refunds = await Refund.annotate(n=Count("id")).group_by("status").values("status", "n")
        self.payments.clear()
        for row in payments:
            self.payments.labels(row["gateway"], _value(row["status"])).set(row["n"])
        self.refunds.clear()
        for row in refunds:
            self.refunds.labels(_value(row["status"])).set(row["n"])
        self.subscribers.set(self.hub.count)


def _value(status: Any) -> str:
    return str(getattr(status, "value", status))
