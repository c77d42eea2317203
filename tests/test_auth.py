"""Bearer tokens, and customers who see and touch only their own orders and payments."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from clients import Client
from conftest import pay, refund
from servers import LiveServer

from resolvers.auth import mint_token

PRODUCTS = "{ products { sku } }"
PAYMENT = "query ($id: ID!) { payment(id: $id) { id status } }"
ORDER = "query ($id: ID!) { order(id: $id) { id } }"
STATUS = "query ($id: ID!) { paymentStatus(id: $id) }"
PAYMENTS = "{ payments { total items { id } } }"
ORDERS = "{ orders(first: 100) { total items { id customer { id } } } }"
BY_ORDER = "query ($id: ID!) { paymentsByOrder(orderId: $id) { id } }"
SYNC = "mutation ($id: ID!) { syncPayment(id: $id) { payment { id } errors { code } } }"
CANCEL = "mutation ($id: ID!) { cancelPayment(id: $id) { payment { id } errors { code } } }"


def forged(server: LiveServer) -> str:
    return mint_token("not-the-secret-" * 3, sub="admin", role="admin")


def expired(server: LiveServer) -> str:
    return mint_token(server.settings.jwt_secret, sub="admin", role="admin", ttl=timedelta(-1))


def unsigned(server: LiveServer) -> str:
    return jwt.encode(
        {"sub": "admin", "role": "admin", "exp": 4102444800}, key=None, algorithm="none"
    )


def no_role(server: LiveServer) -> str:
    return jwt.encode(
        {"sub": "x", "exp": 4102444800}, server.settings.jwt_secret, algorithm="HS256"
    )


def unknown_role(server: LiveServer) -> str:
    return jwt.encode(
        {"sub": "x", "role": "superadmin", "exp": 4102444800},
        server.settings.jwt_secret,
        algorithm="HS256",
    )


def other_algorithm(server: LiveServer) -> str:
    # the right secret, but an algorithm payql does not accept (no algorithm confusion)
    return jwt.encode(
        {"sub": "admin", "role": "admin", "exp": 4102444800},
        server.settings.jwt_secret,
        algorithm="HS512",
    )


def tampered(server: LiveServer) -> str:
    # a customer's real token with its claims edited to make her an admin
    header, _, signature = server.token("cus_alice").split(".")
    claims = base64.urlsafe_b64encode(
        json.dumps({"sub": "cus_alice", "role": "admin", "exp": 4102444800}).encode()
    )
    return f"{header}.{claims.decode().rstrip('=')}.{signature}"


@pytest.mark.parametrize(
    "make_token",
    [None, forged, expired, unsigned, no_role, unknown_role, other_algorithm, tampered],
)
async def test_missing_forged_or_expired_tokens_are_refused(
    anonymous: Client, server: LiveServer, make_token: Any
) -> None:
    # given a request with no token, or one that is forged, expired, unsigned or incomplete
    client = anonymous.as_(make_token(server) if make_token else None)
    # when it asks for anything
    body = await client.post(PRODUCTS)
    # then it is refused with 401 and nothing is executed
    assert body["_status"] == 401
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


async def test_a_malformed_authorization_header_is_refused(
    anonymous: Client, server: LiveServer, http: Any
) -> None:
    token = server.token("cus_alice")
    response = await http.post(
        f"{server.url}/graphql", json={"query": PRODUCTS}, headers={"Authorization": token}
    )
    assert response.status_code == 401


async def test_a_customer_can_neither_read_nor_pay_nor_refund_anothers_payment(
    alice: Client, bob: Client, admin: Client, pending_order: dict[str, Any]
) -> None:
    # given Alice's paid order
    payment = (await pay(alice, pending_order["id"], token="pm_card_visa"))["payment"]
    # then for Bob it does not exist
    assert (await bob(PAYMENT, id=payment["id"]))["payment"] is None
    assert (await bob(STATUS, id=payment["id"]))["paymentStatus"] is None
    assert (await bob(ORDER, id=pending_order["id"]))["order"] is None
    assert (await bob(BY_ORDER, id=pending_order["id"]))["paymentsByOrder"] == []
    sync = (await bob(SYNC, id=payment["id"]))["syncPayment"]
    assert [e["code"] for e in sync["errors"]] == ["NOT_FOUND"]
    cancel = (await bob(CANCEL, id=payment["id"]))["cancelPayment"]
    assert [e["code"] for e in cancel["errors"]] == ["NOT_FOUND"]
    # and he can neither pay her order nor refund her payment
    paying = await pay(bob, pending_order["id"], token="pm_card_visa")
    assert [e["code"] for e in paying["errors"]] == ["NOT_FOUND"]
    refunding = await refund(bob, payment["id"], amount="1")
    assert [e["code"] for e in refunding["errors"]] == ["FORBIDDEN"]
    # while Alice and the admin see it
    assert (await alice(PAYMENT, id=payment["id"]))["payment"]["status"] == "COMPLETED"
    assert (await admin(PAYMENT, id=payment["id"]))["payment"]["status"] == "COMPLETED"


async def test_a_customer_lists_only_her_own_orders(
    alice: Client, bob: Client, pending_order: dict[str, Any]
) -> None:
    orders = (await bob(ORDERS))["orders"]["items"]
    assert pending_order["id"] not in {o["id"] for o in orders}
    assert {o["customer"]["id"] for o in orders} <= {"cus_bob"}
    mine = (await alice(ORDERS))["orders"]["items"]
    assert pending_order["id"] in {o["id"] for o in mine}
    assert {o["customer"]["id"] for o in mine} == {"cus_alice"}


async def test_listing_all_payments_is_for_admins(
    alice: Client, admin: Client, completed_payment: dict[str, Any]
) -> None:
    body = await alice.post(PAYMENTS)
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    page = (await admin(PAYMENTS))["payments"]
    assert page["total"] >= 1


CAPTURE = "mutation ($id: ID!) { capturePayment(id: $id) { payment { id } errors { code } } }"
RECEIVED = """mutation ($id: ID!) {
  markPaymentReceived(id: $id) { payment { id } errors { code } } }"""
ORDERS_AFTER = """query ($after: String) {
  orders(first: 100, after: $after) { items { id customer { id } } endCursor } }"""
PAYMENTS_OF_ORDER = """query ($id: ID!) {
  payments(filter: {orderId: $id}) { items { id } } }"""


async def test_a_customer_cannot_capture_or_mark_received_anothers_payment(
    alice: Client, bob: Client, authorized_payment: dict[str, Any]
) -> None:
    # (both are for admins only)
    capture = (await bob(CAPTURE, id=authorized_payment["id"]))["capturePayment"]
    assert capture["payment"] is None
    assert [e["code"] for e in capture["errors"]] == ["FORBIDDEN"]
    received = (await bob(RECEIVED, id=authorized_payment["id"]))["markPaymentReceived"]
    assert received["payment"] is None
    assert [e["code"] for e in received["errors"]] == ["FORBIDDEN"]
    # and Alice's payment is as it was
    assert (await alice(PAYMENT, id=authorized_payment["id"]))["payment"]["status"] == "AUTHORIZED"


async def test_a_cursor_from_anothers_list_shows_only_ones_own_orders(
    alice: Client, bob: Client, pending_order: dict[str, Any]
) -> None:
    # given a cursor taken from Alice's list of orders
    cursor = (await alice(ORDERS_AFTER))["orders"]["endCursor"]
    # when Bob pages with it
    page = (await bob(ORDERS_AFTER, after=cursor))["orders"]["items"]
    # then he sees only his own orders
    assert {o["customer"]["id"] for o in page} <= {"cus_bob"}
    assert pending_order["id"] not in {o["id"] for o in page}


async def test_a_customer_cannot_filter_the_payment_list_for_anothers_order(
    bob: Client, completed_payment: dict[str, Any]
) -> None:
    body = await bob.post(PAYMENTS_OF_ORDER, id=completed_payment["orderId"])
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
