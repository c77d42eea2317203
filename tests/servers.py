"""Test support: real payql servers (uvicorn in a thread, or `payql serve` in a process
of its own), fresh databases, and a private Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import uvicorn

from gateways.simulated import SimulatedGateway
from models.write_path import PaymentService
from payql.app import create_app, orm_context
from payql.settings import Settings
from resolvers.auth import mint_token

POSTGRES_URL = os.environ.get("PAYQL_TEST_DATABASE_URL", "").strip()
REDIS_URL = os.environ.get("PAYQL_TEST_REDIS_URL", "").strip()


class LiveServer:
    """payql served by uvicorn in a thread of the test process, over real HTTP."""

    def __init__(self, settings: Settings, tracer_provider: Any = None, ws: str = "auto") -> None:
        self.settings = settings
        self.app = create_app(settings, tracer_provider=tracer_provider)
        # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that
        # say they are TCP; without it every response waits ~40 ms on a delayed ACK.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # ws: uvicorn's websocket implementation (auto: websockets' sans-I/O one)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", ws=ws)  # type: ignore[arg-type]
        self._server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[self._sock])

        asyncio.run(serve())

    async def on_server_loop(self, coro: Any) -> Any:
        """Run a coroutine on the server's own event loop, in its ORM context (and with
        its hub)."""
        assert self.loop is not None
        orm = self.app.state.orm

        async def within() -> Any:
            with orm_context(orm):
                return await coro

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(within(), self.loop))

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the payql test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    @property
    def service(self) -> PaymentService:
        service: PaymentService = self.app.state.service
        return service

    @property
    def simulated(self) -> SimulatedGateway:
        gateway = self.service.gateways["simulated"]
        assert isinstance(gateway, SimulatedGateway)
        return gateway

    def token(self, sub: str, role: str = "customer", email: str | None = None) -> str:
        return mint_token(
            self.settings.jwt_secret, sub=sub, role=role, email=email or f"{sub}@example.com"
        )


def base_settings(database_url: str) -> Settings:
    # No periodic reconciliation: the tests that need it call it, at the moment they choose.
    return Settings(
        database_url=database_url,
        jwt_secret=secrets.token_hex(32),
        reconcile_every_s=0,
        generate_schemas=True,  # a throwaway database; `payql serve` tests migrate instead
        # The whole suite pays from one address, and some customers decline often: the
        # card-testing limits are set by the tests that test them (`attempt_limits`).
        allowed_origins=("https://shop.example",),
        failed_payments_per_customer=0,
        failed_payments_per_ip=0,
        websockets_per_ip=1000,
        # Customers' emails are the notification tests' own (with a real SMTP server).
        customer_emails=False,
    )


@contextmanager
def running_server(
    settings: Settings, tracer_provider: Any = None, ws: str = "auto"
) -> Iterator[LiveServer]:
    server = LiveServer(settings, tracer_provider, ws=ws).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh, empty database of the kind asked for; dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite://{tmp / f'payql-{secrets.token_hex(4)}.sqlite3'}"
        return
    name = f"payql_test_{secrets.token_hex(6)}"
    _run_sync(_pg_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(POSTGRES_URL)
    scheme = "postgres" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    try:
        yield urlunsplit((scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        _run_sync(_pg_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _run_sync(coro: Any) -> None:
    """Run a coroutine to completion on a loop of its own (fixtures may be inside one)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def wait_until_healthy(
    url: str, process: subprocess.Popen[bytes], why: Callable[[], str], seconds: float = 30
) -> None:
    """Wait for a server process to answer /healthz; fail with `why()` if it exits or
    takes longer than `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(why())
        time.sleep(0.1)


@contextmanager
def payql_serve(
    env: dict[str, str],
    port: int,
    processes: list[subprocess.Popen[bytes]] | None = None,
    workers: int = 0,
    log: Path | None = None,
) -> Iterator[str]:
    """`payql serve` in a process of its own; stopped with SIGTERM, as a supervisor would.
    The process is appended to `processes`, for a test that kills it otherwise. Its log
    (stderr) goes to `log`, or to a temporary file shown if it fails to start."""
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "payql.log"
        stderr = stack.enter_context(log.open("wb"))
        process = subprocess.Popen(
            [sys.executable, "-m", "payql.cli", "serve", "--port", str(port)]
            + (["--workers", str(workers)] if workers else []),
            # No receipts into the working directory's mailbox unless a test asks.
            env={"PAYQL_CUSTOMER_EMAILS": "0", **os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        if processes is not None:
            processes.append(process)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(
                url, process, lambda: f"payql serve did not start: {log.read_text()!r}"
            )
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    process = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while (
        subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip()
        != b"PONG"
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
