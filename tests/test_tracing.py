"""Tracing with OpenTelemetry: spans of a request, through the real server, caught by
the SDK's in-memory exporter; the trace id in the request's log line; nothing secret
in any span; off unless the settings say so."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients import WAIT, Subscription
from gateway_support import approve_quietly, post_webhook, stripe_event, stripe_intent
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from servers import (
    LiveServer,
    base_settings,
    database,
    free_port,
    running_server,
    wait_until_healthy,
)

from gateways.base import GatewayError
from models import spans as spans_module
from models.carddata import contains_pan
from payql.logs import JSONFormatter
from payql.settings import DEV_JWT_SECRET, Settings, SettingsError
from payql.tracing import TraceRequests, Tracing, pan_free_ids
from resolvers.auth import mint_token
from schema.tracing import TraceOperation

CREATE_ORDER = """
mutation PlaceOrder($input: CreateOrderInput!) {
  createOrder(input: $input) { order { id } errors { code } }
}
"""

PAY = """
mutation Pay($input: ProcessPaymentInput!) {
  processPayment(input: $input) {
    payment { id status } clientSecret errors { code field }
  }
}
"""

PRODUCTS = "query Shelf { products { sku } }"

PAYMENT = "query Payment($id: ID!) { payment(id: $id) { id amount currency gatewayTransactionId } }"

NO_SUCH_FIELD = "query Broken { products { sku colour } }"

SYNC = "mutation Sync($id: ID!) { syncPayment(id: $id) { payment { status } errors { code } } }"

STATUS_CHANGED = """
subscription Watch($paymentId: ID) {
  paymentStatusChanged(paymentId: $paymentId) { cursor status }
}
"""

CARD_NUMBER = "4242 4242 4242 4242"
EMAIL = "grace.hopper@example.org"


# -- a traced server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced(
    backend: str, tmp_path_factory: pytest.TempPathFactory, exporter: InMemorySpanExporter
) -> Iterator[LiveServer]:
    """A server tracing into the in-memory exporter, through a provider of its own
    (nothing process-wide is touched)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with (
        database(backend, tmp_path_factory.mktemp(f"traced-{backend}")) as url,
        running_server(base_settings(url), tracer_provider=provider) as live,
    ):
        yield live


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The exporter, emptied of what earlier tests left."""
    exporter.clear()
    return exporter


@pytest.fixture
def alice_token(traced: LiveServer) -> str:
    return traced.token("cus_alice", email="alice@example.com")


@pytest.fixture
def request_lines() -> Iterator[io.StringIO]:
    """The request log lines, formatted as production writes them (JSON), as they are
    written: in the server's thread, under the request's span."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("payql.request")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def post(
    http: httpx.AsyncClient,
    server: LiveServer,
    token: str,
    query: str,
    headers: dict[str, str] | None = None,
    **variables: Any,
) -> httpx.Response:
    response = await http.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    )
    assert response.status_code == 200, response.text
    return response


async def pay(
    http: httpx.AsyncClient,
    server: LiveServer,
    token: str,
    order_id: str,
    card: str,
    **fields: Any,
) -> httpx.Response:
    """processPayment for the order by credit card, `card` the card's token."""
    return await post(
        http,
        server,
        token,
        PAY,
        input={"orderId": order_id, "paymentMethod": "CREDIT_CARD", "token": card, **fields},
    )


@pytest.fixture
async def unpaid_order(traced: LiveServer, http: httpx.AsyncClient, alice_token: str) -> str:
    """The id of Alice's order for a mug, on the traced server, not yet paid."""
    response = await post(
        http,
        traced,
        alice_token,
        CREATE_ORDER,
        input={"lines": [{"sku": "MUG-WHT", "quantity": 1}]},
    )
    payload = response.json()["data"]["createOrder"]
    assert payload["errors"] == [], payload
    order_id: str = payload["order"]["id"]
    return order_id


@pytest.fixture
async def awaiting_3ds(
    traced: LiveServer, http: httpx.AsyncClient, alice_token: str, unpaid_order: str
) -> dict[str, Any]:
    """Alice's payment on the traced server, waiting for 3-D Secure, with its client
    secret (this module's own, in place of the one conftest makes on the plain server)."""
    response = await pay(http, traced, alice_token, unpaid_order, "pm_card_authenticationRequired")
    paying = response.json()["data"]["processPayment"]
    assert paying["payment"]["status"] == "REQUIRES_ACTION", paying
    return {**paying["payment"], "clientSecret": paying["clientSecret"]}


async def request_spans(
    exporter: InMemorySpanExporter, response: httpx.Response
) -> list[ReadableSpan]:
    """Every span of the trace of the request that got `response` (found by the request
    id its server span carries), once that span has ended."""
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + WAIT
    while True:
        finished = exporter.get_finished_spans()
        roots = [s for s in finished if attribute(s, "payql.request_id") == request_id]
        if roots:
            trace_id = context_of(roots[0]).trace_id
            return [s for s in finished if context_of(s).trace_id == trace_id]
        assert time.monotonic() < deadline, f"no span for request {request_id}"
        await asyncio.sleep(0.02)


def context_of(span: ReadableSpan) -> trace.SpanContext:
    context = span.context
    assert context is not None
    return context


def attribute(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def as_text(found: list[ReadableSpan]) -> str:
    """The spans as the SDK writes them out: names, attributes, events, status."""
    return json.dumps([json.loads(span.to_json()) for span in found])


def named(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def one(found: list[ReadableSpan], name: str) -> ReadableSpan:
    [only] = named(found, name)
    return only


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def is_under(span: ReadableSpan, ancestor: ReadableSpan, found: list[ReadableSpan]) -> bool:
    by_id = {context_of(s).span_id: s for s in found}
    parent = parent_of(span)
    while parent is not None:
        if parent == context_of(ancestor).span_id:
            return True
        above = by_id.get(parent)
        parent = parent_of(above) if above is not None else None
    return False


# -- the spans of a payment ----------------------------------------------------------------


async def test_a_payment_is_one_trace_with_the_gateway_phases_and_publish_under_its_operation(
    traced: LiveServer,
    http: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    alice_token: str,
    unpaid_order: str,
) -> None:
    # given an order (unpaid_order)
    # when Alice pays it with a card
    response = await pay(http, traced, alice_token, unpaid_order, "pm_card_visa")
    payment = response.json()["data"]["processPayment"]["payment"]
    assert payment["status"] == "COMPLETED"
    found = await request_spans(spans, response)
    # then the request's server span holds the operation's span
    server = one(found, "POST /graphql")
    assert server.kind is SpanKind.SERVER and server.parent is None
    assert attribute(server, "http.route") == "/graphql"
    assert attribute(server, "http.response.status_code") == 200
    operation = one(found, "mutation processPayment")
    assert parent_of(operation) == context_of(server).span_id
    assert attribute(operation, "graphql.operation.type") == "mutation"
    assert attribute(operation, "graphql.operation.name") == "Pay"
    assert operation.status.status_code is StatusCode.UNSET
    # and under it: the intent recorded, the gateway's charge, the outcome applied and
    # both changes published, in that order, each a child of the operation (the
    # gateway's span closed before the outcome was applied)
    record = one(found, "payql.phase1 record")
    charge = one(found, "payql.gateway charge")
    [apply] = named(found, "payql.apply")
    publishes = named(found, "payql.publish")
    for child in (record, charge, apply, *publishes):
        assert parent_of(child) == context_of(operation).span_id, child.name
    assert attribute(record, "payql.payment.id") == payment["id"]
    assert charge.kind is SpanKind.CLIENT
    assert attribute(charge, "payql.gateway") == "simulated"
    assert attribute(charge, "payql.gateway.operation") == "charge"
    assert attribute(charge, "payql.gateway.status") == "succeeded"
    assert attribute(charge, "payql.payment.id") == payment["id"]
    assert attribute(apply, "payql.payment.id") == payment["id"]
    assert attribute(apply, "payql.source") == "GATEWAY"
    assert [attribute(p, "payql.event.type") for p in publishes] == [
        "payment.created",
        "payment.status_changed",
    ]
    assert all(attribute(p, "payql.payment.id") == payment["id"] for p in publishes)
    assert record.end_time <= charge.start_time  # type: ignore[operator]
    assert charge.end_time <= apply.start_time  # type: ignore[operator]
    # and every span of the request is in that one trace, under its server span
    assert all(is_under(s, server, found) for s in found if s is not server)


async def test_a_declined_charge_and_a_refused_write_are_marked_on_their_spans(
    traced: LiveServer,
    http: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    alice_token: str,
    unpaid_order: str,
) -> None:
    # given an order (unpaid_order)
    # when Alice pays it for the wrong amount
    response = await pay(http, traced, alice_token, unpaid_order, "pm_card_visa", amount="0.01")
    assert response.json()["data"]["processPayment"]["errors"][0]["code"] == "AMOUNT_MISMATCH"
    # then the transaction that refused it says why, by code, and no gateway was called
    found = await request_spans(spans, response)
    record = one(found, "payql.phase1 record")
    assert record.status.status_code is StatusCode.ERROR
    assert attribute(record, "error.type") == "DomainError"
    assert attribute(record, "payql.error.code") == "AMOUNT_MISMATCH"
    assert named(found, "payql.gateway charge") == []
    # when she pays with a card that is declined
    response = await pay(http, traced, alice_token, unpaid_order, "pm_card_chargeDeclined")
    assert response.json()["data"]["processPayment"]["payment"]["status"] == "FAILED"
    # then the gateway's span has its answer
    charge = one(await request_spans(spans, response), "payql.gateway charge")
    assert attribute(charge, "payql.gateway.status") == "failed"


async def test_a_gateway_failure_marks_its_span_by_type_never_by_its_words(
    traced: LiveServer,
    http: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    alice_token: str,
    unpaid_order: str,
) -> None:
    # given an order (unpaid_order) and a gateway that will refuse the next charge,
    # quoting the token
    traced.simulated.inject("charge", GatewayError("No such PaymentMethod: 'pm_card_visa'"))
    # when Alice pays
    response = await pay(http, traced, alice_token, unpaid_order, "pm_card_visa")
    assert response.json()["data"]["processPayment"]["errors"][0]["code"] == "GATEWAY_ERROR"
    # then the gateway's span failed, saying with what, not what the gateway said
    found = await request_spans(spans, response)
    charge = one(found, "payql.gateway charge")
    assert charge.status.status_code is StatusCode.ERROR
    assert charge.status.description == "GatewayError"
    assert attribute(charge, "error.type") == "GatewayError"
    assert charge.events == ()
    # and the outcome was still applied, under the operation
    [apply] = named(found, "payql.apply")
    assert parent_of(apply) == parent_of(charge)
    assert "pm_card_visa" not in as_text(found)


# -- webhooks --------------------------------------------------------------------------


async def test_a_webhook_gets_its_span_with_the_gateway_the_outcome_and_the_status(
    traced: LiveServer,
    http: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    alice_token: str,
    awaiting_3ds: dict[str, Any],
) -> None:
    # given a payment waiting for 3-D Secure (awaiting_3ds)
    detail = await post(http, traced, alice_token, PAYMENT, id=awaiting_3ds["id"])
    intent = stripe_intent(detail.json()["data"]["payment"])
    event = stripe_event("payment_intent.succeeded", intent)
    # when the gateway's webhook says it succeeded
    applied = await post_webhook(http, traced, event)
    assert applied.json()["outcome"] == "applied"
    found = await request_spans(spans, applied)
    # then the route has its span, under the request's, with the outcome applied
    server = one(found, "POST /webhooks/{gateway}")
    webhook = one(found, "payql.webhook")
    assert parent_of(webhook) == context_of(server).span_id
    assert attribute(webhook, "payql.gateway") == "simulated"
    assert attribute(webhook, "payql.webhook.outcome") == "applied"
    assert attribute(webhook, "payql.webhook.event_type") == "payment_intent.succeeded"
    assert attribute(webhook, "http.response.status_code") == 200
    # and the change is applied and published under it
    assert all(is_under(s, webhook, found) for s in named(found, "payql.apply"))
    [published] = named(found, "payql.publish")
    assert is_under(published, webhook, found)
    assert attribute(published, "payql.event.type") == "payment.status_changed"
    # when the same event comes again
    again = await post_webhook(http, traced, event)
    # then it is a duplicate
    webhook = one(await request_spans(spans, again), "payql.webhook")
    assert attribute(webhook, "payql.webhook.outcome") == "duplicate"
    # when a forged one comes
    forged = await post_webhook(http, traced, event, secret="whsec_not_ours")
    assert forged.status_code == 400
    # then it is refused, 400
    webhook = one(await request_spans(spans, forged), "payql.webhook")
    assert attribute(webhook, "payql.webhook.outcome") == "refused"
    assert attribute(webhook, "http.response.status_code") == 400


async def test_a_webhook_for_no_gateway_of_ours_names_none(
    traced: LiveServer, http: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    # when a webhook is posted to a gateway payql does not have
    response = await http.post(f"{traced.url}/webhooks/pm_card_visa", content=b"{}")
    assert response.status_code == 404
    # then its span says so, without the name it was given
    found = await request_spans(spans, response)
    webhook = one(found, "payql.webhook")
    assert attribute(webhook, "payql.webhook.outcome") == "unknown_gateway"
    assert attribute(webhook, "payql.gateway") is None
    assert "pm_card_visa" not in as_text(found)


# -- GraphQL errors --------------------------------------------------------------------


async def test_a_graphql_error_sets_the_operations_status(
    traced: LiveServer, http: httpx.AsyncClient, spans: InMemorySpanExporter, alice_token: str
) -> None:
    # when a query asks for a field that does not exist
    response = await post(http, traced, alice_token, NO_SUCH_FIELD)
    assert response.json()["errors"]
    # then its operation's span is an error, by code, named all the same
    operation = one(await request_spans(spans, response), "query products")
    assert operation.status.status_code is StatusCode.ERROR
    assert operation.status.description == "GRAPHQL_VALIDATION_FAILED"
    assert attribute(operation, "error.type") == "GRAPHQL_VALIDATION_FAILED"
    assert attribute(operation, "graphql.operation.name") == "Broken"
    # when one is too deep
    fields = ['payment(id: "pay_x")'] + ["order", "payments"] * 6
    deep = "query Deep { " + " { ".join(fields) + " { id }" + " }" * len(fields)
    response = await post(http, traced, alice_token, deep)
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"
    # then the span has the limit's code
    operation = one(await request_spans(spans, response), "query payment")
    assert operation.status.description == "QUERY_TOO_DEEP"
    # when a query succeeds
    response = await post(http, traced, alice_token, PRODUCTS)
    # then its status is left unset
    operation = one(await request_spans(spans, response), "query products")
    assert operation.status.status_code is StatusCode.UNSET
    assert attribute(operation, "error.type") is None


# -- subscriptions ---------------------------------------------------------------------


async def test_a_subscription_gets_one_span_for_the_subscribe_not_one_per_message(
    traced: LiveServer,
    http: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    alice_token: str,
    awaiting_3ds: dict[str, Any],
) -> None:
    # given a payment waiting for 3-D Secure (awaiting_3ds)
    payment_id = awaiting_3ds["id"]
    async with Subscription.connect(traced.url, http, alice_token) as sub:
        await sub.ack()
        # when Alice subscribes to it
        await sub.subscribe(STATUS_CHANGED, paymentId=payment_id)
        assert (await sub.next())["paymentStatusChanged"]["status"] == "REQUIRES_ACTION"
        # then the subscribe has its span, ended with the first message
        subscribe = await finished(spans, "subscription paymentStatusChanged")
        assert attribute(subscribe, "graphql.operation.type") == "subscription"
        assert attribute(subscribe, "graphql.operation.name") == "Watch"
        assert subscribe.status.status_code is StatusCode.UNSET
        # when the payment changes and the change is pushed
        await approve_quietly(http, traced, awaiting_3ds["clientSecret"])
        await post(http, traced, alice_token, SYNC, id=payment_id)
        assert (await sub.next())["paymentStatusChanged"]["status"] == "COMPLETED"
        # then no span was made for the message pushed
        assert named(spans.get_finished_spans(), "subscription paymentStatusChanged") == [subscribe]
    # and once the websocket closes, its span is the subscribe's parent
    websocket = await finished(spans, "WS /graphql")
    assert websocket.kind is SpanKind.SERVER
    assert parent_of(subscribe) == context_of(websocket).span_id
    assert context_of(subscribe).trace_id == context_of(websocket).trace_id


async def test_a_refused_subscription_marks_its_span(
    traced: LiveServer, http: httpx.AsyncClient, spans: InMemorySpanExporter, alice_token: str
) -> None:
    async with Subscription.connect(traced.url, http, alice_token) as sub:
        await sub.ack()
        # when Alice subscribes to a payment that is not hers
        await sub.subscribe(STATUS_CHANGED, paymentId="pay_not_hers")
        assert await sub.refusal() == "NOT_FOUND"
        # then the subscribe's span says so
        subscribe = await finished(spans, "subscription paymentStatusChanged")
        assert subscribe.status.status_code is StatusCode.ERROR
        assert subscribe.status.description == "NOT_FOUND"


async def finished(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    deadline = time.monotonic() + WAIT
    while not (found := named(exporter.get_finished_spans(), name)):
        assert time.monotonic() < deadline, f"no {name} span"
        await asyncio.sleep(0.02)
    [span] = found
    return span


# -- the log line ----------------------------------------------------------------------


async def test_the_trace_id_is_in_the_requests_json_log_line(
    traced: LiveServer,
    http: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    alice_token: str,
    request_lines: io.StringIO,
) -> None:
    # when a traced request is served
    response = await post(http, traced, alice_token, PRODUCTS)
    server = one(await request_spans(spans, response), "POST /graphql")
    # then its log line has the trace id and the request's span id, in hex
    entry = await log_line(request_lines, response.headers["x-request-id"])
    assert entry["trace_id"] == format_trace_id(context_of(server).trace_id)
    assert len(entry["trace_id"]) == 32 and int(entry["trace_id"], 16)
    assert entry["span_id"] == format_span_id(context_of(server).span_id)
    assert entry["operation"] == "query Shelf"


async def test_a_callers_traceparent_is_continued(
    traced: LiveServer, http: httpx.AsyncClient, spans: InMemorySpanExporter, alice_token: str
) -> None:
    # given a caller that is traced itself
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    traceparent = f"00-{trace_id}-{parent_id}-01"
    # when it calls payql
    response = await post(http, traced, alice_token, PRODUCTS, {"traceparent": traceparent})
    # then payql's spans are in the caller's trace, under the caller's span
    server = one(await request_spans(spans, response), "POST /graphql")
    assert format_trace_id(context_of(server).trace_id) == trace_id
    assert server.parent is not None and format_span_id(server.parent.span_id) == parent_id


async def log_line(stream: io.StringIO, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while True:
        for line in stream.getvalue().splitlines():
            entry: dict[str, Any] = json.loads(line)
            if entry.get("request_id") == request_id:
                return entry
        assert time.monotonic() < deadline, f"no log line for request {request_id}"
        await asyncio.sleep(0.02)


# -- nothing secret in a span ----------------------------------------------------------


async def test_no_card_number_token_secret_or_email_is_in_any_span(
    traced: LiveServer, http: httpx.AsyncClient, spans: InMemorySpanExporter, alice_token: str
) -> None:
    # given an order for a customer with an email address
    response = await post(
        http,
        traced,
        alice_token,
        CREATE_ORDER,
        input={
            "lines": [{"sku": "MUG-WHT", "quantity": 1}],
            "customer": {"name": "Grace Hopper", "email": EMAIL},
        },
    )
    order_id = response.json()["data"]["createOrder"]["order"]["id"]
    responses = [response]
    # when a card number is sent in the metadata (refused)
    metadata = {"note": CARD_NUMBER, "contact": EMAIL}
    response = await pay(http, traced, alice_token, order_id, "pm_card_visa", metadata=metadata)
    errors = response.json()["data"]["processPayment"]["errors"]
    assert errors == [{"code": "CARD_DATA_REJECTED", "field": "metadata.note"}]
    responses.append(response)
    # and the order is paid with a token that needs 3-D Secure, the email in metadata
    response = await pay(
        http,
        traced,
        alice_token,
        order_id,
        "pm_card_authenticationRequired",
        metadata={"contact": EMAIL},
    )
    paying = response.json()["data"]["processPayment"]
    client_secret = paying["clientSecret"]
    assert client_secret and "_secret_" in client_secret
    responses.append(response)
    # and a query names a card number where a payment id goes
    responses.append(await post(http, traced, alice_token, PAYMENT, id=CARD_NUMBER))
    # and queries name root fields no schema has: a secret key and a card number
    for field in ("sk_live_51HabcDEF", f"_{CARD_NUMBER.replace(' ', '')}"):
        response = await post(http, traced, alice_token, f"query {{ {field} }}")
        assert response.json()["errors"], response.text
        responses.append(response)
    # then no span of any of these traces holds any of them, anywhere: names,
    # attributes, events, status
    found = [span for r in responses for span in await request_spans(spans, r)]
    assert len(found) >= 10
    assert named(found, "payql.gateway charge")  # the payment did reach the gateway
    text = as_text(found)
    for secret in (
        CARD_NUMBER,
        CARD_NUMBER.replace(" ", ""),
        EMAIL,
        "alice@example.com",
        "pm_card_visa",
        "pm_card_authenticationRequired",
        client_secret,
        alice_token,
        traced.settings.jwt_secret,
        traced.settings.simulated_webhook_secret,
        "sk_live_51HabcDEF",
    ):
        assert secret not in text, secret
    assert "@" not in text
    assert "query ?" in {span.name for span in found}  # the unknown root fields' operations


@pytest.mark.parametrize(
    "value",
    [
        "pm_card_visa",
        "tok_visa",
        "Bearer abc.def",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
        "sk_live_51Habc",
        "whsec_abc",
        "pi_3Nabc_secret_XYZ",
        "ada@example.com",
        "4242 4242 4242 4242",
        4242424242424242,
        ["pay_1", "tok_visa"],
        {"a": "dict"},
    ],
)
def test_an_attribute_that_would_hold_a_secret_is_dropped(value: Any) -> None:
    assert spans_module.clean({"payql.x": value}) == {}


@pytest.mark.parametrize(
    "value",
    ["pay_x7f3k2", "succeeded", "mutation processPayment", "payment_intent.succeeded", 13, 1.5],
)
def test_names_and_ids_payql_chose_are_kept(value: Any) -> None:
    assert spans_module.clean({"payql.x": value}) == {"payql.x": value}


def test_trace_and_span_ids_never_look_like_a_card_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a random source whose first ids each hold a card number in their hex
    card_like = [int("abcd4242424242424242abcdefabcdef", 16), int("4242424242424242", 16)]
    clean = [int("a" * 32, 16), int("b" * 16, 16)]
    drawn = iter([card_like[0], clean[0], card_like[1], clean[1]])
    monkeypatch.setattr(random, "getrandbits", lambda bits: next(drawn))
    assert contains_pan(format_trace_id(card_like[0]))
    assert contains_pan(format_span_id(card_like[1]))
    ids = pan_free_ids()
    # when a trace id and a span id are made
    # then the card-like ones are drawn again
    assert ids.generate_trace_id() == clean[0]
    assert ids.generate_span_id() == clean[1]


# -- off unless asked for --------------------------------------------------------------


async def test_tracing_is_off_by_default(
    server: LiveServer, http: httpx.AsyncClient, request_lines: io.StringIO
) -> None:
    # given a server with the default settings
    app = server.app
    # then nothing is set up: no provider, no request spans, no operation spans, no
    # wrapped gateway, and nothing process-wide
    assert server.settings.tracing == "off"
    assert not app.state.tracing.enabled and app.state.tracing.provider is None
    assert all(m.cls is not TraceRequests for m in app.user_middleware)
    schema = next(r.app for r in app.routes if getattr(r, "path", "") == "/graphql").schema
    assert TraceOperation not in schema.extensions
    assert not hasattr(server.service.gateways["simulated"].charge, "__wrapped__")
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    # when a request is served
    token = server.token("cus_alice")
    response = await http.post(
        f"{server.url}/graphql",
        json={"query": PRODUCTS},
        headers={"Authorization": f"Bearer {token}"},
    )
    # then its log line has no trace id
    entry = await log_line(request_lines, response.headers["x-request-id"])
    assert "trace_id" not in entry and "span_id" not in entry


# -- the settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "tracing", "endpoint"),
    [
        ({}, "off", ""),
        ({"PAYQL_OTEL": "1"}, "console", ""),
        ({"PAYQL_OTEL": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "off", ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "otlp", "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/t"}, "otlp", "https://c/t"),
        (
            {"PAYQL_OTEL": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            "otlp",
            "http://c:4318/v1/traces",
        ),
        ({"PAYQL_OTEL": "1", "OTEL_SDK_DISABLED": "true"}, "off", ""),
    ],
)
def test_the_settings_turn_tracing_on(environ: dict[str, str], tracing: str, endpoint: str) -> None:
    settings = Settings.from_env(environ)
    assert (settings.tracing, settings.otel_traces_endpoint) == (tracing, endpoint)


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({}, "payql"),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=pay%20api"},
            "pay api",
        ),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": "b"}, "b"),
    ],
)
def test_the_service_is_named_as_opentelemetry_says_else_payql(
    environ: dict[str, str], name: str
) -> None:
    assert Settings.from_env({"PAYQL_OTEL": "1", **environ}).otel_service_name == name


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"},
        {"PAYQL_OTEL": "maybe"},
    ],
)
def test_bad_tracing_settings_are_refused_with_a_reason(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="OTEL"):
        Settings.from_env(environ)


def test_the_settings_make_the_provider_and_exporter_they_name() -> None:
    # when tracing is asked for on the console, and then to a collector
    console = Tracing.of(Settings.from_env({"PAYQL_OTEL": "1"}))
    otlp = Tracing.of(Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}))
    try:
        # then each has an SDK provider of its own, named payql, with its exporter
        for tracing in (console, otlp):
            assert tracing.enabled and tracing.owned
            assert isinstance(tracing.provider, TracerProvider)
            assert tracing.provider.resource.attributes["service.name"] == "payql"
        assert isinstance(console.exporter, ConsoleSpanExporter)
        assert isinstance(otlp.exporter, OTLPSpanExporter)
        assert console.provider is not otlp.provider
        # and the process-wide provider is left alone
        assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    finally:
        console.close()
        otlp.close()


# -- the exporters, for real -------------------------------------------------------------


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector's traces endpoint: keeps what it is sent."""

    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).received.append(request)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    handler = type("Received", (Collector,), {"received": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/traces", handler.received
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_spans_reach_an_otlp_collector_over_http_by_the_servers_exit(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    with collector() as (endpoint, received), database("sqlite", tmp_path) as url:
        # given a server whose settings name a collector
        settings = replace(base_settings(url), tracing="otlp", otel_traces_endpoint=endpoint)
        with running_server(settings) as live:
            # when it serves a request
            token = live.token("cus_alice")
            await http.post(
                f"{live.url}/graphql",
                json={"query": PRODUCTS},
                headers={"Authorization": f"Bearer {token}"},
            )
        # then by the time it has stopped, the collector has the request's spans, from payql
        names = {
            span.name
            for request in received
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        }
        assert {"POST /graphql", "query products"} <= names
        services = {
            attribute.value.string_value
            for request in received
            for resource in request.resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }
        assert services == {"payql"}


def test_payql_serve_with_payql_otel_prints_its_spans(tmp_path: Path) -> None:
    # given `payql serve` with PAYQL_OTEL=1
    port = free_port()
    env = {
        **os.environ,
        "PAYQL_OTEL": "1",
        "PAYQL_DATABASE_URL": f"sqlite://{tmp_path / 'payql.sqlite3'}",
        "PAYQL_CUSTOMER_EMAILS": "0",
        "PAYQL_RECONCILE_EVERY_S": "0",
    }
    for name in list(env):
        if name.startswith("OTEL_"):
            del env[name]
    out = tmp_path / "stdout"
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "payql.cli", "serve", "--port", str(port)],
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, process, lambda: "payql serve did not start")
            # when a GraphQL request is served
            token = mint_token(DEV_JWT_SECRET, sub="cus_alice", role="customer", email="a@b.c")
            response = httpx.post(
                f"{url}/graphql",
                json={"query": PRODUCTS},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=30)
    # then its spans were printed on stdout, as JSON
    printed = out.read_text()
    assert '"name": "query products"' in printed
    assert '"name": "POST /graphql"' in printed
    assert '"service.name": "payql"' in printed
