"""Card data guard: a card number in any string input is refused, never stored, never logged.

payql's PCI posture (SAQ A) rests on card data never reaching it. Each test makes a
fresh Luhn-valid number, so finding it anywhere afterwards can only be a leak.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from clients import Client, Subscription
from conftest import place_order
from servers import LiveServer

from models.carddata import contains_pan, luhn_valid, redact_pans

FORMATS: dict[str, Callable[[str], str]] = {
    "plain": lambda pan: pan,
    "spaces": lambda pan: " ".join(pan[i : i + 4] for i in range(0, len(pan), 4)),
    "dashes": lambda pan: "-".join(pan[i : i + 4] for i in range(0, len(pan), 4)),
    "in a sentence": lambda pan: f"my card is {pan} exp 12/34, thanks",
    "dots and double spaces": lambda pan: f"{pan[:4]}.{pan[4:8]}  {pan[8:12]} - {pan[12:]}",
    "full-width digits, no-break spaces": lambda pan: "\u00a0".join(
        "".join(chr(0xFF10 + int(d)) for d in pan[i : i + 4]) for i in range(0, len(pan), 4)
    ),
}


def fresh_pan(length: int = 16) -> str:
    """A random Luhn-valid card number starting with 4 (Visa's range)."""
    while True:
        body = "4" + "".join(random.choice("0123456789") for _ in range(length - 2))
        for check in "0123456789":
            if luhn_valid(body + check):
                return body + check


# -- the detector ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "amex 3782 822463 10005",
        "6011111111111117",  # Discover
        "4222222222222",  # 13 digits
        "630400000000000000?",  # 19 digits (Maestro), its check digit filled in below
        "order 12 / card 5555555555554444 / thanks",
        "4242 4242 4242 4242 1234",  # a card number next to other digits
        "4242  4242\t4242\n4242",
        "4242 - 4242 - 4242 - 4242",
        "4242.4242.4242.4242",
        "4242\u200b4242\u200b4242\u200b4242",  # zero-width spaces
        "４２４２４２４２４２４２４２４２",  # full-width digits
    ],
)
def test_card_numbers_are_found_in_any_format(text: str) -> None:
    if text.endswith("?"):
        text = next(text[:-1] + d for d in "0123456789" if luhn_valid(text[:-1] + d))
    assert contains_pan(text)
    assert "[card number removed]" in redact_pans(text)


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # fails the Luhn check
        "424242424242",  # 12 digits
        "12345678901234567890123",  # 23 digits: no card number
        "ORD-2026-000104",
        "+1 415 555 0100",
        "2026-11-22T01:43:22Z",
        "2026-11-22 01:43:22.123456",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert not contains_pan(text)
    assert redact_pans(text) == text


# -- through the API -------------------------------------------------------------------

CREATE_ORDER = """mutation ($input: CreateOrderInput!) {
  createOrder(input: $input) { order { id } errors { code field message } } }"""
PROCESS_PAYMENT = """mutation ($input: ProcessPaymentInput!) {
  processPayment(input: $input) { payment { id } errors { code field message } } }"""
REFUND = """mutation ($input: RefundPaymentInput!) {
  refundPayment(input: $input) { refund { id } errors { code field message } } }"""
BY_ID = """mutation ($id: ID!) {
  capturePayment(id: $id) { errors { code field } }
  cancelPayment(id: $id) { errors { code field } }
  syncPayment(id: $id) { errors { code field } }
  markPaymentReceived(id: $id) { errors { code field } }
}"""


def order_input(where: str, value: str) -> dict[str, Any]:
    customer = {"name": "Alice", "email": "alice@example.com"}
    address = {"street": "1 Main St", "city": "Springfield", "zip": "12345", "country": "US"}
    line = {"sku": "MUG-WHT", "quantity": 1}
    part, _, name = where.partition(".")
    {"customer": customer, "billingAddress": address, "lines": line}[part][name] = value
    return {"lines": [line], "customer": customer, "billingAddress": address}


ORDER_FIELDS = [
    "customer.name",
    "customer.email",
    "customer.id",
    "billingAddress.street",
    "billingAddress.city",
    "billingAddress.zip",
    "billingAddress.country",
    "lines.sku",
]


async def everything_stored(server: LiveServer) -> str:
    """Every row of every table, as text, with separators taken out."""
    from tortoise import Tortoise

    async def dump() -> str:
        rows = []
        for model in Tortoise.apps["models"].values():
            connection = model._meta.db
            table = model._meta.db_table
            rows.append(str(await connection.execute_query_dict(f'SELECT * FROM "{table}"')))
        return "".join(rows)

    text: str = await server.on_server_loop(dump())
    return text.replace(" ", "").replace("-", "")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(lines).replace(" ", "").replace("-", "")


async def assert_nowhere(pan: str, server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    """The card number is in no row of the database and no line of the log."""
    assert pan not in await everything_stored(server)
    assert pan not in logged(caplog)


@pytest.fixture
def log_everything(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def refused(payload: dict[str, Any], field: str) -> None:
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("CARD_DATA_REJECTED", field)]
    assert "never takes card data" in payload["errors"][0]["message"]


@pytest.mark.parametrize("form", FORMATS)
@pytest.mark.parametrize("where", ORDER_FIELDS)
async def test_a_card_number_in_an_order_is_refused_and_never_kept(
    admin: Client, server: LiveServer, log_everything: Any, where: str, form: str
) -> None:
    # given a card number typed into one field of an order
    pan = fresh_pan()
    data = await admin(CREATE_ORDER, input=order_input(where, FORMATS[form](pan)))
    # then the order is refused, naming the field
    assert data["createOrder"]["order"] is None
    refused(data["createOrder"], where.replace("lines.", "lines[0]."))
    # and the number is nowhere: not in the database, not in the log
    await assert_nowhere(pan, server, log_everything)


PAYMENT_FIELDS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "orderId": lambda i, v: i.update(orderId=v),
    "token": lambda i, v: i.update(token=v),
    "gateway": lambda i, v: i.update(gateway=v),
    "currency": lambda i, v: i.update(currency=v),
    "idempotencyKey": lambda i, v: i.update(idempotencyKey=v),
    "metadata.note": lambda i, v: i.update(metadata={"note": v}),
    "metadata": lambda i, v: i.update(metadata={v: "key"}),
    "billingAddress.street": lambda i, v: i.update(
        billingAddress={"street": v, "city": "X", "zip": "1", "country": "US"}
    ),
}


@pytest.mark.parametrize("form", ["plain", "spaces", "in a sentence"])
@pytest.mark.parametrize("where", PAYMENT_FIELDS)
async def test_a_card_number_in_a_payment_is_refused_and_never_kept(
    alice: Client, server: LiveServer, log_everything: Any, where: str, form: str
) -> None:
    order = await place_order(alice)
    pan = fresh_pan()
    given = {"orderId": order["id"], "paymentMethod": "CREDIT_CARD", "token": "pm_card_visa"}
    PAYMENT_FIELDS[where](given, FORMATS[form](pan))
    data = await alice(PROCESS_PAYMENT, input=given)
    assert data["processPayment"]["payment"] is None
    refused(data["processPayment"], where)
    await assert_nowhere(pan, server, log_everything)


@pytest.mark.parametrize(
    ("field", "place"),
    [
        ("amount", lambda pan: {"amount": pan}),  # a Decimal
        ("metadata.n", lambda pan: {"metadata": {"n": int(pan)}}),  # a JSON number
    ],
)
async def test_a_card_number_as_a_number_is_refused(
    alice: Client,
    server: LiveServer,
    log_everything: Any,
    field: str,
    place: Callable[[str], dict[str, Any]],
) -> None:
    order = await place_order(alice)
    pan = fresh_pan()
    given = {"orderId": order["id"], "paymentMethod": "CREDIT_CARD", "token": "pm_card_visa"}
    data = await alice(PROCESS_PAYMENT, input={**given, **place(pan)})
    refused(data["processPayment"], field)
    await assert_nowhere(pan, server, log_everything)


@pytest.mark.parametrize("where", ["paymentId", "reason", "idempotencyKey"])
async def test_a_card_number_in_a_refund_is_refused_and_never_kept(
    alice: Client,
    server: LiveServer,
    log_everything: Any,
    completed_payment: dict[str, Any],
    where: str,
) -> None:
    pan = fresh_pan()
    given = {"paymentId": completed_payment["id"], "amount": "1.00", where: f"see {pan}"}
    data = await alice(REFUND, input=given)
    assert data["refundPayment"]["refund"] is None
    refused(data["refundPayment"], where)
    await assert_nowhere(pan, server, log_everything)


async def test_a_card_number_as_a_payment_id_is_refused_by_every_mutation(
    admin: Client, server: LiveServer, log_everything: Any
) -> None:
    pan = fresh_pan()
    data = await admin(BY_ID, id=pan)
    for payload in data.values():
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [
            ("CARD_DATA_REJECTED", "id")
        ]
    assert pan not in logged(log_everything)


@pytest.mark.parametrize(
    "query",
    [
        "query ($v: ID!) { payment(id: $v) { id } }",
        "query ($v: ID!) { paymentStatus(id: $v) }",
        "query ($v: ID!) { order(id: $v) { id } }",
        "query ($v: ID!) { paymentsByOrder(orderId: $v) { id } }",
        "query ($v: String) { payments(filter: {customerEmail: $v}) { total } }",
        "query ($v: String) { payments(filter: {gateway: $v}) { total } }",
        "query ($v: String) { payments(after: $v) { total } }",
        "query ($v: String) { orders(after: $v) { total } }",
    ],
)
async def test_a_card_number_in_a_query_argument_is_refused(
    admin: Client, log_everything: Any, query: str
) -> None:
    pan = fresh_pan()
    body = await admin.post(query, v=pan)
    assert body["data"] is None or not any(body["data"].values())
    assert [e["extensions"]["code"] for e in body["errors"]] == ["CARD_DATA_REJECTED"]
    assert pan not in logged(log_everything)


@pytest.mark.parametrize("argument", ["paymentId", "orderId", "after"])
async def test_a_card_number_in_a_subscription_argument_is_refused(
    server: LiveServer, http: httpx.AsyncClient, log_everything: Any, argument: str
) -> None:
    pan = fresh_pan()
    query = f"subscription ($v: ID) {{ paymentStatusChanged({argument}: $v) {{ status }} }}"
    async with Subscription.connect(server.url, http, server.token("admin", role="admin")) as sub:
        await sub.ack()
        await sub.subscribe(query, v=pan)
        assert await sub.refusal() == "CARD_DATA_REJECTED"
    assert pan not in logged(log_everything)


async def test_a_card_number_where_a_number_belongs_is_refused_and_not_logged(
    alice: Client, server: LiveServer, log_everything: Any
) -> None:
    # given a card number in an Int field (refused by GraphQL itself, before payql)
    pan = fresh_pan()
    body = await alice.post(CREATE_ORDER, input={"lines": [{"sku": "MUG-WHT", "quantity": pan}]})
    assert body["data"] is None
    await assert_nowhere(pan, server, log_everything)
