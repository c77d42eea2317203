"""Real payql processes: restarts, crashes, several hosts, migrations, dependencies failing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients import Client, Subscription
from conftest import pay, place_order
from httpx_ws import WebSocketDisconnect
from servers import POSTGRES_URL, REDIS_URL, database, free_port, payql_serve, private_redis

from resolvers.auth import mint_token


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
            payload: dict[str, Any] = await pay(
                client, order["id"], token="pm_card_authenticationRequired"
            )
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


@pytest.mark.skipif(not REDIS_URL, reason="Redis tests skipped: PAYQL_TEST_REDIS_URL is not set")
async def test_subscribers_on_one_host_see_mutations_and_webhooks_on_another(
    backend: str, tmp_path_factory: pytest.TempPathFactory, http: httpx.AsyncClient
) -> None:
    secret = secrets.token_hex(32)
    alice = mint_token(secret, sub="cus_alice", email="alice@example.com")
    admin = mint_token(secret, sub="admin", role="admin")
    with database(backend, tmp_path_factory.mktemp("hosts")) as url:
        env = {
            "PAYQL_DATABASE_URL": url,
            "PAYQL_JWT_SECRET": secret,
            "PAYQL_BROADCAST_URL": REDIS_URL,
        }
        # given two payql hosts on one database and one Redis, the second with two workers
        with (
            payql_serve(env, free_port()) as one,
            payql_serve(env, free_port(), workers=2) as two,
        ):
            order = await place_order(Client(one, alice, http))
            paid: dict[str, Any] = (
                await pay(Client(one, alice, http), order["id"], token="pm_card_visa")
            )["payment"]
            server = type("Host", (), {"url": two})
            async with Subscription.connect(server.url, http, alice) as sub:  # type: ignore[arg-type]
                await sub.ack()
                await sub.subscribe(
                    "subscription ($id: ID) { paymentStatusChanged(paymentId: $id) { status } }",
                    id=paid["id"],
                )
                assert (await sub.next())["paymentStatusChanged"]["status"] == "COMPLETED"
                # when an admin refunds it through the other host
                await Client(one, admin, http)(
                    """mutation ($id: ID!) { refundPayment(input: {paymentId: $id}) {
                         errors { code } } }""",
                    id=paid["id"],
                )
                # then the subscriber on this host sees it
                assert (await sub.next_move())["paymentStatusChanged"]["status"] == "REFUNDED"
            # given a payment waiting for 3-D Secure, watched on the first host
            order = await place_order(Client(two, alice, http))
            waiting: dict[str, Any] = await pay(
                Client(two, alice, http), order["id"], token="pm_card_authenticationRequired"
            )
            async with Subscription.connect(one, http, alice) as sub:
                await sub.ack()
                await sub.subscribe(
                    "subscription ($id: ID) { paymentStatusChanged(paymentId: $id) { status } }",
                    id=waiting["payment"]["id"],
                )
                assert (await sub.next())["paymentStatusChanged"]["status"] == "REQUIRES_ACTION"
                # when the gateway's webhook arrives at the second host
                confirmed = await http.post(
                    f"{two}/simulated/confirm",
                    json={"clientSecret": waiting["clientSecret"], "authenticate": True},
                )
                assert confirmed.json() == {"status": "succeeded"}
                # then the subscriber on the first host sees the payment complete
                assert (await sub.next_move())["paymentStatusChanged"]["status"] == "COMPLETED"


async def payql_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "payql.cli",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_a_payment_whose_process_died_after_the_gateway_call_is_reconciled(
    backend: str, tmp_path_factory: pytest.TempPathFactory, http: httpx.AsyncClient
) -> None:
    secret = secrets.token_hex(32)
    alice = mint_token(secret, sub="cus_alice", email="alice@example.com")
    with database(backend, tmp_path_factory.mktemp("crash")) as url:
        env = {
            "PAYQL_DATABASE_URL": url,
            "PAYQL_JWT_SECRET": secret,
            "PAYQL_RECONCILE_EVERY_S": "0",
        }
        slow = {**env, "PAYQL_SIMULATED_LATENCY_MS": "3000"}  # 1.5 s each way
        processes: list[subprocess.Popen[bytes]] = []
        with payql_serve(slow, free_port(), processes) as base:
            client = Client(base, alice, http)
            order = await place_order(client)
            paying = asyncio.create_task(pay(client, order["id"], token="pm_card_visa"))
            # given the gateway has charged the card (at 1.5 s) and its answer is on its
            # way back when the process is killed, before it can commit the outcome
            await asyncio.sleep(2.2)
            processes[0].kill()
            with pytest.raises(httpx.HTTPError):
                await paying
        # when `payql reconcile` runs
        returncode, out, err = await payql_cli(env, "reconcile")
        # then it finds the charge at the gateway and applies it
        assert returncode == 0, err
        assert "1 checked, 1 changed" in out
        assert "reconciling [" in err and "1/1" in err  # with its progress shown
        with payql_serve(env, free_port()) as base:
            client = Client(base, alice, http)
            data = await client(
                "query ($id: ID!) { order(id: $id) { status payments { status } } }",
                id=order["id"],
            )
            assert data["order"] == {"status": "PAID", "payments": [{"status": "COMPLETED"}]}
            # and nothing is left to reconcile, nor can the order be charged again
            assert "0 checked" in (await payql_cli(env, "reconcile"))[1]
            second = await pay(client, order["id"], token="pm_card_visa")
            assert [e["code"] for e in second["errors"]] == ["INVALID_STATE"]


async def test_migrate_brings_an_empty_database_to_the_schema_and_then_does_nothing(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with database(backend, tmp_path_factory.mktemp("migrate")) as url:
        env = {"PAYQL_DATABASE_URL": url}
        first = await payql_cli(env, "migrate")
        assert first[0] == 0, first[2]
        assert "applied 0_" in first[1] and "_init.py" in first[1]
        again = await payql_cli(env, "migrate")
        assert (again[0], again[1].strip()) == (0, "migrated: up to date")
        seeded = await payql_cli(env, "seed-demo")
        assert "seeded 8 products" in seeded[1]


async def test_seed_demo_makes_a_history_of_every_kind_through_the_write_path(
    backend: str, tmp_path_factory: pytest.TempPathFactory, http: httpx.AsyncClient
) -> None:
    secret = secrets.token_hex(32)
    admin = mint_token(secret, sub="admin", role="admin")
    with database(backend, tmp_path_factory.mktemp("seed")) as url:
        env = {"PAYQL_DATABASE_URL": url, "PAYQL_JWT_SECRET": secret}
        # when 60 orders are seeded
        code, out, err = await payql_cli(env, "seed-demo", "--orders", "60")
        assert code == 0, err
        # then it showed its progress, and says what it made
        assert "seeding orders [" in err and "60/60" in err
        assert "seeded 8 products" in out and "seeded 60 orders:" in out
        # and the history is there, as the API sees it: payments in several currencies,
        # succeeded, declined, waiting, refunded in part and in full
        with payql_serve(env, free_port()) as base:
            client = Client(base, admin, http)
            data = await client(
                """{ payments(first: 100) { total items {
                      status currency refundedAmount refunds { status } } } }"""
            )
    items = data["payments"]["items"]
    assert data["payments"]["total"] == len(items) > 50
    statuses = {p["status"] for p in items}
    assert {"COMPLETED", "FAILED", "REFUNDED", "PARTIALLY_REFUNDED"} <= statuses, statuses
    assert {"AUTHORIZED", "REQUIRES_ACTION", "PENDING"} & statuses, statuses
    assert len({p["currency"] for p in items}) >= 2
    refunded = [p for p in items if p["status"] in ("REFUNDED", "PARTIALLY_REFUNDED")]
    assert refunded and all(p["refunds"][0]["status"] == "SUCCEEDED" for p in refunded)


async def test_seed_demo_refuses_a_negative_number_of_orders_and_no_simulated_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with database("sqlite", tmp_path_factory.mktemp("seed-bad")) as url:
        code, _, err = await payql_cli({"PAYQL_DATABASE_URL": url}, "seed-demo", "--orders", "-1")
    assert code == 2 and "--orders must be zero or more" in err
    # nor does it make test payments where the simulated gateway is off (Stripe only)
    with database("sqlite", tmp_path_factory.mktemp("seed-off")) as url:
        env = {
            "PAYQL_DATABASE_URL": url,
            "PAYQL_SIMULATED_GATEWAY": "0",
            "PAYQL_STRIPE_SECRET_KEY": "sk_test_never_called",
        }
        code, _, err = await payql_cli(env, "seed-demo", "--orders", "5")
    assert code == 2 and "development only, with the simulated gateway" in err


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb in a temporary folder), stoppable."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found or shutil.which("su") is None or os.geteuid() != 0:
            pytest.skip("needs PostgreSQL's server binaries and root (to run them as postgres)")
        self.bin = found[-1].parent
        # Not under pytest's own temporary folder: the postgres user cannot reach it.
        self.folder = folder = Path(tempfile.mkdtemp(prefix="payql-pg-"))
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        shutil.chown(folder, "postgres")
        self._as_postgres(f"{self.bin}/initdb -D {folder}/data -A trust -U postgres")

    def _as_postgres(self, command: str) -> None:
        subprocess.run(["su", "postgres", "-c", command], check=True, capture_output=True)

    def start(self) -> None:
        self._as_postgres(
            f"{self.bin}/pg_ctl -D {self.folder}/data -w -l {self.folder}/log "
            f"-o '-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1' start"
        )

    def stop(self) -> None:
        self._as_postgres(f"{self.bin}/pg_ctl -D {self.folder}/data -w -m fast stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


async def test_postgresql_restarting_under_the_service_fails_requests_cleanly_then_recovers(
    http: httpx.AsyncClient,
) -> None:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests skipped: PAYQL_TEST_DATABASE_URL is not set")
    postgres = PrivatePostgres()
    postgres.start()
    secret = secrets.token_hex(32)
    admin = mint_token(secret, sub="admin", role="admin")
    env = {"PAYQL_DATABASE_URL": postgres.url, "PAYQL_JWT_SECRET": secret}
    try:
        with payql_serve(env, free_port()) as base:
            client = Client(base, admin, http)
            assert len((await client("{ products { sku } }"))["products"]) == 8
            # when PostgreSQL goes away
            postgres.stop()
            down = await client.post("{ products { sku } }")
            # then requests fail, answered, and the service stays up
            assert down["data"] is None and down["errors"]
            assert (await http.get(f"{base}/healthz")).status_code == 200
            # when it is back, requests succeed again with no restart of payql
            postgres.start()
            assert len((await client("{ products { sku } }"))["products"]) == 8
    finally:
        postgres.remove()


async def test_a_graceful_stop_finishes_requests_in_flight_and_closes_subscriptions(
    tmp_path_factory: pytest.TempPathFactory, http: httpx.AsyncClient
) -> None:
    secret = secrets.token_hex(32)
    alice = mint_token(secret, sub="cus_alice", email="alice@example.com")
    with database("sqlite", tmp_path_factory.mktemp("stop")) as url:
        env = {
            "PAYQL_DATABASE_URL": url,
            "PAYQL_JWT_SECRET": secret,
            "PAYQL_SIMULATED_LATENCY_MS": "2000",
        }
        processes: list[subprocess.Popen[bytes]] = []
        with payql_serve(env, free_port(), processes) as base:
            client = Client(base, alice, http)
            order = await place_order(client)
            async with Subscription.connect(base, http, alice) as sub:
                await sub.ack()
                await sub.subscribe(
                    "subscription ($id: ID) { paymentStatusChanged(orderId: $id) { status } }",
                    id=order["id"],
                )
                paying = asyncio.create_task(pay(client, order["id"], token="pm_card_visa"))
                await asyncio.sleep(0.5)  # the payment is at the gateway
                # when the service is asked to stop (SIGTERM, as a supervisor does)
                processes[0].terminate()
                await asyncio.sleep(0.3)
                # then new work is refused meanwhile, saying to try again
                async with httpx.AsyncClient() as fresh:  # a connection of its own
                    refused = await fresh.post(
                        f"{base}/graphql",
                        json={"query": "{ products { sku } }"},
                        headers={"Authorization": f"Bearer {alice}"},
                    )
                    ready = await fresh.get(f"{base}/readyz")
                assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
                assert refused.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
                assert ready.status_code == 503
                # and the payment in flight still completes
                paid = await paying
                assert paid["payment"]["status"] == "COMPLETED"
                # and the subscription is closed by the server, not cut
                with pytest.raises(WebSocketDisconnect) as closed:
                    while True:
                        await sub.receive()
                assert closed.value.code in (1000, 1001, 1012)


async def test_a_graceful_stop_waits_no_longer_than_its_grace(
    tmp_path_factory: pytest.TempPathFactory, http: httpx.AsyncClient
) -> None:
    secret = secrets.token_hex(32)
    alice = mint_token(secret, sub="cus_alice", email="alice@example.com")
    log = tmp_path_factory.mktemp("grace") / "payql.log"
    with database("sqlite", tmp_path_factory.mktemp("grace")) as url:
        env = {
            "PAYQL_DATABASE_URL": url,
            "PAYQL_JWT_SECRET": secret,
            "PAYQL_SIMULATED_LATENCY_MS": "20000",  # a gateway that hangs
            "PAYQL_SHUTDOWN_GRACE_S": "1",
        }
        processes: list[subprocess.Popen[bytes]] = []
        with payql_serve(env, free_port(), processes, log=log) as base:
            client = Client(base, alice, http)
            order = await place_order(client)
            paying = asyncio.create_task(pay(client, order["id"], token="pm_card_visa"))
            await asyncio.sleep(0.5)  # the payment is at the gateway
            # when the service is asked to stop
            stopped = time.monotonic()
            processes[0].terminate()
            # then it exits after its grace, not when the gateway would answer
            await asyncio.to_thread(processes[0].wait, 15)
            assert time.monotonic() - stopped < 10
            with contextlib.suppress(Exception):  # the request in flight was cut
                await paying
    assert "still in flight after 1 s" in log.read_text()


async def test_with_redis_gone_payments_go_on_and_subscriptions_end_clearly(
    tmp_path_factory: pytest.TempPathFactory, http: httpx.AsyncClient
) -> None:
    secret = secrets.token_hex(32)
    alice = mint_token(secret, sub="cus_alice", email="alice@example.com")
    redis_port = free_port()
    with database("sqlite", tmp_path_factory.mktemp("redis-gone")) as url:
        env = {
            "PAYQL_DATABASE_URL": url,
            "PAYQL_JWT_SECRET": secret,
            "PAYQL_BROADCAST_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        watch = "subscription ($id: ID) { paymentStatusChanged(orderId: $id) { status } }"
        with private_redis(redis_port) as redis_server, payql_serve(env, free_port()) as base:
            client = Client(base, alice, http)
            order = await place_order(client)
            async with Subscription.connect(base, http, alice) as sub:
                await sub.ack()
                await sub.subscribe(watch, id=order["id"])
                # when Redis goes away
                redis_server.terminate()
                redis_server.wait(timeout=10)
                # then the subscription ends with a clear message
                message = await sub.receive()
                assert "resubscribe with `after`" in json.dumps(message)
            # and payments go on
            paid = await pay(client, order["id"], token="pm_card_visa")
            assert paid["payment"]["status"] == "COMPLETED"
            # when Redis is back, live status works again, with no restart of payql
            with private_redis(redis_port):
                for _ in range(50):
                    other = await place_order(client)
                    async with Subscription.connect(base, http, alice) as sub:
                        await sub.ack()
                        await sub.subscribe(watch, id=other["id"])
                        await pay(client, other["id"], token="pm_card_visa")
                        with contextlib.suppress(TimeoutError):  # not reconnected yet
                            first = await sub.receive()
                            if first["type"] == "next" and not first["payload"].get("errors"):
                                break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError("live status never came back")
