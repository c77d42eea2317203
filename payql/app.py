"""App assembly: settings in, a Starlette app out (routes plus lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from tortoise.contrib.starlette import RegisterTortoise

from gateways import create_gateway
from gateways.base import Gateway
from gateways.simulated import SimulatedGateway
from models import TORTOISE_MODULES
from models.catalog import seed_catalog
from models.commands import PaymentService, ensure_counters
from payql.settings import Settings
from resolvers.auth import AuthError, actor_from_header
from resolvers.broadcast import make_broadcast
from resolvers.context import Context
from resolvers.live import Hub
from resolvers.simulated import confirm_endpoint
from resolvers.webhooks import webhook_endpoint
from schema.schema import schema

log = logging.getLogger("payql")


MIGRATIONS = Path(__file__).resolve().parent.parent / "models" / "migrations"


def engine_of(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


async def migrate_database(database_url: str) -> list[str]:
    """Bring the database to the current schema with aerich; returns what was applied.

    Migrations are kept per engine (SQL differs): models/migrations/<engine>/."""
    from aerich import Command

    command = Command(
        tortoise_config=tortoise_config(database_url),
        app="models",
        location=str(MIGRATIONS / engine_of(database_url)),
    )
    await command.init()
    try:
        applied: list[str] = await command.upgrade(run_in_transaction=True)
    finally:
        await command.aclose()
    return applied


def tortoise_config(database_url: str) -> dict[str, Any]:
    # The connection is named after its engine: Tortoise caches INSERT statements per
    # connection name, so one name reused for another engine would send it the wrong SQL.
    engine = database_url.partition(":")[0] or "default"
    return {
        "connections": {engine: database_url},
        "apps": {"models": {"models": TORTOISE_MODULES, "default_connection": engine}},
        "use_tz": True,
        "timezone": "UTC",
    }


class PayqlGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view, with our context and token checks."""

    def __init__(self, settings: Settings, service: PaymentService, hub: Hub) -> None:
        super().__init__(
            schema,
            graphql_ide=None if settings.production else "graphiql",
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
            multipart_uploads_enabled=False,
        )
        self.settings = settings
        self.service = service
        self.hub = hub

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        context = Context(service=self.service, actor=None, live=self.hub)
        if isinstance(request, WebSocket):
            context.streaming = True  # the token comes in connection_init
            return context
        try:
            context.actor = actor_from_header(
                self.settings.jwt_secret, request.headers.get("authorization")
            )
        except AuthError as exc:
            context.auth_error = str(exc)
            if isinstance(response, Response):
                response.status_code = 401
        return context

    async def on_ws_connect(self, context: Context) -> None:
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        header = params.get("Authorization") or params.get("authorization")
        try:
            context.actor = actor_from_header(
                self.settings.jwt_secret, header if isinstance(header, str) else None
            )
        except AuthError as exc:
            raise ConnectionRejectionError({"reason": str(exc)}) from None


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_gateways(settings: Settings) -> dict[str, Gateway]:
    gateways: dict[str, Gateway] = {"manual": create_gateway("manual")}
    if settings.simulated_gateway:
        gateways["simulated"] = SimulatedGateway(
            latency_ms=settings.simulated_latency_ms,
            webhook_secret=settings.simulated_webhook_secret,
        )
    if settings.stripe_secret_key:
        gateways["stripe"] = create_gateway(
            "stripe",
            secret_key=settings.stripe_secret_key,
            webhook_secret=settings.stripe_webhook_secret,
            api_base=settings.stripe_api_base or None,
        )
    return gateways


def build_service(settings: Settings, hub: Hub) -> PaymentService:
    return PaymentService(
        gateways=build_gateways(settings),
        publisher=hub,
        refund_window=timedelta(days=settings.refund_window_days),
        card_gateway=settings.card_gateway,
    )


async def sweep(service: PaymentService, every: float) -> None:
    """Reconcile now (a restart after a crash) and then every `every` seconds."""
    while True:
        try:
            summary = await service.reconcile()
            if summary["changed"] or summary["failed"]:
                log.info("reconciled: %s", summary)
        except Exception:  # the next round tries again
            log.exception("reconciliation failed")
        await asyncio.sleep(every)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    hub = Hub(make_broadcast(settings.broadcast_url))
    service = build_service(settings, hub)
    simulated = service.gateways.get("simulated")
    graphql = PayqlGraphQL(settings, service, hub)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with RegisterTortoise(
            app,
            config=tortoise_config(settings.database_url),
            # Throwaway test databases only: everywhere else `payql migrate` (which
            # `payql serve` runs first) brings the schema.
            generate_schemas=settings.generate_schemas,
        ):
            await ensure_counters()
            if settings.seed_catalog:
                created = await seed_catalog()
                if created:
                    log.info("seeded the demo catalog with %d products", created)
            await hub.start()  # connects the broadcast, and reconnects it when lost
            sweeper = None
            if settings.reconcile_every_s:
                sweeper = asyncio.create_task(sweep(service, settings.reconcile_every_s))
            try:
                yield
            finally:
                if sweeper is not None:
                    sweeper.cancel()
                if isinstance(simulated, SimulatedGateway):
                    await simulated.drain()
                await hub.stop()

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz),
        Route("/webhooks/{gateway}", webhook_endpoint(service), methods=["POST"], name="webhook"),
    ]
    if isinstance(simulated, SimulatedGateway):
        routes.append(Route("/simulated/confirm", confirm_endpoint(simulated), methods=["POST"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.hub = hub
    return app
