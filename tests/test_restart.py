"""A real `payql serve` process, stopped and started again: nothing in flight is lost."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from conftest import PROCESS_PAYMENT, place_order
from support import Client, database

from resolvers.auth import mint_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def payql_serve(env: dict[str, str], port: int) -> Iterator[str]:
    """`payql serve` in a process of its own; stopped with SIGTERM, as a supervisor would."""
    process = subprocess.Popen(
        [sys.executable, "-m", "payql.cli", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"payql serve did not start: {process.stderr.read()!r}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()


async def test_a_payment_waiting_for_3d_secure_survives_a_restart(
    backend: str, tmp_path_factory: pytest.TempPathFactory, http: httpx.AsyncClient
) -> None:
    secret = secrets.token_hex(32)
    alice = mint_token(secret, sub="cus_alice", email="alice@example.com")
    port = free_port()
    with database(backend, tmp_path_factory.mktemp("restart")) as url:
        env = {"PAYQL_DATABASE_URL": url, "PAYQL_JWT_SECRET": secret}
        # given a payment waiting for 3-D Secure, made before a restart
        with payql_serve(env, port) as base:
            client = Client(base, alice, http)
            order = await place_order(client)
            payload: dict[str, Any] = (
                await client(
                    PROCESS_PAYMENT,
                    input={
                        "orderId": order["id"],
                        "paymentMethod": "CREDIT_CARD",
                        "token": "pm_card_authenticationRequired",
                    },
                )
            )["processPayment"]
            assert payload["payment"]["status"] == "REQUIRES_ACTION"
        # when the service is back and the customer completes 3-D Secure
        with payql_serve(env, port) as base:
            response = await http.post(
                f"{base}/simulated/confirm",
                json={"clientSecret": payload["clientSecret"], "authenticate": True},
            )
            assert (response.status_code, response.json()) == (200, {"status": "succeeded"})
            # then the payment completes, as if nothing had happened
            client = Client(base, alice, http)
            query = "query ($id: ID!) { paymentStatus(id: $id) }"
            for _ in range(200):
                status = (await client(query, id=payload["payment"]["id"]))["paymentStatus"]
                if status == "COMPLETED":
                    break
                await asyncio.sleep(0.05)
            assert status == "COMPLETED"
