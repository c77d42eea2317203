"""Operations endpoints: /healthz, /readyz and /metrics, over real HTTP."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients import Client, Subscription
from conftest import paid
from gateway_support import post_webhook, stripe_event, stripe_intent
from servers import LiveServer, free_port, payql_serve, private_redis

from models.tables import Payment
from payql.app import orm_context
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


async def test_healthz_and_readyz_answer_when_all_is_up(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    assert (await http.get(f"{server.url}/healthz")).json() == {"status": "ok"}
    ready = await http.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "database": "ok",
        "broadcast": "ok",
        "card_gateway": "ok",
    }


async def test_readyz_says_503_while_the_broadcast_is_down_and_ready_once_back(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    redis_port = free_port()
    with private_redis(redis_port) as redis:
        # given payql serving with its live status through this Redis
        env = {
            "PAYQL_DATABASE_URL": f"sqlite://{tmp_path / 'ready.sqlite3'}",
            "PAYQL_BROADCAST_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        with payql_serve(env, free_port()) as base:
            assert (await http.get(f"{base}/readyz")).status_code == 200
            # when Redis goes away
            redis.terminate()
            redis.wait(10)
            response = await _until(http, f"{base}/readyz", 503)
            # then payql is alive but says it is not ready, and why
            assert response.json() == {
                "status": "unavailable",
                "database": "ok",
                "broadcast": "unavailable",
                "card_gateway": "ok",
            }
            assert (await http.get(f"{base}/healthz")).status_code == 200
            # and when Redis is back, so is readiness, with no restart
            with private_redis(redis_port):
                await _until(http, f"{base}/readyz", 200)


async def _until(http: httpx.AsyncClient, url: str, status: int) -> httpx.Response:
    for _ in range(200):
        response = await http.get(url)
        if response.status_code == status:
            return response
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}")


async def test_metrics_count_requests_payments_refunds_webhooks_and_subscribers(
    server: LiveServer, alice: Client, admin: Client, http: httpx.AsyncClient
) -> None:
    before = await scrape(http, server)
    # given two more payments, one of them partly refunded, a webhook about the other,
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
    # then each figure moved by what happened, as the database and the hub have it
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def grew(name: str, **labels: str) -> float:
        return (sample(after, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    assert grew("payql_payments", gateway="simulated", status="PARTIALLY_REFUNDED") == 1
    assert grew("payql_payments", gateway="simulated", status="COMPLETED") == 1
    assert grew("payql_refunds", status="SUCCEEDED") == 1
    assert grew("payql_webhooks_total", gateway="simulated", outcome="applied") == 1
    assert grew("payql_webhook_lag_seconds_count", gateway="simulated") == 1
    assert (sample(after, "payql_live_subscribers") or 0) >= 1  # ours, open while scraped
    named = {"kind": "POST", "operation": "mutation refundPayment", "status": "2xx"}
    assert grew("payql_requests_total", **named) == 1, after


async def scrape(http: httpx.AsyncClient, server: LiveServer) -> str:
    response = await http.get(f"{server.url}/metrics")
    assert response.status_code == 200
    return response.text


async def test_metrics_never_carry_names_the_client_chose(
    server: LiveServer, alice: Client, http: httpx.AsyncClient
) -> None:
    # given requests whose operation names and HTTP method are the client's to choose
    for n in range(3):
        await alice(f"query Chosen{n}ByTheClient {{ products {{ sku }} }}")
    await http.request("BREW", f"{server.url}/healthz")
    # then the metrics count them by what the schema and payql know
    text = await scrape(http, server)
    assert "ByTheClient" not in text and "BREW" not in text
    assert (
        sample(text, "payql_requests_total", kind="POST", operation="query products", status="2xx")
        or 0
    ) >= 3


def test_operations_cannot_grow_the_metrics_without_bound() -> None:
    metrics = Metrics(Hub(broadcast=None))
    # when ever more operations are seen (a guard, should the schema grow)
    for n in range(MAX_OPERATIONS + 50):
        metrics.observe_request("POST", f"query field{n}", 200, 0.01)
    # then past the bound they are counted together as "other"
    names = {
        s.labels["operation"]
        for family in metrics.registry.collect()
        if family.name == "payql_requests"
        for s in family.samples
        if s.name == "payql_requests_total"
    }
    assert len(names) == MAX_OPERATIONS + 1 and "other" in names
    # and a method payql does not serve is one kind, whatever it is called
    metrics.observe_request("BREW", None, 405, 0.01)
    metrics.observe_request("PROPFIND", None, 405, 0.01)
    kinds = {
        s.labels["kind"]
        for family in metrics.registry.collect()
        if family.name == "payql_requests"
        for s in family.samples
    }
    assert kinds == {"POST", "other"}


async def test_metrics_can_ask_for_a_token(tmp_path: Path, http: httpx.AsyncClient) -> None:
    env = {
        "PAYQL_DATABASE_URL": f"sqlite://{tmp_path / 'metrics.sqlite3'}",
        "PAYQL_METRICS_TOKEN": "scrape-me",
    }
    with payql_serve(env, free_port()) as base:
        assert (await http.get(f"{base}/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await http.get(f"{base}/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer scrape-me"}
        response = await http.get(f"{base}/metrics", headers=right)
    assert response.status_code == 200 and "payql_requests_total" in response.text


async def test_readyz_says_503_when_the_database_does_not_answer(
    server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a database that fails every statement (down, or its pool exhausted)
    with orm_context(server.app.state.orm):
        connection = Payment._meta.db

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(connection, "execute_query", failing)
    # when a load balancer asks whether the server is ready
    response = await http.get(f"{server.url}/readyz")
    # then it is told no, and why
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"
    assert response.json()["broadcast"] == "ok"
