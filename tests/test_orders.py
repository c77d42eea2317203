"""createOrder: the server prices the order, reserves stock, numbers it, binds it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from clients import Client
from conftest import CREATE_ORDER, place_order

STOCK = "{ products { sku price currency stock } }"


async def create(client: Client, **input: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (await client(CREATE_ORDER, input=input))["createOrder"]
    return payload


async def product(client: Client, sku: str) -> dict[str, Any]:
    return next(p for p in (await client(STOCK))["products"] if p["sku"] == sku)


async def test_the_server_prices_the_order_from_the_catalog(alice: Client) -> None:
    # when Alice orders two mugs and a T-shirt, sending only SKUs and quantities
    order = await place_order(alice, ("MUG-WHT", 2), ("TSHIRT-BLK-M", 1))
    # then the lines and total come from the catalog
    assert order["currency"] == "USD"
    assert order["lines"] == [
        {
            "sku": "MUG-WHT",
            "name": "White mug",
            "quantity": 2,
            "unitPrice": "12.99",
            "total": "25.98",
        },
        {
            "sku": "TSHIRT-BLK-M",
            "name": "Black T-shirt (M)",
            "quantity": 1,
            "unitPrice": "25.00",
            "total": "25.00",
        },
    ]
    assert order["totalAmount"] == order["amountDue"] == "50.98"
    assert order["amountPaid"] == "0.00"
    assert order["status"] == "PENDING"
    # and it is numbered readably and bound to her
    assert re.fullmatch(r"ORD-\d{4}-\d{6}", order["number"])
    assert order["id"].startswith("ord_")
    assert order["customer"] == {"id": "cus_alice", "name": "alice", "email": "alice@example.com"}


async def test_order_numbers_increase(alice: Client) -> None:
    first = await place_order(alice)
    second = await place_order(alice)
    assert int(second["number"][-6:]) > int(first["number"][-6:])


async def test_client_prices_are_not_part_of_the_input(alice: Client) -> None:
    body = await alice.post(
        CREATE_ORDER, input={"lines": [{"sku": "MUG-WHT", "quantity": 1, "unitPrice": "0.01"}]}
    )
    assert body["errors"] and body["data"] is None


async def test_ordering_reserves_stock_and_too_much_is_out_of_stock(alice: Client) -> None:
    # given the book's stock
    stock = (await product(alice, "BOOK-GQL"))["stock"]
    # when Alice orders one more than there is, next to an available mug
    mugs = (await product(alice, "MUG-WHT"))["stock"]
    payload = await create(
        alice, lines=[{"sku": "MUG-WHT", "quantity": 1}, {"sku": "BOOK-GQL", "quantity": stock + 1}]
    )
    # then it is OUT_OF_STOCK on that line and nothing was reserved
    assert payload["order"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [
        ("OUT_OF_STOCK", "lines.1.quantity")
    ]
    assert (await product(alice, "MUG-WHT"))["stock"] == mugs
    # and a fitting order reserves its quantity
    await place_order(alice, ("BOOK-GQL", 2))
    assert (await product(alice, "BOOK-GQL"))["stock"] == stock - 2


async def test_one_currency_per_order(alice: Client) -> None:
    payload = await create(
        alice, lines=[{"sku": "MUG-WHT", "quantity": 1}, {"sku": "MATCHA-100G", "quantity": 1}]
    )
    assert [e["code"] for e in payload["errors"]] == ["CURRENCY_MISMATCH"]


async def test_repeated_skus_are_merged(alice: Client) -> None:
    order = await place_order(alice, ("MUG-WHT", 1), ("MUG-WHT", 2))
    assert [(line["sku"], line["quantity"]) for line in order["lines"]] == [("MUG-WHT", 3)]
    assert order["totalAmount"] == "38.97"


@pytest.mark.parametrize(
    ("input", "code", "field"),
    [
        ({"lines": []}, "VALIDATION", "lines"),
        ({"lines": [{"sku": "NOPE", "quantity": 1}]}, "NOT_FOUND", "lines.0.sku"),
        ({"lines": [{"sku": "MUG-WHT", "quantity": 0}]}, "VALIDATION", "lines.0.quantity"),
        ({"lines": [{"sku": "MUG-WHT", "quantity": -3}]}, "VALIDATION", "lines.0.quantity"),
        ({"lines": [{"sku": "MUG-WHT", "quantity": 100000}]}, "VALIDATION", "lines.0.quantity"),
        (
            {
                "lines": [{"sku": "MUG-WHT", "quantity": 1}],
                "customer": {"name": "A", "email": "not-an-email"},
            },
            "VALIDATION",
            "customer.email",
        ),
        (
            {
                "lines": [{"sku": "MUG-WHT", "quantity": 1}],
                "billingAddress": {"street": " ", "city": "X", "zip": "1", "country": "US"},
            },
            "VALIDATION",
            "billingAddress.street",
        ),
    ],
)
async def test_bad_order_input_gets_a_clear_error(
    alice: Client, input: dict[str, Any], code: str, field: str
) -> None:
    payload = await create(alice, **input)
    assert payload["order"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)]


async def test_the_customer_may_name_herself_and_give_a_billing_address(alice: Client) -> None:
    address = {
        "street": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "country": "US",
    }
    data = await alice(
        """mutation ($input: CreateOrderInput!) { createOrder(input: $input) {
             order { customer { id name email } billingAddress { street city state zip country } }
             errors { code } } }""",
        input={
            "lines": [{"sku": "MUG-WHT", "quantity": 1}],
            "customer": {"name": "Alice Liddell", "email": "alice@wonder.land"},
            "billingAddress": address,
        },
    )
    order = data["createOrder"]["order"]
    # the order is hers whatever she calls herself
    assert order["customer"] == {
        "id": "cus_alice",
        "name": "Alice Liddell",
        "email": "alice@wonder.land",
    }
    assert order["billingAddress"] == address


async def test_an_admin_may_order_for_a_named_customer(admin: Client, alice: Client) -> None:
    payload = await create(
        admin,
        lines=[{"sku": "MUG-WHT", "quantity": 1}],
        customer={"name": "Alice", "email": "alice@example.com", "id": "cus_alice"},
    )
    order = payload["order"]
    assert order["customer"]["id"] == "cus_alice"
    # and the customer sees it as her own
    seen = await alice("query ($id: ID!) { order(id: $id) { id } }", id=order["id"])
    assert seen["order"] == {"id": order["id"]}
