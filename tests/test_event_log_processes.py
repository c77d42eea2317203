"""The event log across processes: many writers on two payql hosts, one admin who keeps
losing its connection and resuming with `after` (real PostgreSQL, Redis, processes)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from clients import Client, Subscription, cursor_number
from conftest import paid, refund
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from servers import POSTGRES_URL, REDIS_URL, database, free_port, payql_serve

from resolvers.auth import mint_token

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL and REDIS_URL),
    reason="PostgreSQL and Redis tests skipped: PAYQL_TEST_DATABASE_URL or "
    "PAYQL_TEST_REDIS_URL is not set",
)

WATCH_ALL = """subscription ($after: ID) {
  paymentStatusChanged(after: $after) { cursor type payment { id } } }"""
TRAILS = """query { payments(first: 100) { items { id events { id type } } } }"""
WRITERS = 64
PAYMENTS = 8


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], str]]:
    """Two payql processes on one PostgreSQL database and one Redis; their JWT secret."""
    secret = secrets.token_hex(32)
    with database("postgres", tmp_path_factory.mktemp("log")) as url:
        env = {
            "PAYQL_DATABASE_URL": url,
            "PAYQL_JWT_SECRET": secret,
            "PAYQL_BROADCAST_URL": REDIS_URL,
            "PAYQL_FAILED_PAYMENTS_PER_CUSTOMER": "0",
            "PAYQL_FAILED_PAYMENTS_PER_IP": "0",
            "PAYQL_RECONCILE_EVERY_S": "0",
        }
        with payql_serve(env, free_port()) as one, payql_serve(env, free_port()) as two:
            yield [one, two], secret


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=(Phase.explicit, Phase.generate),  # a failure is shown as found: no shrinking
)
@given(
    drops=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=5),
    amounts=st.lists(st.integers(min_value=1, max_value=50), min_size=WRITERS * 2),
)
def test_an_admin_resuming_at_random_points_gets_the_audit_trail_once_and_in_order(
    hosts: tuple[list[str], str], drops: list[int], amounts: list[int]
) -> None:
    asyncio.run(_scenario(hosts, sorted(set(drops)), amounts))


async def _scenario(hosts: tuple[list[str], str], drops: list[int], amounts: list[int]) -> None:
    urls, secret = hosts
    token = mint_token(secret, sub="admin", role="admin")
    shopper = mint_token(secret, sub="cus_many", email="many@example.com")
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        admins = [Client(url, token, http) for url in urls]
        # given completed payments, and where the log stands
        shoppers = [Client(url, shopper, http) for url in urls]
        payments = [
            (await paid(shoppers[n % 2], lines=[("HOODIE-GRY-L", 1)]))["id"]
            for n in range(PAYMENTS)
        ]
        before = await trails(admins[0])
        start = (await admins[0]("{ liveCursor }"))["liveCursor"]
        received: list[dict[str, Any]] = []
        final: list[str] = []

        async def write(n: int) -> None:
            # each writer refunds cents of a payment twice, through either host
            for k in range(2):
                cents = amounts[(2 * n + k) % len(amounts)]
                answer = await refund(
                    admins[(n + k) % 2], payments[(n + k) % PAYMENTS], amount=f"0.{cents:02d}"
                )
                assert answer["errors"] == [], answer

        async def watch() -> None:
            # an admin watching everything, dropping its connection at the given counts
            # and resuming `after` the last change it got, on either host
            cursor, host = start, 0
            while True:
                async with Subscription.connect(urls[host], http, token) as sub:
                    await sub.ack()
                    await sub.subscribe(WATCH_ALL, after=cursor)
                    while True:
                        message = (await sub.next())["paymentStatusChanged"]
                        received.append(message)
                        cursor = message["cursor"]
                        if final and any(m["cursor"] == final[0] for m in received):
                            return
                        if len(received) in drops:
                            break
                host = 1 - host

        watching = asyncio.create_task(watch())
        # when 64 writers change the payments at once, through both hosts
        await asyncio.gather(*(write(n) for n in range(WRITERS)))
        # (one change after all of them marks the end; another lets the watcher see it)
        await refund(admins[0], payments[0], amount="0.01")
        final.append((await admins[1]("{ liveCursor }"))["liveCursor"])
        await refund(admins[1], payments[1], amount="0.01")
        await asyncio.wait_for(watching, 60)
        after = await full_trails(admins[0])
    # then what the admin received, up to the end, is every change made since it
    # started, each once
    got = [(cursor_number(m["cursor"]), m["type"], m["payment"]["id"]) for m in received]
    got = got[: [c for c, _, _ in got].index(cursor_number(final[0])) + 1]
    assert len(got) == len(set(got))
    last = cursor_number(final[0])
    made = {
        (cursor_number(e["id"]), e["type"], pid)
        for pid, events in after.items()
        for e in events
        if e["id"] not in before.get(pid, set()) and cursor_number(e["id"]) <= last
    }
    assert set(got) == made
    # and each payment's changes came in the order of its audit trail
    for pid, events in after.items():
        mine = [c for c, _, p in got if p == pid]
        assert mine == [
            cursor_number(e["id"])
            for e in events
            if (cursor_number(e["id"]), e["type"], pid) in made
        ]


async def trails(admin: Client) -> dict[str, set[str]]:
    items = (await admin(TRAILS))["payments"]["items"]
    return {p["id"]: {e["id"] for e in p["events"]} for p in items}


async def full_trails(admin: Client) -> dict[str, list[dict[str, Any]]]:
    items = (await admin(TRAILS))["payments"]["items"]
    return {p["id"]: p["events"] for p in items}
