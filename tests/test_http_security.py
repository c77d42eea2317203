"""The HTTP and websocket edges: CSRF, CORS, origins, connection limits, headers,
request ids and masked errors.

The session server allows one browser origin, https://shop.example.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from clients import Client, Subscription
from gateway_support import post_webhook
from httpx_ws import WebSocketUpgradeError
from servers import LiveServer

from payql.security import WebsocketGuard

SHOP = "https://shop.example"
PRODUCTS = "{ products { sku } }"
CREATE_ORDER = """mutation { createOrder(input: {lines: [{sku: "MUG-WHT", quantity: 1}]}) {
  order { id } errors { code } } }"""
WATCH_ALL = "subscription { paymentStatusChanged { status } }"


def bearer(client: Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}"}


# -- CSRF ------------------------------------------------------------------------------


async def test_queries_may_use_get_but_mutations_may_not(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    url = f"{server.url}/graphql"
    query = await http.get(url, params={"query": PRODUCTS}, headers=bearer(alice))
    assert query.status_code == 200
    assert query.json()["data"]["products"]
    mutation = await http.get(url, params={"query": CREATE_ORDER}, headers=bearer(alice))
    # 405, as GraphQL over HTTP says, pointing at the method that may
    assert mutation.status_code == 405
    assert mutation.headers["allow"] == "POST"
    assert "mutations are not allowed when using GET" in mutation.text


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_a_post_a_form_could_send_is_refused(
    alice: Client, server: LiveServer, http: httpx.AsyncClient, content_type: str
) -> None:
    # given a mutation sent as a browser form or a "simple" cross-site request would
    response = await http.post(
        f"{server.url}/graphql",
        content=json.dumps({"query": CREATE_ORDER}),
        headers={**bearer(alice), "content-type": content_type},
    )
    # then it is refused: only application/json is read
    assert response.status_code == 400
    assert "Unsupported content type" in response.text


# -- CORS and websocket origins --------------------------------------------------------


async def test_cors_answers_only_the_allowed_origin(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = await http.options(f"{server.url}/graphql", headers={"Origin": SHOP, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SHOP
    refused = await http.options(
        f"{server.url}/graphql", headers={"Origin": "https://evil.example", **preflight}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


async def test_a_simple_request_from_another_origin_gets_no_cors_grant(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        f"{server.url}/graphql",
        json={"query": PRODUCTS},
        headers={**bearer(alice), "Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in response.headers
    response = await http.post(
        f"{server.url}/graphql", json={"query": PRODUCTS}, headers={**bearer(alice), "Origin": SHOP}
    )
    assert response.headers["access-control-allow-origin"] == SHOP


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [(None, True), (SHOP, True), ("SELF", True), ("https://evil.example", False)],
)
async def test_a_websocket_from_a_foreign_origin_is_refused(
    server: LiveServer, http: httpx.AsyncClient, origin: str | None, accepted: bool
) -> None:
    headers = {}
    if origin is not None:
        headers["Origin"] = server.url if origin == "SELF" else origin
    token = server.token("admin", role="admin")
    if accepted:
        async with Subscription.connect(server.url, http, token, headers) as sub:
            await sub.ack()
    else:
        with pytest.raises(WebSocketUpgradeError) as refused:
            async with Subscription.connect(server.url, http, token, headers):
                pass
        assert refused.value.response.status_code == 403


@pytest.fixture
def two_websockets_per_ip(server: LiveServer) -> Iterator[None]:
    """The server's websocket guard, lowered to two connections per address."""
    node: Any = server.app.middleware_stack
    while not isinstance(node, WebsocketGuard):
        node = node.app
    saved, node.per_ip = node.per_ip, 2
    yield
    node.per_ip = saved


async def test_one_address_may_hold_only_so_many_websockets(
    server: LiveServer, http: httpx.AsyncClient, two_websockets_per_ip: None
) -> None:
    token = server.token("admin", role="admin")
    # given two open connections from one address
    async with (
        Subscription.connect(server.url, http, token) as first,
        Subscription.connect(server.url, http, token) as second,
    ):
        await first.ack()
        await second.ack()
        # then a third is refused at the handshake
        with pytest.raises(WebSocketUpgradeError):
            async with Subscription.connect(server.url, http, token):
                pass
        # while another address may connect
        async with Subscription.connect(
            server.url, http, token, {"X-Forwarded-For": "198.51.100.7"}
        ) as other:
            await other.ack()
    # and once they are closed, the address may connect again
    async with Subscription.connect(server.url, http, token) as again:
        await again.ack()


async def test_one_connection_may_hold_only_20_subscriptions(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        for _ in range(20):
            await sub.subscribe(WATCH_ALL)
        refused = await sub.subscribe(WATCH_ALL)
        # (the 20 may be sent changes meanwhile: other tests' payments)
        assert await sub.refusal(refused) == "RATE_LIMITED"


# -- headers and request ids -----------------------------------------------------------


async def test_every_response_carries_the_security_headers(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    responses = [
        await http.post(f"{server.url}/graphql", json={"query": PRODUCTS}, headers=bearer(alice)),
        await http.post(f"{server.url}/graphql", json={"query": PRODUCTS}),  # 401
        await http.get(f"{server.url}/healthz"),
        await http.post(f"{server.url}/webhooks/simulated", content=b"{}"),  # 400
        await http.get(f"{server.url}/no-such-page"),  # 404
        await http.post(f"{server.url}/graphql", content=b"x" * 300_000),  # 413
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])
        # HSTS only in production (see test_production.py)
        assert "strict-transport-security" not in response.headers


async def test_graphiql_is_served_with_its_own_assets_under_a_strict_csp(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    page = await http.get(f"{server.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    # scripts and styles from payql only: no inline code, no other host
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    assert "unsafe" not in csp and "connect-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
    assert "<script>" not in page.text and "<style" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(url.startswith("/static/") for url in assets), assets
    # and each is there (the browser tests run the page itself: tests/test_browser.py)
    for url in assets:
        response = await http.get(f"{server.url}{url}")
        assert response.status_code == 200, url


async def test_request_ids_are_always_payqls_own(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    # a caller cannot make its requests share another's id in the log
    url = f"{server.url}/graphql"
    ids = set()
    for _ in range(3):
        response = await http.post(
            url, json={"query": PRODUCTS}, headers={**bearer(alice), "X-Request-ID": "abcd1234"}
        )
        assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 3


# -- masked errors ---------------------------------------------------------------------


@pytest.fixture
def broken_orders(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """createOrder fails the way a bug or a database outage would, with internals in it."""

    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            'relation "customer_order" does not exist: SELECT * FROM customer_order '
            "WHERE key='sk_live_abcdef123456'"
        )

    monkeypatch.setattr(server.service, "create_order", boom)


async def test_an_unexpected_error_is_masked_and_its_request_id_leads_to_the_log(
    alice: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    broken_orders: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # when a mutation hits an unexpected failure
    with caplog.at_level(logging.ERROR, logger="payql.graphql"):
        response = await http.post(
            f"{server.url}/graphql", json={"query": CREATE_ORDER}, headers=bearer(alice)
        )
    # then the client sees a masked error with the request id, and nothing internal
    body = response.json()
    request_id = response.headers["x-request-id"]
    assert body["errors"] == [
        {
            "message": "Unexpected error.",
            "locations": [{"line": 1, "column": 12}],
            "path": ["createOrder"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        }
    ]
    for leak in ("SELECT", "customer_order", "sk_live", "Traceback", "RuntimeError"):
        assert leak not in response.text
    # and the operator finds the whole story in the log under that id
    [record] = [r for r in caplog.records if r.name == "payql.graphql"]
    assert request_id in record.getMessage()
    assert record.exc_info is not None and "customer_order" in str(record.exc_info[1])


async def test_expected_errors_are_not_masked(alice: Client, anonymous: Client) -> None:
    unauthenticated = await anonymous.post(PRODUCTS)
    assert unauthenticated["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    forbidden = await alice.post("{ payments { total } }")
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    invalid = await alice.post("{ products { nope } }")
    assert "Cannot query field 'nope'" in invalid["errors"][0]["message"]


async def test_an_unexpected_error_in_a_subscription_is_masked_too(
    server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given live status failing the way a bug would, with internals in its message
    async def broken_add(subscriber: Any) -> None:
        raise RuntimeError("SELECT * FROM payment_event -- sk_live_abcdef123456")

    monkeypatch.setattr(server.app.state.hub, "add", broken_add)
    # when an admin subscribes
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        await sub.subscribe(WATCH_ALL)
        message = await sub.receive()
    # then the error is masked, with a request id
    text = json.dumps(message)
    assert "Unexpected error." in text
    assert "SELECT" not in text and "sk_live" not in text
    assert "INTERNAL_SERVER_ERROR" in text and "requestId" in text


async def test_an_unexpected_error_outside_graphql_is_masked_with_its_request_id(
    server: LiveServer,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given the webhook path failing the way a bug would
    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("SELECT * FROM webhook_event -- whsec_abcdef")

    monkeypatch.setattr(server.service, "apply_webhook", boom)
    event = {"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": {}}}
    with caplog.at_level(logging.ERROR, logger="payql.request"):
        response = await post_webhook(http, server, event)
    # then the gateway gets a plain 500 with the request id, and the usual headers
    request_id = response.headers["x-request-id"]
    assert response.status_code == 500
    assert response.json() == {"error": "Unexpected error.", "requestId": request_id}
    assert response.headers["x-content-type-options"] == "nosniff"
    # and the log has the traceback
    [record] = [r for r in caplog.records if r.name == "payql.request" and r.exc_info]
    assert "webhook_event" in str(record.exc_info[1])  # type: ignore[index]
