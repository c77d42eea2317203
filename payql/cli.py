"""The `payql` command: serve, migrate, makemigrations, token, seed-demo, reconcile,
dispatch, schema."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import TextIO

from payql.settings import Settings, SettingsError


def _token(settings: Settings, sub: str, role: str, email: str | None, days: float = 30) -> str:
    from resolvers.auth import mint_token

    return mint_token(
        settings.jwt_secret, sub=sub, role=role, email=email, ttl=timedelta(days=days)
    )


def migrate(settings: Settings) -> list[str]:
    from payql.app import migrate_database

    applied = asyncio.run(migrate_database(settings.database_url))
    print(f"migrated: applied {', '.join(applied)}" if applied else "migrated: up to date")
    return applied


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    migrate(settings)
    base = f"http://{host}:{port}"
    print(f"payql on {base} ({settings.env}; database {settings.database_url})")
    if not settings.production:
        admin = _token(settings, "admin", "admin", "admin@example.com")
        customer = _token(settings, "cus_demo", "customer", "demo@example.com")
        # The token rides in the fragment: the browser keeps it, no server log sees it.
        print("\nGraphiQL, signed in (development tokens, valid 30 days):")
        print(f"  as an admin:    {base}/graphql#token={admin}")
        print(f"  as a customer:  {base}/graphql#token={customer}")
        print(f"Dashboard, signed in as an admin: {base}/dashboard#token={admin}")
        if settings.simulated_gateway:
            print(f"Demo checkout (test cards):       {base}/demo/checkout")
        print(f'For curl: -H "Authorization: Bearer {admin}"\n', flush=True)
    from payql.logs import logging_config

    uvicorn.run(
        "payql.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers or None,
        log_config=logging_config(settings.log_json),
        access_log=False,  # payql logs each request itself, with its id
        ws_max_size=settings.max_body_bytes,
        # permessage-deflate keeps ~45 KB of zlib state per websocket, for messages of
        # a few hundred bytes (bench/run.py --memory-profile): off.
        ws_per_message_deflate=False,
        # payql drains first (PAYQL_SHUTDOWN_GRACE_S, payql/drain.py); what is still
        # running after that is cancelled a second later.
        timeout_graceful_shutdown=1,
    )


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal; elsewhere (a log, a
    CI job) a line at each tenth, so the output stays readable."""

    WIDTH = 30

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.shown = -1
        self.started = time.monotonic()

    def __call__(self, done: int) -> None:
        if self.total <= 0:
            return
        tenth = done * 10 // self.total
        if not self.tty and tenth == self.shown and done != self.total:
            return
        self.shown = tenth
        filled = done * self.WIDTH // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        elapsed = time.monotonic() - self.started
        line = f"{self.label} [{bar}] {done}/{self.total} ({elapsed:.1f} s)"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def seed_demo(settings: Settings, orders: int) -> None:
    from tortoise import Tortoise

    from models.catalog import seed_catalog
    from models.write_path import AttemptLimits, ensure_counters
    from payql.app import build_service, tortoise_config
    from payql.demo import seed_history
    from resolvers.broadcast import make_broadcast
    from resolvers.live import Hub

    migrate(settings)

    async def run() -> tuple[int, Counter[str]]:
        await Tortoise.init(config=tortoise_config(settings.database_url))
        # With a shared broadcast (Redis), a running dashboard sees them arrive.
        hub = Hub(make_broadcast(settings.broadcast_url))
        await hub.start()
        try:
            installation = await ensure_counters()
            created = await seed_catalog()
            if not orders:
                return created, Counter()
            # Test cards on the simulated gateway only, whatever else is configured (a
            # Stripe key must never see these); seeded declines are not card testing.
            # No receipts for a made-up history.
            service = replace(
                build_service(replace(settings, customer_emails=False), hub),
                card_gateway="simulated",
                attempt_limits=AttemptLimits(0, 0),
                installation=installation,
            )
            tally = await seed_history(service, orders, Progress("seeding orders", orders))
            return created, tally
        finally:
            await hub.stop()
            await Tortoise.close_connections()

    if orders and (settings.production or not settings.simulated_gateway):
        print(
            "payql: seed-demo --orders makes test payments: development only, with the "
            "simulated gateway",
            file=sys.stderr,
        )
        raise SystemExit(2)
    created, tally = asyncio.run(run())
    print(f"seeded {created} products" if created else "the catalog already has products")
    if orders:
        print(f"seeded {orders} orders:")
        for outcome, count in tally.most_common():
            print(f"  {count:6d}  {outcome}")


def reconcile(settings: Settings) -> None:
    from tortoise import Tortoise

    from models.write_path import ensure_counters
    from payql.app import build_service, tortoise_config
    from resolvers.broadcast import make_broadcast
    from resolvers.live import Hub

    async def run() -> dict[str, int]:
        await Tortoise.init(config=tortoise_config(settings.database_url))
        hub = Hub(make_broadcast(settings.broadcast_url))  # changes reach subscribers too
        await hub.start()
        try:
            progress: Progress | None = None

            def step(done: int, total: int) -> None:
                nonlocal progress
                if progress is None:
                    progress = Progress("reconciling", total)
                progress(done)

            service = build_service(settings, hub)
            service.installation = await ensure_counters()  # in its webhooks' event ids
            return await service.reconcile(progress=step)
        finally:
            await hub.stop()
            await Tortoise.close_connections()

    summary = asyncio.run(run())
    print(
        f"reconciled: {summary['checked']} checked, {summary['changed']} changed, "
        f"{summary['waiting']} still waiting for an answer, {summary['failed']} gateway errors"
    )


def dispatch(settings: Settings, once: bool) -> None:
    """Deliver the outbox in a process of its own (beside servers with
    PAYQL_DISPATCH_IN_SERVER=0, or any number of them: rows are claimed one by one)."""
    import signal

    from tortoise import Tortoise

    from payql.app import build_dispatcher, tortoise_config
    from payql.logs import install_redaction

    async def run() -> int:
        await Tortoise.init(config=tortoise_config(settings.database_url))
        install_redaction()
        dispatcher = build_dispatcher(settings)
        try:
            if once:
                done = await dispatcher.drain()
                await dispatcher.prune()
                return done
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            print("dispatching notifications; stop with Ctrl-C", flush=True)
            worker = asyncio.create_task(
                dispatcher.run(settings.dispatch_every_ms / 1000, asyncio.Event())
            )
            await stop.wait()
            worker.cancel()
            return 0
        finally:
            await dispatcher.aclose()
            await Tortoise.close_connections()

    delivered = asyncio.run(run())
    if once:
        print(f"dispatched: {delivered} attempted")


def make_migrations(name: str, engine: str | None) -> None:
    if engine is None:
        # One process per engine: Tortoise and aerich keep global state that would mix
        # one engine's changes into the other's migration.
        for each in ("sqlite", "postgres"):
            subprocess.run(
                [sys.executable, "-m", "payql.cli", "makemigrations", name, "--engine", each],
                check=True,
            )
        return
    from payql.app import make_migration

    made = asyncio.run(make_migration(engine, name))
    print(f"{engine}: wrote {made}" if made else f"{engine}: no changes")


def print_schema() -> None:
    """The SDL of the schema `payql serve` serves (development's: production serves the
    same types, only without introspection)."""
    from schema.schema import schema

    print(schema.as_str())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="payql", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the API (GraphiQL in development)")
    serve_cmd.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve_cmd.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve_cmd.add_argument("--workers", type=int, default=0)
    token_cmd = commands.add_parser("token", help="mint a bearer token")
    token_cmd.add_argument("--role", choices=["customer", "admin"], default="customer")
    token_cmd.add_argument("--sub", required=True, help="the customer id (or admin name)")
    token_cmd.add_argument("--email")
    token_cmd.add_argument("--days", type=float, default=30, help="lifetime in days")
    seed_cmd = commands.add_parser(
        "seed-demo",
        help="create the demo catalog if it is empty; with --orders, a payment history too",
    )
    seed_cmd.add_argument(
        "--orders",
        type=int,
        default=0,
        help="orders to create, paid in every way (simulated gateway): successes, declines, "
        "3-D Secure, authorizations, offline payments, refunds",
    )
    commands.add_parser(
        "reconcile", help="ask the gateways about payments a lost answer left unresolved"
    )
    dispatch_cmd = commands.add_parser(
        "dispatch", help="deliver customers' emails and merchants' webhooks (a worker)"
    )
    dispatch_cmd.add_argument(
        "--once", action="store_true", help="deliver what is due now, then exit"
    )
    commands.add_parser("migrate", help="bring the database to the current schema")
    make_cmd = commands.add_parser(
        "makemigrations", help="after a model change: write the next migration for each engine"
    )
    make_cmd.add_argument("name", help="a short name, e.g. add_client_ip")
    make_cmd.add_argument("--engine", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    commands.add_parser(
        "schema", help="print the served schema as SDL (codegen: payql schema > schema.graphql)"
    )
    args = parser.parse_args(argv)
    if args.command == "schema":  # the code's own schema: no settings needed
        print_schema()
        return 0

    try:
        settings = Settings.from_env()
        if args.command == "serve":
            from payql.trusted import check_manifest

            check_manifest(settings)  # a bad manifest stops here, before migrating
    except SettingsError as exc:
        print(f"payql: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        serve(settings, args.host, args.port, args.workers)
    elif args.command == "token":
        print(_token(settings, args.sub, args.role, args.email, args.days))
    elif args.command == "seed-demo":
        if args.orders < 0:
            parser.error("--orders must be zero or more")
        seed_demo(settings, args.orders)
    elif args.command == "reconcile":
        reconcile(settings)
    elif args.command == "dispatch":
        dispatch(settings, args.once)
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "makemigrations":
        make_migrations(args.name, args.engine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
