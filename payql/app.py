"""App assembly: settings in, a Starlette app out (routes plus lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cross_web import HTTPException
from graphql import GraphQLError
from opentelemetry.trace import TracerProvider
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult as StrawberryResult
from tortoise import Tortoise
from tortoise.context import TortoiseContext, _current_context

from gateways import GatewayNotFound, create_gateway, gateway_factory, option_names
from gateways.base import Gateway, GatewayConfigError
from gateways.simulated import SimulatedGateway
from models import TORTOISE_MODULES
from models.catalog import seed_catalog
from models.dispatcher import Dispatcher, MailboxMailer, Mailer, SmtpMailer
from models.outbox import Outbox
from models.write_path import AttemptLimits, PaymentService, ensure_counters
from payql import pages, trusted
from payql.drain import Drain, DrainGuard
from payql.graphql_http import GraphQLOverHTTP
from payql.graphql_ws import GraphQLWebsocket
from payql.logs import install_redaction
from payql.ops import Metrics, healthz, readyz
from payql.security import BodyLimit, RequestLog, SecurityHeaders, WebsocketGuard, client_ip
from payql.settings import PAYPAL_SANDBOX, Settings, option_setting
from payql.tracing import TraceRequests, Tracing, trace_gateways
from resolvers.auth import AuthError, actor_from_header
from resolvers.broadcast import make_broadcast
from resolvers.context import Context
from resolvers.live import Hub
from resolvers.simulated import confirm_endpoint
from resolvers.webhooks import webhook_endpoint
from schema.schema import Limits, PayqlSchema, build_schema

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


async def make_migration(engine: str, name: str) -> str | None:
    """Write the next migration for one engine from the models (no database needed)."""
    from aerich import Command

    url = "sqlite://:memory:" if engine == "sqlite" else "postgres://localhost/offline"
    command = Command(
        tortoise_config=tortoise_config(url), app="models", location=str(MIGRATIONS / engine)
    )
    await command.init(offline=True)
    try:
        made: str | None = await command.migrate(name, no_input=True, offline=True)
    finally:
        await command.aclose()
    return made


def tortoise_config(database_url: str) -> dict[str, Any]:
    # The connection is named after its engine: Tortoise caches INSERT statements per
    # connection name, so one name reused for another engine would send it the wrong SQL.
    engine = database_url.partition(":")[0] or "default"
    return {
        "connections": {engine: with_pool_size(database_url)},
        "apps": {"models": {"models": TORTOISE_MODULES, "default_connection": engine}},
        "use_tz": True,
        "timezone": "UTC",
    }


# Connections per process on PostgreSQL unless the URL says (?maxsize=N): Tortoise's
# own default of 5 starves 64 concurrent requests. Transactions here are short (no
# gateway call is made inside one), so a pool this size keeps up with many more.
POOL_SIZE = 20


def with_pool_size(database_url: str) -> str:
    parts = urlsplit(database_url)
    postgres = parts.scheme in ("postgres", "postgresql", "asyncpg", "psycopg")
    if not postgres or "maxsize=" in parts.query or "minsize=" in parts.query:
        return database_url  # a URL that sizes its own pool keeps it
    query = f"{parts.query}&maxsize={POOL_SIZE}" if parts.query else f"maxsize={POOL_SIZE}"
    return urlunsplit(parts._replace(query=query))


@contextlib.contextmanager
def orm_context(orm: TortoiseContext) -> Iterator[None]:
    """Make `orm` the current ORM context here. Not `with orm:`, whose one saved token
    per context object would be overwritten by concurrent requests."""
    token = _current_context.set(orm)
    try:
        yield
    finally:
        _current_context.reset(token)


class OrmContext:
    """Runs each request and websocket in its app's own ORM context (app.state.orm,
    made by the lifespan): Tortoise's contexts are per task, and uvicorn's connection
    tasks do not descend from the lifespan's."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        orm = getattr(scope["app"].state, "orm", None) if scope["type"] != "lifespan" else None
        if orm is None:
            await self.app(scope, receive, send)
            return
        with orm_context(orm):
            await self.app(scope, receive, send)


def schema_for(settings: Settings, tracing: bool = False) -> PayqlSchema:
    """The schema as these settings make it: their limits, their trusted documents
    (TrustedDocumentsError, naming the entry, for a manifest that cannot be used)."""
    limits = Limits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_query_cost,
        production=settings.production,
    )
    return build_schema(
        limits, settings.trusted_documents, settings.trusted_documents_only, tracing=tracing
    )


class PayqlGraphQL(GraphQLOverHTTP[Context, None]):
    """Strawberry's ASGI view, answering as GraphQL over HTTP says (media types and
    status codes: payql/graphql_http.py), with our context and token checks."""

    def __init__(
        self, settings: Settings, service: PaymentService, hub: Hub, tracing: bool = False
    ) -> None:
        schema = schema_for(settings, tracing)
        super().__init__(
            schema,
            # Production: no IDE (and the schema refuses introspection).
            graphql_ide=None if settings.production else "graphiql",
            # No subscriptions over HTTP streams, which would dodge the websocket's
            # limits: the websocket on this URL is payql's own (payql/graphql_ws.py).
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
            # CSRF: queries only by GET; POST only as JSON (a form can't send that);
            # no multipart. Mutations over GET are refused (405).
            allow_queries_via_get=True,
            multipart_uploads_enabled=False,
            # A browser's websocket must come from our own origin or an allowed one
            # (cross-site websocket hijacking).
            allowed_origins=settings.allowed_origins,
        )
        self.settings = settings
        self.service = service
        self.hub = hub
        self.trusted = schema.trusted
        self.schema: PayqlSchema = schema

    async def execute_operation(
        self,
        request: Any,
        request_adapter: Any,
        request_data: Any,
        context: Context,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        # No token, no GraphQL: refused before the document is even parsed, so an
        # anonymous caller can neither load the server nor map the schema.
        if context.actor is None:
            reason = context.auth_error or "not authenticated"
            return StrawberryResult(
                data=None, errors=[GraphQLError(reason, extensions={"code": "UNAUTHENTICATED"})]
            )
        # A trusted document named by its id: its text in the request (payql/trusted.py).
        refused = await trusted.resolve_http(self.trusted, request_adapter, request_data)
        if refused is not None:
            return StrawberryResult(data=None, errors=[refused])
        return await super().execute_operation(
            request=request,
            request_adapter=request_adapter,
            request_data=request_data,
            context=context,
            root_value=root_value,
            sub_response=sub_response,
        )

    def parse_json(self, data: str | bytes) -> Any:
        # Strawberry fails with a 500 on a body that is JSON but not an object, and on
        # one nested past Python's recursion limit (both found by fuzzing and review):
        # say what is wrong instead. A list goes on to the batching check.
        try:
            parsed = super().parse_json(data)
        except (RecursionError, ValueError):
            raise HTTPException(400, "Unable to parse request body as JSON") from None
        if not isinstance(parsed, dict | list):
            raise HTTPException(
                400, 'the body must be a JSON object: {"query": "…", "variables": {…}}'
            )
        return parsed

    def should_render_graphql_ide(self, request: Any) -> bool:
        return super().should_render_graphql_ide(request) and not trusted.names_a_document(
            request.query_params
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        # payql's own GraphiQL page, its assets served by payql (payql/pages.py).
        return await pages.graphiql(request)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        # (never a websocket: those are payql/graphql_ws.py's)
        state = request.scope.get("state", {})
        context = Context(
            service=self.service,
            actor=None,
            live=self.hub,
            request_id=state.get("request_id"),
            client_ip=client_ip(request.scope),
            notes=state.get("log", {}),
        )
        try:
            context.actor = actor_from_header(
                self.settings.jwt_secret, request.headers.get("authorization")
            )
        except AuthError as exc:
            context.auth_error = str(exc)
            if isinstance(response, Response):
                # 401 whichever media type answers (the refusal comes before GraphQL).
                response.status_code = 401
                challenge = 'Bearer realm="payql"'
                if "authorization" in request.headers:
                    challenge += ', error="invalid_token"'
                response.headers["www-authenticate"] = challenge
        return context


def build_gateways(settings: Settings) -> tuple[dict[str, Gateway], dict[str, str]]:
    """The gateways this service can use, and the plug-ins that failed to load, each
    with why (naming the setting to fix). One that fails never stops the others."""
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
    unavailable: dict[str, str] = {}
    if settings.paypal_client_id:
        try:
            gateways["paypal"] = create_gateway(
                "paypal",
                client_id=settings.paypal_client_id,
                client_secret=settings.paypal_client_secret,
                webhook_id=settings.paypal_webhook_id,
                api_base=settings.paypal_api_base,
                return_url=settings.paypal_return_url,
                cancel_url=settings.paypal_cancel_url,
            )
        except GatewayConfigError as exc:
            setting = f"PAYQL_PAYPAL_{exc.option.upper()}"
            log.error("the paypal gateway is not set up: %s (set %s)", exc.message, setting)
            unavailable["paypal"] = f"the paypal gateway is not set up (see {setting})"
        else:
            if settings.production and settings.paypal_api_base.startswith(PAYPAL_SANDBOX):
                log.warning("PayPal is on its sandbox (PAYQL_PAYPAL_API_BASE) in production")
            if not settings.paypal_webhook_id:
                log.warning("PAYQL_PAYPAL_WEBHOOK_ID is not set: PayPal webhooks are refused")
    for name in settings.gateways:
        # What clients are told stays short (the setting's name at most); the log
        # has the details, which may hold a path or a plug-in's own words.
        try:
            factory = gateway_factory(name)
            options = _plugin_options(name, option_names(factory), settings)
            gateway = factory(**options)
        except GatewayConfigError as exc:
            setting = option_setting(name, exc.option)
            log.error("the %s gateway is not set up: %s (set %s)", name, exc.message, setting)
            unavailable[name] = f"the {name} gateway is not set up (see {setting})"
        except GatewayNotFound as exc:
            log.error("%s (PAYQL_GATEWAYS lists it)", exc)
            unavailable[name] = f"the {name} gateway is not installed"
        except Exception:  # a plug-in's own failure: an import error, a bug
            log.exception(
                "the %s gateway could not be loaded: check its package and its "
                "PAYQL_GATEWAY_%s_* settings",
                name,
                name.upper(),
            )
            unavailable[name] = (
                f"the {name} gateway could not be loaded (the server's log says why)"
            )
        else:
            if getattr(gateway, "name", None) != name:
                log.error("the %s gateway calls itself %r", name, getattr(gateway, "name", None))
                unavailable[name] = f"the {name} gateway could not be loaded (its name differs)"
            else:
                gateways[name] = gateway
    if unavailable:
        log.error("gateways not working: %s; the others work", ", ".join(sorted(unavailable)))
    return gateways, unavailable


def _plugin_options(name: str, declared: tuple[str, ...], settings: Settings) -> dict[str, str]:
    """A plug-in's options: PAYQL_GATEWAY_<NAME>_<OPTION> for each option it declares,
    by exact name (so `acme` never sees `acme_eu`'s). A variable under its prefix that
    names no option, and belongs to no other listed gateway, is likely a typo: said."""
    env = settings.gateway_env
    wanted = {option_setting(name, option): option for option in declared}
    prefix = option_setting(name, "")
    others = [option_setting(other, "") for other in settings.gateways if other != name]
    for variable in env:
        if (
            variable.startswith(prefix)
            and variable not in wanted
            and not any(variable.startswith(o) for o in others)
        ):
            log.warning(
                "%s is not an option of the %s gateway (its options: %s)",
                variable,
                name,
                ", ".join(declared) or "none",
            )
    return {option: env[variable] for variable, option in wanted.items() if variable in env}


def build_outbox(settings: Settings) -> Outbox:
    return Outbox(
        emails=settings.customer_emails,
        shop=settings.shop_name,
        give_up_after=timedelta(hours=settings.notify_give_up_hours),
        allow_private=settings.webhook_allow_private,
    )


def build_dispatcher(settings: Settings) -> Dispatcher:
    """Delivers the outbox: SMTP when PAYQL_SMTP_URL is set, else (customer emails on,
    development) .eml files in PAYQL_MAILBOX_DIR."""
    mailer: Mailer | None = None
    if settings.smtp_url:
        mailer = SmtpMailer(settings.smtp_url)
    elif settings.customer_emails:
        mailer = MailboxMailer(Path(settings.mailbox_dir).resolve())
    return Dispatcher(
        mailer=mailer,
        mail_from=settings.mail_from,
        allow_private=settings.webhook_allow_private,
        retry_base=settings.notify_retry_base_ms / 1000,
        retention=timedelta(days=settings.retention_days) if settings.retention_days else None,
    )


def build_service(settings: Settings, hub: Hub) -> PaymentService:
    gateways, unavailable = build_gateways(settings)
    return PaymentService(
        outbox=build_outbox(settings),
        gateways=gateways,
        unavailable=unavailable,
        publisher=hub,
        refund_window=timedelta(days=settings.refund_window_days),
        card_gateway=settings.card_gateway,
        paypal_gateway=settings.paypal_gateway,
        attempt_limits=AttemptLimits(
            per_customer=settings.failed_payments_per_customer,
            per_ip=settings.failed_payments_per_ip,
            window=timedelta(seconds=settings.failed_payments_window_s),
        ),
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


def create_app(
    settings: Settings | None = None, tracer_provider: TracerProvider | None = None
) -> Starlette:
    """The app. `tracer_provider`: trace with this one (tests give an SDK provider of
    their own) rather than as the settings say (payql/tracing.py)."""
    settings = settings or Settings.from_env()
    tracing = Tracing.of(settings, tracer_provider)
    hub = Hub(make_broadcast(settings.broadcast_url))
    service = build_service(settings, hub)
    if tracing.enabled:
        trace_gateways(service.gateways)
    simulated = service.gateways.get("simulated")
    dispatcher = build_dispatcher(settings)
    wake = asyncio.Event()  # a commit wrote notifications: deliver them now
    service.outbox.wake = wake.set
    graphql = PayqlGraphQL(settings, service, hub, tracing=tracing.enabled)
    drain = Drain(settings.shutdown_grace_s)
    websocket = GraphQLWebsocket(
        graphql.schema,
        service,
        hub,
        jwt_secret=settings.jwt_secret,
        allowed_origins=settings.allowed_origins,
        operations_per_connection=settings.subscriptions_per_connection,
        outbox_size=hub.queue_size,
    )
    # /metrics: open in development; in production only with PAYQL_METRICS_TOKEN.
    metrics = Metrics(
        hub,
        token=settings.metrics_token,
        enabled=bool(settings.metrics_token) or not settings.production,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # This app's own ORM context, never a process-wide one: every request enters it
        # (OrmContext below), and so does everything started here. Two apps in one
        # process (tests) never share a database by accident.
        orm = await Tortoise.init(
            config=tortoise_config(settings.database_url), _enable_global_fallback=False
        )
        app.state.orm = orm
        with orm_context(orm):
            try:
                async with _serving(app):
                    yield
            finally:
                await Tortoise.close_connections()
                # The last spans sent (in a thread: an exporter may wait on its collector).
                await asyncio.to_thread(tracing.close)

    @contextlib.asynccontextmanager
    async def _serving(app: Starlette) -> AsyncIterator[None]:
        if settings.generate_schemas:
            # Throwaway test databases only: everywhere else `payql migrate` (which
            # `payql serve` runs first) brings the schema.
            await Tortoise.generate_schemas()
        install_redaction()  # when run by plain uvicorn/gunicorn, with their log config
        drain.on_sigterm()  # a graceful stop drains first (payql/drain.py)
        service.installation = await ensure_counters()
        if settings.seed_catalog:
            created = await seed_catalog()
            if created:
                log.info("seeded the demo catalog with %d products", created)
        await hub.start()  # connects the broadcast, and reconnects it when lost
        # What start-up made (modules, the schema, the ORM's models) lives as long
        # as the process: frozen out of the collector, full collections skip it.
        gc.collect()
        gc.freeze()
        sweeper = dispatching = None
        if settings.reconcile_every_s:
            sweeper = asyncio.create_task(sweep(service, settings.reconcile_every_s))
        if settings.dispatch_in_server:
            dispatching = asyncio.create_task(
                dispatcher.run(settings.dispatch_every_ms / 1000, wake)
            )
            if isinstance(dispatcher.mailer, MailboxMailer):
                log.info("customer emails go to %s (no PAYQL_SMTP_URL)", dispatcher.mailer.folder)
        try:
            yield
        finally:
            for task in (sweeper, dispatching):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await dispatcher.aclose()
            if isinstance(simulated, SimulatedGateway):
                await simulated.drain()
            for gateway in service.gateways.values():
                close = getattr(gateway, "aclose", None)
                if close is not None:
                    await close()
            await hub.stop()

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", websocket),
        Route("/healthz", healthz),
        Route("/readyz", readyz(hub, service)),
        Route("/metrics", metrics.endpoint),
        Route(
            "/webhooks/{gateway}",
            webhook_endpoint(service, observe=metrics.observe_webhook),
            methods=["POST"],
            name="webhook",
        ),
        Route("/dashboard", pages.dashboard),
        Mount("/static", app=pages.static_files(), name="static"),
    ]
    if isinstance(simulated, SimulatedGateway):
        routes += [
            Route("/simulated/confirm", confirm_endpoint(simulated), methods=["POST"]),
            Route("/simulated/paypal", pages.simulated_paypal),
        ]
        if not settings.production:  # the demo pays with test cards, in development only
            routes += [
                Route("/demo/checkout", pages.demo_checkout),
                Route("/demo/token", pages.demo_token(settings), methods=["POST"]),
            ]
    middleware = [  # outermost first
        Middleware(DrainGuard, drain=drain),
        Middleware(OrmContext),
        Middleware(SecurityHeaders, production=settings.production),
        Middleware(RequestLog, observe=metrics.observe_request),
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id"],
            max_age=600,
        ),
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        Middleware(WebsocketGuard, per_ip=settings.websockets_per_ip),
    ]
    if tracing.tracer is not None:  # outermost: the request's span holds all of it
        middleware.insert(0, Middleware(TraceRequests, tracer=tracing.tracer))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.hub = hub
    app.state.websocket = websocket
    app.state.metrics = metrics
    app.state.dispatcher = dispatcher
    app.state.tracing = tracing
    app.state.drain = drain
    return app
