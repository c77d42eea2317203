"""graphql-transport-ws as payql speaks it (payql/graphql_ws.py), message by message,
over a real websocket; and a real graphql-ws client (the npm library Apollo and urql
use) subscribing, resuming with `after`, and querying over the socket.

The protocol is graphql-ws's PROTOCOL.md: the close codes and their reasons below are
the ones it names."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients import WAIT, Client, Subscription
from conftest import refund
from httpx_ws import WebSocketDisconnect, aconnect_ws
from servers import LiveServer

from payql import graphql_ws
from resolvers import queries
from resolvers.subscriptions import backlog

STATUS_CHANGED = """
subscription ($paymentId: ID, $after: ID) {
  paymentStatusChanged(paymentId: $paymentId, after: $after) { cursor type status }
}
"""
PAYMENT_STATUS = "query ($id: ID!) { paymentStatus(id: $id) }"
CREATE_ORDER = """
mutation ($input: CreateOrderInput!) {
  createOrder(input: $input) { order { id totalAmount } errors { code } }
}
"""
PROCESS_PAYMENT = """
mutation ($input: ProcessPaymentInput!) {
  processPayment(input: $input) { payment { id } errors { code field } }
}
"""


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/graphql"


async def closed_with(sub: Subscription) -> tuple[int, str]:
    """The close code and reason that end the connection (failing on any message)."""
    with pytest.raises(WebSocketDisconnect) as closed:
        message = await sub.receive()
        raise AssertionError(f"expected the connection to close, got {message}")
    return closed.value.code, closed.value.reason


async def test_an_acknowledged_connection_answers_ping_with_pong_and_ignores_pong(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        # given an acknowledged connection
        await sub.ack()
        # when the client sends a pong (a heartbeat no one asked for), then a ping,
        # then a query
        await sub.ws.send_json({"type": "pong"})
        await sub.ws.send_json({"type": "ping", "payload": {"at": 1}})
        query = await sub.subscribe("{ __typename }")
        # then the answers are the ping's pong, then the query's: nothing for the pong
        assert await sub.receive() == {"type": "pong"}
        assert (await sub.receive())["id"] == query


async def test_a_ping_before_connection_init_is_answered_too(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with aconnect_ws(ws_url(server), http, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}


@pytest.fixture
def short_init_wait(server: LiveServer) -> Iterator[None]:
    endpoint = server.app.state.websocket
    saved, endpoint.init_wait_s = endpoint.init_wait_s, 0.2
    yield
    endpoint.init_wait_s = saved


async def test_no_connection_init_in_time_closes_with_4408(
    server: LiveServer, http: httpx.AsyncClient, short_init_wait: None
) -> None:
    async with aconnect_ws(ws_url(server), http, subprotocols=["graphql-transport-ws"]) as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
    assert (closed.value.code, closed.value.reason) == (4408, "Connection initialisation timeout")


async def test_a_second_connection_init_closes_with_4429(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.ws.send_json({"type": "connection_init", "payload": {}})
        assert await closed_with(sub) == (4429, "Too many initialisation requests")


async def test_a_connection_init_whose_payload_is_not_an_object_closes_with_4400(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with aconnect_ws(ws_url(server), http, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send_json({"type": "connection_init", "payload": "Bearer x"})
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
    assert (closed.value.code, closed.value.reason) == (4400, "Invalid connection init payload")


async def test_a_subscribe_before_the_ack_closes_with_4401(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with aconnect_ws(ws_url(server), http, subprotocols=["graphql-transport-ws"]) as ws:
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": "{ products { sku } }"}}
        await ws.send_json(subscribe)
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
    assert (closed.value.code, closed.value.reason) == (4401, "Unauthorized")


async def test_no_token_closes_with_4403(server: LiveServer, http: httpx.AsyncClient) -> None:
    async with Subscription.connect(server.url, http, None) as sub:
        assert await closed_with(sub) == (4403, "Forbidden")


async def test_a_subscribe_under_an_id_still_running_closes_with_4409(
    server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any]
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        op_id = await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
        assert (await sub.receive())["id"] == op_id
        await sub.ws.send_json(
            {"id": op_id, "type": "subscribe", "payload": {"query": STATUS_CHANGED}}
        )
        assert await closed_with(sub) == (4409, f"Subscriber for {op_id} already exists")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("not json", "WebSocket message must be valid JSON"),
        ('{"no": "type"}', "Failed to parse message"),
        ('["connection_init"]', "Failed to parse message"),
        ('{"type": "subscribe_all"}', "Unknown message type: subscribe_all"),
    ],
)
async def test_a_message_the_protocol_does_not_allow_closes_with_4400(
    server: LiveServer, http: httpx.AsyncClient, message: str, reason: str
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.ws.send_text(message)
        assert await closed_with(sub) == (4400, reason)


async def test_a_binary_message_closes_with_4400(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.ws.send_bytes(b'{"type": "ping"}')
        assert await closed_with(sub) == (4400, "WebSocket message type must be text")


async def test_a_document_that_does_not_parse_closes_with_4400_saying_why(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe("subscription { paymentStatusChanged { status }")
        code, reason = await closed_with(sub)
    assert code == 4400 and reason.startswith("Syntax Error")


async def test_a_close_reason_is_cut_to_what_a_close_frame_holds(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.ws.send_json({"type": "x" * 500})
        code, reason = await closed_with(sub)
    assert code == 4400 and reason.startswith("Unknown message type: xxx")
    assert len(reason.encode()) <= 123


async def test_a_subscription_that_fails_validation_gets_one_error_and_nothing_after(
    server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any]
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        # when a subscription asks for a field that does not exist
        bad = await sub.subscribe("subscription { paymentStatusChanged { nope } }")
        # then it gets one error, with GraphQL's own message
        error = await sub.receive()
        assert error["type"] == "error" and error["id"] == bad
        assert "Cannot query field 'nope'" in error["payload"][0]["message"]
        # and its id is free again: a good subscription under it runs
        await sub.subscribe_as(bad, STATUS_CHANGED, paymentId=completed_payment["id"])
        again = await sub.receive()
        assert again["id"] == bad and again["type"] == "next"


async def test_a_completed_subscription_is_sent_nothing_more(
    alice: Client,
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    completed_payment: dict[str, Any],
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        # given two subscriptions to one payment
        first = await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
        second = await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
        assert {(await sub.receive())["id"], (await sub.receive())["id"]} == {first, second}
        # when the client completes the first, and the payment changes
        await sub.ws.send_json({"id": first, "type": "complete"})
        await refund(admin, completed_payment["id"], amount="1")
        # then only the second hears of it
        heard = [await sub.receive() for _ in range(3)]
        assert {message["id"] for message in heard} == {second}
        # and the hub holds only the second (once earlier tests' sockets are gone)
        hub = server.app.state.hub
        for _ in range(WAIT * 50):
            if hub.count == 1:
                break
            await asyncio.sleep(0.02)
        assert hub.count == 1


async def test_a_query_and_a_mutation_over_the_socket_get_one_next_then_complete(
    server: LiveServer, http: httpx.AsyncClient, completed_payment: dict[str, Any]
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        query = await sub.subscribe(PAYMENT_STATUS, id=completed_payment["id"])
        assert await sub.receive() == {
            "id": query,
            "type": "next",
            "payload": {"data": {"paymentStatus": "COMPLETED"}},
        }
        assert await sub.receive() == {"id": query, "type": "complete"}
        mutation = await sub.subscribe(
            CREATE_ORDER, input={"lines": [{"sku": "MUG-WHT", "quantity": 1}]}
        )
        created = await sub.receive()
        assert created["id"] == mutation and created["type"] == "next"
        assert created["payload"]["data"]["createOrder"]["errors"] == []
        assert await sub.receive() == {"id": mutation, "type": "complete"}


async def test_over_the_socket_a_card_number_is_refused_as_over_http(
    alice: Client, server: LiveServer, http: httpx.AsyncClient, pending_order: dict[str, Any]
) -> None:
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe(
            PROCESS_PAYMENT,
            input={
                "orderId": pending_order["id"],
                "paymentMethod": "CREDIT_CARD",
                "token": "4242424242424242",
            },
        )
        answer = await sub.next()
    assert answer["processPayment"]["errors"][0]["code"] == "CARD_DATA_REJECTED"
    assert "4242424242424242" not in json.dumps(answer)


async def test_over_the_socket_a_query_is_held_to_the_same_limits(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    fields = ["orders", "items", "payments"] + ["order", "payments"] * 6
    deep = "query { " + " { ".join(fields) + " { id }" + " }" * len(fields)
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        await sub.subscribe(deep)
        assert await sub.refusal() == "QUERY_TOO_DEEP"


async def test_over_the_socket_an_unexpected_error_in_a_query_is_masked(
    server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the catalogue failing the way a bug would, with internals in its message
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("SELECT * FROM product -- sk_live_abcdef123456")

    monkeypatch.setattr(queries, "products", broken)
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        await sub.subscribe("{ products { sku } }")
        message = await sub.receive()
    text = json.dumps(message)
    assert "Unexpected error." in text and "INTERNAL_SERVER_ERROR" in text
    assert "SELECT" not in text and "sk_live" not in text


async def test_a_websocket_without_the_protocol_is_closed_with_4406(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    # (graphql-ws's older protocol, which payql does not speak)
    async with aconnect_ws(ws_url(server), http, subprotocols=["graphql-ws"]) as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
    assert (closed.value.code, closed.value.reason) == (4406, "Subprotocol not acceptable")


async def test_a_subscription_that_fails_after_it_is_held_gets_an_error_and_frees_its_id(
    server: LiveServer,
    http: httpx.AsyncClient,
    completed_payment: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a backlog read that fails once, the way the database going away would
    calls: list[int] = []

    async def failing_once(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("SELECT * FROM payment_event -- sk_live_abcdef123456")
        async for change in backlog(*args):
            yield change

    monkeypatch.setattr(graphql_ws, "backlog", failing_once)
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        # when Alice subscribes
        op_id = await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
        # then she is told it ended, masked, with a request id
        error = await sub.receive()
        assert (error["id"], error["type"]) == (op_id, "error")
        text = json.dumps(error)
        assert "Unexpected error." in text and "requestId" in text and "sk_live" not in text
        # and the id is free: subscribing under it again works
        await sub.subscribe_as(op_id, STATUS_CHANGED, paymentId=completed_payment["id"])
        again = await sub.receive()
        assert (again["id"], again["type"]) == (op_id, "next")


async def test_an_id_completed_during_its_backlog_and_reused_is_the_new_ones(
    admin: Client,
    server: LiveServer,
    http: httpx.AsyncClient,
    completed_payment: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a backlog whose first read is slow, then fails
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    async def slow_then_failing(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            started.set()
            await asyncio.to_thread(release.wait, WAIT)
            raise RuntimeError("the first read failed")
        async for change in backlog(*args):
            yield change

    monkeypatch.setattr(graphql_ws, "backlog", slow_then_failing)
    async with Subscription.connect(server.url, http, server.token("cus_alice")) as sub:
        await sub.ack()
        # when Alice subscribes, completes it while its backlog is read, and
        # subscribes again under the same id
        op_id = await sub.subscribe(STATUS_CHANGED, paymentId=completed_payment["id"])
        assert await asyncio.to_thread(started.wait, WAIT)
        await sub.ws.send_json({"id": op_id, "type": "complete"})
        await sub.subscribe_as(op_id, STATUS_CHANGED, paymentId=completed_payment["id"])
        assert (await sub.next())["paymentStatusChanged"]["status"] == "COMPLETED"
        # and the first one's read then fails
        release.set()
        await asyncio.sleep(0.1)
        # then the new subscription is untouched: it hears the next change
        await refund(admin, completed_payment["id"], amount="1")
        assert (await sub.next())["paymentStatusChanged"]["type"] == "refund.created"


@pytest.mark.parametrize("ws", ["websockets", "wsproto"])
async def test_every_uvicorn_websocket_implementation_is_served_and_times_out_with_4408(
    tmp_path: Path, http: httpx.AsyncClient, ws: str
) -> None:
    from servers import base_settings, running_server

    settings = base_settings(f"sqlite://{tmp_path / 'payql.sqlite3'}")
    with running_server(settings, ws=ws) as other:
        other.app.state.websocket.init_wait_s = 0.3
        # an acknowledged connection answers a query
        async with Subscription.connect(other.url, http, other.token("cus_alice")) as sub:
            await sub.ack()
            await sub.subscribe("{ __typename }")
            assert await sub.next() == {"__typename": "Query"}
        # and one that never sends connection_init is closed in time, saying why
        async with aconnect_ws(
            ws_url(other), http, subprotocols=["graphql-transport-ws"]
        ) as socket:
            with pytest.raises(WebSocketDisconnect) as closed:
                await asyncio.wait_for(socket.receive_json(), WAIT)
        assert (closed.value.code, closed.value.reason) == (
            4408,
            "Connection initialisation timeout",
        )


# -- a real graphql-ws client ----------------------------------------------------------


def test_the_graphql_ws_library_subscribes_resumes_with_after_and_queries(
    server: LiveServer, node_scripts: Path, awaiting_3ds: dict[str, Any]
) -> None:
    # given Alice's payment waiting for 3-D Secure
    payment = awaiting_3ds
    # when graphql-ws subscribes to it, 3-D Secure passes, and it reconnects with after
    done = subprocess.run(
        [
            "node",
            str(node_scripts / "live.mjs"),
            server.url,
            payment["id"],
            payment["clientSecret"],
        ],
        env={**os.environ, "PAYQL_TOKEN": server.token("cus_alice")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    # then it had the payment's state first, then the change
    live = got["live"]
    assert live[0]["status"] == "REQUIRES_ACTION"
    assert live[0]["payment"] == {"id": payment["id"], "status": "REQUIRES_ACTION"}
    assert live[-1]["status"] == "COMPLETED"
    # and resumed after the first message it had every later change once, in order
    assert got["replayed"] == live[1:]
    # and a query over the same socket gave one result
    assert got["answers"] == [{"data": {"paymentStatus": "COMPLETED"}}]
    assert got["connections"] == 2  # one for the first client, one for the second
