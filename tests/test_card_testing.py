"""Card-testing protection: too many failed payments from one customer, or one address,
and new attempts are refused with RATE_LIMITED until the window has passed.

The suite's server has these limits off (every test pays from one address); the
`attempt_limits` fixture turns them on for a test. Addresses come from
X-Forwarded-For, which uvicorn trusts from the local proxy (FORWARDED_ALLOW_IPS).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from clients import Client
from conftest import PROCESS_PAYMENT, place_order
from servers import LiveServer

from models.write_path import AttemptLimits, attempt_source, utcnow

DECLINED = "pm_card_chargeDeclined"


@pytest.fixture
def attempt_limits(server: LiveServer) -> Iterator[None]:
    """10 failed payments per customer and 20 per address within 15 minutes."""
    saved = server.service.attempt_limits
    server.service.attempt_limits = AttemptLimits(per_customer=10, per_ip=20)
    yield
    server.service.attempt_limits = saved
    server.service.clock = utcnow


def customer(server: LiveServer, anonymous: Client) -> Client:
    sub = f"cus_{secrets.token_hex(4)}"
    return anonymous.as_(server.token(sub, email=f"{sub}@example.com"))


async def attempt(
    client: Client,
    http: httpx.AsyncClient,
    token: str,
    address: str,
    order: dict[str, Any] | None = None,
) -> dict[str, Any]:
    order = order or await place_order(client)
    response = await http.post(
        f"{client.url}/graphql",
        json={
            "query": PROCESS_PAYMENT,
            "variables": {
                "input": {"orderId": order["id"], "paymentMethod": "CREDIT_CARD", "token": token}
            },
        },
        headers={"Authorization": f"Bearer {client.token}", "X-Forwarded-For": address},
    )
    payload: dict[str, Any] = response.json()["data"]["processPayment"]
    return payload


def outcome(payload: dict[str, Any]) -> str:
    if payload["errors"]:
        code: str = payload["errors"][0]["code"]
        return code
    status: str = payload["payment"]["status"]
    return status


async def test_thirty_declined_attempts_from_one_customer_are_cut_off_after_ten(
    server: LiveServer, anonymous: Client, http: httpx.AsyncClient, attempt_limits: None
) -> None:
    # given a customer trying card after card, each declined, from rotating addresses
    tester = customer(server, anonymous)
    outcomes = [outcome(await attempt(tester, http, DECLINED, f"203.0.113.{i}")) for i in range(30)]
    # then the first ten reach the gateway and fail, and the other twenty are refused
    assert outcomes == ["FAILED"] * 10 + ["RATE_LIMITED"] * 20
    # with a message that says what to do
    refused = await attempt(tester, http, "pm_card_visa", "203.0.113.99")
    assert refused["errors"][0]["message"].startswith(
        "too many failed payment attempts from this customer"
    )
    assert refused["payment"] is None
    # while another customer pays as usual
    assert outcome(await attempt(customer(server, anonymous), http, "pm_card_visa", "192.0.2.1"))


async def test_concurrent_attempts_are_counted_one_after_another(
    server: LiveServer, anonymous: Client, http: httpx.AsyncClient, attempt_limits: None
) -> None:
    # given 40 orders, and a tester paying them all at once with declined cards
    tester = customer(server, anonymous)
    orders = [await place_order(tester) for _ in range(40)]
    payloads = await asyncio.gather(
        *(
            attempt(tester, http, DECLINED, f"203.0.113.{i}", order)
            for i, order in enumerate(orders)
        )
    )
    # then exactly ten reach the gateway
    outcomes = [outcome(p) for p in payloads]
    assert outcomes.count("FAILED") == 10, outcomes
    assert outcomes.count("RATE_LIMITED") == 30


async def test_addresses_in_one_ipv6_64_count_together(
    server: LiveServer, anonymous: Client, http: httpx.AsyncClient, attempt_limits: None
) -> None:
    prefix = f"2001:db8:{secrets.randbelow(9999):x}:1"
    outcomes = [
        outcome(await attempt(customer(server, anonymous), http, DECLINED, f"{prefix}::{i:x}"))
        for i in range(21)
    ]
    assert outcomes == ["FAILED"] * 20 + ["RATE_LIMITED"]


def test_an_ipv4_client_on_a_dual_stack_socket_counts_as_its_ipv4_address() -> None:
    assert attempt_source("::ffff:203.0.113.9") == "203.0.113.9"
    assert attempt_source("::ffff:198.51.100.1") != attempt_source("::ffff:203.0.113.9")
    assert attempt_source("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert attempt_source(None) is None


async def test_declines_from_one_address_are_cut_off_across_customers(
    server: LiveServer, anonymous: Client, http: httpx.AsyncClient, attempt_limits: None
) -> None:
    # given one address trying cards under a new customer each time
    address = f"198.51.100.{secrets.randbelow(200) + 1}"
    outcomes = [
        outcome(await attempt(customer(server, anonymous), http, DECLINED, address))
        for _ in range(25)
    ]
    # then after twenty failures the address is refused, whoever the customer is
    assert outcomes == ["FAILED"] * 20 + ["RATE_LIMITED"] * 5
    # while the same customers from elsewhere may still pay
    elsewhere = await attempt(customer(server, anonymous), http, "pm_card_visa", "192.0.2.2")
    assert outcome(elsewhere) == "COMPLETED"


async def test_successful_payments_do_not_count_and_the_limit_lifts_after_the_window(
    server: LiveServer, anonymous: Client, http: httpx.AsyncClient, attempt_limits: None
) -> None:
    tester = customer(server, anonymous)
    for _ in range(12):
        assert outcome(await attempt(tester, http, "pm_card_visa", "192.0.2.3")) == "COMPLETED"
    for _ in range(10):
        assert outcome(await attempt(tester, http, DECLINED, "192.0.2.4")) == "FAILED"
    assert outcome(await attempt(tester, http, "pm_card_visa", "192.0.2.5")) == "RATE_LIMITED"
    # when the window has passed
    server.service.clock = lambda: utcnow() + timedelta(minutes=16)
    # then the customer may try again
    assert outcome(await attempt(tester, http, "pm_card_visa", "192.0.2.5")) == "COMPLETED"


async def test_admins_are_not_limited(
    server: LiveServer, admin: Client, http: httpx.AsyncClient, attempt_limits: None
) -> None:
    outcomes = [outcome(await attempt(admin, http, DECLINED, "192.0.2.6")) for _ in range(12)]
    assert outcomes == ["FAILED"] * 12
