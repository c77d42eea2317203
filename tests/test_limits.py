"""GraphQL limits: what one request may ask for, each refused before anything runs.

The session server runs with the default limits: depth 10, 30 aliases, 2,000 tokens,
cost 200,000, bodies up to 256 KiB, first ≤ 100, no batching.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from clients import Client, Subscription
from httpx_ws import WebSocketDisconnect
from servers import LiveServer
from strawberry.extensions.validation_cache import _get_validate_cache

from schema.guards import GuardInput
from schema.mutation import Mutation
from schema.query import Query

PRODUCTS = "{ products { sku } }"
REALISTIC_DASHBOARD = """
{ orders(first: 100) { items { number lines { sku quantity }
    payments { status refunds { id amount } events { type createdAt } } } } }
"""
# Within the depth limit, but each nested list multiplies the work.
EXPLOSIVE = """
{ orders(first: 100) { items { payments { order { payments { order { payments {
    refunds { id } } } } } } } } }
"""


def codes(body: dict[str, Any]) -> list[str | None]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def messages(body: dict[str, Any]) -> str:
    return " | ".join(e["message"] for e in body.get("errors") or [])


def nested(depth: int) -> str:
    """payment { order { payments { order { … } } } }, `depth` fields deep."""
    fields = ['payment(id: "pay_x")'] + ["order", "payments"] * depth
    fields = fields[:depth]
    return "{ " + " { ".join(fields) + " { id }" + " }" * depth


async def test_a_query_100_deep_is_refused(alice: Client) -> None:
    # given a query nested 100 fields deep (Payment.order.payments.order…)
    body = await alice.post(nested(100))
    # then it is refused, and says why
    assert body["data"] is None
    assert codes(body) == ["QUERY_TOO_DEEP"]
    assert "fields deep; at most 10 is allowed" in messages(body)


async def test_a_query_within_the_depth_limit_runs(alice: Client) -> None:
    body = await alice.post(nested(8))
    assert body.get("errors") is None, body
    assert body["data"] == {"payment": None}


async def test_ten_thousand_aliases_are_refused(alice: Client) -> None:
    # given 10,000 aliases of one field (30,000 tokens)
    query = "{ " + " ".join(f"a{i}: products {{ sku }}" for i in range(10_000)) + " }"
    body = await alice.post(query)
    # then the token limit stops it while parsing
    assert body["data"] is None
    assert "more than 2000 tokens" in messages(body)


async def test_more_than_30_aliases_are_refused_even_in_a_short_document(alice: Client) -> None:
    query = "{ " + " ".join(f"a{i}: products {{ sku }}" for i in range(31)) + " }"
    body = await alice.post(query)
    assert body["data"] is None
    assert codes(body) == ["TOO_MANY_ALIASES"]
    assert "uses 31 aliases (fragments expanded); at most 30" in messages(body)


async def test_a_document_of_20000_tokens_is_refused(alice: Client) -> None:
    # given a short query padded to 20,000 tokens with a huge list argument
    padding = ", ".join(['"x"'] * 10_000)
    query = f"query ($ids: [ID!] = [{padding}]) {{ products {{ sku }} }}"
    body = await alice.post(query)
    assert body["data"] is None
    assert "more than 2000 tokens" in messages(body)


async def test_circular_fragments_are_refused(alice: Client) -> None:
    query = """
    { products { ...A } }
    fragment A on Product { sku ...B }
    fragment B on Product { name ...A }
    """
    body = await alice.post(query)
    assert body["data"] is None
    assert "Cannot spread fragment 'A' within itself via 'B'" in messages(body)


async def test_batched_operations_are_refused(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given two operations in one JSON array
    response = await http.post(
        f"{server.url}/graphql",
        json=[{"query": PRODUCTS}, {"query": PRODUCTS}],
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    # then nothing runs
    assert response.status_code == 400
    assert "Batching is not enabled" in response.text


async def test_a_document_with_several_operations_runs_only_one(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    document = "query A { products { sku } } query B { orders { total } }"
    body = await alice.post(document)
    assert set(body["data"]) == {"products"}
    response = await http.post(
        f"{server.url}/graphql",
        json={"query": document, "operationName": "B"},
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert set(response.json()["data"]) == {"orders"}


async def test_oversized_first_is_refused(alice: Client, admin: Client) -> None:
    for first in (101, 10_000, 0, -1):
        body = await admin.post(f"{{ payments(first: {first}) {{ total }} }}")
        assert codes(body) == ["VALIDATION"], body
        assert "first must be between 1 and 100" in messages(body)
        body = await alice.post(f"{{ orders(first: {first}) {{ total }} }}")
        assert codes(body) == ["VALIDATION"], body


async def test_a_query_whose_lists_multiply_past_the_cost_bound_is_refused(alice: Client) -> None:
    body = await alice.post(EXPLOSIVE)
    assert body["data"] is None
    assert codes(body) == ["QUERY_TOO_COMPLEX"]
    assert "estimated cost" in messages(body)
    assert body["errors"][0]["extensions"]["cost"] > 200_000


async def test_the_cost_bound_counts_first_from_variables(alice: Client) -> None:
    query = """query ($n: Int!) { orders(first: $n) { items { payments { order {
        payments { order { payments { refunds { id } } } } } } } } }"""
    small = await alice.post(query, n=1)
    assert small.get("errors") is None, small
    large = await alice.post(query, n=100)
    assert codes(large) == ["QUERY_TOO_COMPLEX"]


async def test_a_realistic_dashboard_query_is_within_every_limit(alice: Client) -> None:
    body = await alice.post(REALISTIC_DASHBOARD)
    assert body.get("errors") is None, body


async def test_the_caches_do_not_weaken_the_limits(alice: Client) -> None:
    # given documents refused once (so parsed, validated and cached)
    for query in (
        nested(30),
        EXPLOSIVE,
        "{ " + " ".join(f"a{i}: products {{ sku }}" for i in range(31)) + " }",
    ):
        first = await alice.post(query)
        # then the same documents are refused again, from the caches
        again = await alice.post(query)
        assert first["data"] is None and again["data"] is None
        assert messages(first) == messages(again)


async def test_an_oversized_body_is_refused_with_413(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    headers = {"Authorization": f"Bearer {alice.token}"}
    big = {"query": PRODUCTS, "variables": {"x": "y" * 300_000}}
    response = await http.post(f"{server.url}/graphql", json=big, headers=headers)
    assert response.status_code == 413
    assert "over the limit" in response.json()["error"]

    # and when the body does not say its length (chunked), counting stops it too
    async def chunks() -> Any:
        for _ in range(300):
            yield b"x" * 1024

    response = await http.post(
        f"{server.url}/graphql",
        content=chunks(),
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == 413


async def test_subscriptions_are_not_served_over_http_streams(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given a subscription sent as an HTTP request asking for a multipart stream
    response = await http.post(
        f"{server.url}/graphql",
        json={"query": "subscription { paymentStatusChanged { status } }"},
        headers={
            "Authorization": f"Bearer {alice.token}",
            "Accept": 'multipart/mixed;subscriptionSpec="1.0", application/json',
        },
    )
    # then it is refused: live status is served only over graphql-transport-ws
    assert "multipart/mixed" not in response.headers.get("content-type", "")
    assert response.status_code in (200, 400, 405)
    assert "paymentStatusChanged" not in (response.json().get("data") or {})


async def test_a_nul_character_in_any_string_is_refused(alice: Client) -> None:
    # (found by fuzzing: PostgreSQL cannot store or even compare one)
    body = await alice.post("query ($id: ID!) { paymentStatus(id: $id) }", id="pay_\x00")
    assert codes(body) == ["VALIDATION"]
    assert "id contains a NUL character" in messages(body)
    data = await alice(
        """mutation ($input: CreateOrderInput!) {
          createOrder(input: $input) { order { id } errors { code field } } }""",
        input={
            "lines": [{"sku": "MUG-WHT", "quantity": 1}],
            "customer": {"name": "Al\x00ice", "email": "alice@example.com"},
        },
    )
    assert data["createOrder"] == {
        "order": None,
        "errors": [{"code": "VALIDATION", "field": "customer.name"}],
    }


async def test_an_id_longer_than_any_of_ours_is_simply_not_found(alice: Client) -> None:
    # (found by fuzzing: the ORM used to refuse to compare it, and the query failed)
    long_id = "pay_" + "x" * 300
    assert (await alice("query ($id: ID!) { payment(id: $id) { id } }", id=long_id)) == {
        "payment": None
    }
    data = await alice(
        "mutation ($id: ID!) { syncPayment(id: $id) { errors { code } } }", id=long_id
    )
    assert data["syncPayment"]["errors"] == [{"code": "NOT_FOUND"}]


def fan_out(levels: int) -> str:
    """Fragments that each spread the next one twice: 2^levels copies once expanded."""
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels))
    return f"{{ ...F0 }} {chain} fragment F{levels} on Query {{ products {{ sku }} }}"


async def test_fragments_spread_into_each_other_are_judged_by_their_expanded_size(
    alice: Client, anonymous: Client
) -> None:
    # given 30 levels of fragments spreading the next one twice (2^30 copies, 330 tokens)
    document = fan_out(30)
    # then it is refused by its expanded cost, which is measured without expanding it
    body = await alice.post(document)
    assert codes(body) == ["QUERY_TOO_COMPLEX"], body
    # and without a token it is not even parsed
    refused = await anonymous.post(document)
    assert codes(refused) == ["UNAUTHENTICATED"]
    # while a few levels are an ordinary query
    assert (await alice.post(fan_out(3))).get("errors") is None


async def test_aliases_are_counted_with_fragments_expanded(alice: Client) -> None:
    document = (
        "{ ...A ...A2 } fragment A on Query { a1: products { sku } a2: products { sku } "
        "a3: products { sku } a4: products { sku } a5: products { sku } } "
        "fragment A2 on Query { ...A b: orders { total } }"
    )
    assert (await alice.post(document)).get("errors") is None  # 11 aliases
    many = (
        "{ "
        + " ".join(f"...A{i}" for i in range(7))
        + " } "
        + " ".join(f"fragment A{i} on Query {{ ...A }}" for i in range(7))
        + " fragment A on Query { a1: products { sku } a2: products { sku } "
        "a3: products { sku } a4: products { sku } a5: products { sku } }"
    )
    assert codes(await alice.post(many)) == ["TOO_MANY_ALIASES"]  # 35 once expanded


async def test_an_unknown_fragment_is_a_plain_validation_error(alice: Client) -> None:
    body = await alice.post("{ ...Missing }")
    assert messages(body) == "Unknown fragment 'Missing'."
    assert codes(body) == [None]


async def test_a_variables_default_counts_for_the_cost(alice: Client) -> None:
    query = """query ($n: Int = 100) { orders(first: $n) { items { payments { order {
        payments { order { payments { refunds { id } } } } } } } } }"""
    assert codes(await alice.post(query)) == ["QUERY_TOO_COMPLEX"]


async def test_a_subscription_is_held_to_the_same_limits(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    branch = (
        "payment { order { payments { order { payments { order { payments { refunds { id }"
        " } } } } } } }"
    )
    explosive = (
        "subscription { paymentStatusChanged { "
        + " ".join(f"a{i}: {branch}" for i in range(25))
        + " } }"
    )
    fields = ["paymentStatusChanged", "payment"] + ["order", "payments"] * 6
    deep = "subscription { " + " { ".join(fields) + " { id }" + " }" * len(fields)
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        await sub.subscribe(explosive)
        assert await sub.refusal() == "QUERY_TOO_COMPLEX"
        await sub.subscribe(deep)
        assert await sub.refusal() == "QUERY_TOO_DEEP"


async def test_a_body_nested_past_any_parser_is_refused_cleanly(
    alice: Client, server: LiveServer, http: httpx.AsyncClient
) -> None:
    for body in (b"[" * 100_000, b'{"query": ' + b"[" * 100_000):
        response = await http.post(
            f"{server.url}/graphql",
            content=body,
            headers={"Authorization": f"Bearer {alice.token}", "content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert "Unable to parse request body as JSON" in response.text


async def test_a_websocket_message_over_the_limit_closes_the_connection(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        await sub.ws.send_text("x" * 300_000)
        with pytest.raises(WebSocketDisconnect) as closed:
            await sub.receive()
        assert closed.value.code == 1009


async def test_the_validation_cache_is_used(alice: Client) -> None:
    cache = _get_validate_cache(256)
    query = "{ products { sku name } orders(first: 3) { total } }"
    await alice.post(query)
    before = cache.cache_info().hits
    for _ in range(3):
        assert (await alice.post(query)).get("errors") is None
    assert cache.cache_info().hits >= before + 3


def test_every_root_field_guards_its_input() -> None:
    for root in (Query, Mutation):
        for field in root.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            assert any(isinstance(e, GuardInput) for e in field.extensions), field.name


async def test_a_float_variable_counts_as_the_int_it_becomes(alice: Client) -> None:
    # (found in review: 100.0 coerces to the Int 100, and once slipped past the cost)
    query = """query ($n: Int!) { orders(first: $n) { items { payments { order {
        payments { order { payments { refunds { id } } } } } } } } }"""
    body = await alice.post(query, n=100.0)
    assert codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["cost"] > 1_000_000  # costed at 100, not at 20
