"""Operations endpoints: /healthz, /readyz and /metrics, over real HTTP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import paid
from support import (
    Client,
    LiveServer,
    Subscription,
    base_settings,
    free_port,
    post_webhook,
    private_redis,
    running_server,
    stripe_event,
    stripe_intent,
)

from models.tables import Payment
from payql.ops import MAX_OPERATIONS, Metrics
from resolvers.live import Hub

REFUND = """mutation RefundPayment($input: RefundPaymentInput!) {
  refundPayment(input: $input) { errors { code } } }"""
WATCH = "subscription ($id: ID) { paymentStatusChanged(paymentId: $id) { status } }"


def sample(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from Prometheus' text format, or None when it is absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "")
    match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of its own, so that its counts are this test's alone."""
    settings = base_settings(f"sqlite://{tmp_path / 'ops.sqlite3'}")
    with running_server(settings) as live:
        yield live


async def test_healthz_and_readyz_answer_when_all_is_up(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    assert (await http.get(f"{server.url}/healthz")).json() == {"status": "ok"}
    ready = await http.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "broadcast": "ok"}


async def test_readyz_says_503_while_the_broadcast_is_down_and_ready_once_back(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    port = free_port()
    with private_redis(port) as redis:
        # given a server whose live status goes through this Redis
        settings = replace(
            base_settings(f"sqlite://{tmp_path / 'ready.sqlite3'}"),
            broadcast_url=f"redis://127.0.0.1:{port}/0",
        )
        with running_server(settings) as live:
            assert (await http.get(f"{live.url}/readyz")).status_code == 200
            # when Redis goes away
            redis.terminate()
            redis.wait(10)
            response = await _until(http, f"{live.url}/readyz", 503)
            # then the server is alive but says it is not ready, and why
            assert response.json() == {
                "status": "unavailable",
                "database": "ok",
                "broadcast": "unavailable",
            }
            assert (await http.get(f"{live.url}/healthz")).status_code == 200
            # and when Redis is back, so is readiness
            with private_redis(port):
                await _until(http, f"{live.url}/readyz", 200)


async def _until(http: httpx.AsyncClient, url: str, status: int) -> httpx.Response:
    for _ in range(200):
        response = await http.get(url)
        if response.status_code == status:
            return response
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}")


async def test_metrics_count_requests_payments_refunds_webhooks_and_subscribers(
    fresh_server: LiveServer, http: httpx.AsyncClient
) -> None:
    server = fresh_server
    alice = Client(server.url, server.token("cus_alice", email="alice@example.com"), http)
    admin = Client(server.url, server.token("admin", role="admin"), http)
    # given two payments, one of them partly refunded, a webhook about the other,
    # and someone watching the first live
    refunded = await paid(alice, lines=[("MUG-WHT", 1)])
    done = await admin(REFUND, input={"paymentId": refunded["id"], "amount": "1"})
    assert done["refundPayment"]["errors"] == []
    other = await paid(alice, token="pm_card_authenticationRequired")
    event = stripe_event("payment_intent.succeeded", stripe_intent(other))
    assert (await post_webhook(http, server, event)).status_code == 200
    async with Subscription.connect(server.url, http, alice.token) as sub:
        await sub.ack()
        await sub.subscribe(WATCH, id=refunded["id"])
        await sub.next()
        # when Prometheus scrapes
        response = await http.get(f"{server.url}/metrics")
    # then each figure is there, as the database and the hub have it
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "payql_payments", gateway="simulated", status="PARTIALLY_REFUNDED") == 1
    assert sample(text, "payql_payments", gateway="simulated", status="COMPLETED") == 1
    assert sample(text, "payql_refunds", status="SUCCEEDED") == 1
    assert sample(text, "payql_webhooks_total", gateway="simulated", outcome="applied") == 1
    assert sample(text, "payql_webhook_lag_seconds_count", gateway="simulated") == 1
    assert sample(text, "payql_live_subscribers") == 1
    refunds = sample(
        text,
        "payql_requests_total",
        kind="POST",
        operation="mutation RefundPayment",
        status="2xx",
    )
    assert refunds == 1, text


def test_client_chosen_operation_names_cannot_grow_the_metrics_without_bound() -> None:
    metrics = Metrics(Hub(broadcast=None))
    # when a client sends many differently named operations
    for n in range(MAX_OPERATIONS + 50):
        metrics.observe_request("POST", f"query Q{n}", 200, 0.01)
    # then past the bound they are counted together as "other"
    names = {
        s.labels["operation"]
        for family in metrics.registry.collect()
        if family.name == "payql_requests"
        for s in family.samples
        if s.name == "payql_requests_total"
    }
    assert len(names) == MAX_OPERATIONS + 1 and "other" in names


async def test_metrics_can_ask_for_a_token(tmp_path: Path, http: httpx.AsyncClient) -> None:
    settings = replace(
        base_settings(f"sqlite://{tmp_path / 'm.sqlite3'}"), metrics_token="scrape-me"
    )
    with running_server(settings) as live:
        assert (await http.get(f"{live.url}/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await http.get(f"{live.url}/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer scrape-me"}
        response = await http.get(f"{live.url}/metrics", headers=right)
    assert response.status_code == 200 and "payql_requests_total" in response.text


async def test_readyz_says_503_when_the_database_does_not_answer(
    fresh_server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a database that fails every statement (down, or its pool exhausted)
    connection = Payment._meta.db

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(connection, "execute_query", failing)
    # when a load balancer asks whether the server is ready
    response = await http.get(f"{fresh_server.url}/readyz")
    # then it is told no, and why
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"
    assert response.json()["broadcast"] == "ok"
