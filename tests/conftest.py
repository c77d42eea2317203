"""Fixtures: a real server per database backend, clients, and payments in named states.

Every test that takes `server` (directly or through a client) runs once on SQLite
and once on PostgreSQL; the PostgreSQL run is skipped, and says so, when
PAYQL_TEST_DATABASE_URL is not set.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients import Client
from gateway_support import STRIPE_KEY, STRIPE_WEBHOOK_SECRET, Localstripe
from paypal_fake import CLIENT_ID as PAYPAL_CLIENT_ID
from paypal_fake import CLIENT_SECRET as PAYPAL_CLIENT_SECRET
from paypal_fake import WEBHOOK_ID as PAYPAL_WEBHOOK_ID
from paypal_fake import FakePayPal
from servers import POSTGRES_URL, LiveServer, base_settings, database, running_server

from models.write_path import utcnow

BACKENDS = ["sqlite", "postgres"]
NODE = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("PostgreSQL tests skipped: PAYQL_TEST_DATABASE_URL is not set")
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def localstripe() -> Iterator[Localstripe | None]:
    """A Stripe emulator for the Stripe gateway's tests (None: not installed)."""
    executable = shutil.which("localstripe") or str(Path(sys.executable).with_name("localstripe"))
    if not Path(executable).exists():
        yield None
        return
    emulator = Localstripe(executable).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def paypal() -> Iterator[FakePayPal]:
    """A PayPal for the PayPal gateway's tests (tests/paypal_fake.py), over real HTTP."""
    fake = FakePayPal().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def node_scripts() -> Path:
    """tests/node, its npm packages (graphql-js, graphql-http, graphql-ws) installed by `npm ci`
    from the lock file when they are missing or not the locked version."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs node and npm (tests/node runs graphql-js, graphql-http, graphql-ws)")
    lock = json.loads((NODE / "package-lock.json").read_text())
    for package in ("graphql", "graphql-http", "graphql-ws", "ws"):
        locked = lock["packages"][f"node_modules/{package}"]["version"]
        installed = NODE / "node_modules" / package / "package.json"
        if not installed.exists() or json.loads(installed.read_text())["version"] != locked:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
                cwd=NODE,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"npm ci failed in {NODE}:\n{done.stderr}"
            break
    return NODE


@pytest.fixture(scope="session")
def server(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    localstripe: Localstripe | None,
    paypal: FakePayPal,
) -> Iterator[LiveServer]:
    settings = replace(  # PayPal too, for tests that pay with paymentMethod: PAYPAL
        base_settings(""),
        paypal_client_id=PAYPAL_CLIENT_ID,
        paypal_client_secret=PAYPAL_CLIENT_SECRET,
        paypal_webhook_id=PAYPAL_WEBHOOK_ID,
        paypal_api_base=paypal.url,
        paypal_return_url="https://shop.example/paypal/return",
        paypal_gateway="paypal",
    )
    if localstripe is not None:  # Stripe too, for tests that ask for gateway: "stripe"
        settings = replace(
            settings,
            stripe_secret_key=STRIPE_KEY,
            stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
            stripe_api_base=localstripe.url,
        )
    with (
        database(backend, tmp_path_factory.mktemp(backend)) as url,
        running_server(replace(settings, database_url=url)) as live,
    ):
        if localstripe is not None:
            localstripe.send_webhooks_to(f"{live.url}/webhooks/stripe")
        yield live


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
        yield client


@pytest.fixture
def anonymous(server: LiveServer, http: httpx.AsyncClient) -> Client:
    return Client(server.url, None, http)


@pytest.fixture
def admin(anonymous: Client, server: LiveServer) -> Client:
    return anonymous.as_(server.token("admin", role="admin"))


@pytest.fixture
def alice(anonymous: Client, server: LiveServer) -> Client:
    return anonymous.as_(server.token("cus_alice", email="alice@example.com"))


@pytest.fixture
def bob(anonymous: Client, server: LiveServer) -> Client:
    return anonymous.as_(server.token("cus_bob", email="bob@example.com"))


# -- states -----------------------------------------------------------------------------

CREATE_ORDER = """
mutation ($input: CreateOrderInput!) {
  createOrder(input: $input) {
    order { id number status currency totalAmount amountDue amountPaid
            lines { sku name quantity unitPrice total }
            customer { id name email } }
    errors { code field message }
  }
}
"""

PROCESS_PAYMENT = """
mutation ($input: ProcessPaymentInput!) {
  processPayment(input: $input) {
    payment { id orderId status amount currency capturedAmount refundableAmount gateway
              gatewayTransactionId failureCode failureMessage clientSecret
              cardDetails { brand last4 expiryMonth expiryYear } }
    clientSecret
    errors { code field message }
  }
}
"""

REFUND_PAYMENT = """
mutation ($input: RefundPaymentInput!) {
  refundPayment(input: $input) {
    refund { id amount currency status reason gatewayRefundId failureReason }
    payment { id status capturedAmount refundedAmount refundableAmount }
    errors { code field message }
  }
}
"""


async def place_order(client: Client, *lines: tuple[str, int]) -> dict[str, Any]:
    data = await client(
        CREATE_ORDER,
        input={"lines": [{"sku": sku, "quantity": q} for sku, q in lines or [("MUG-WHT", 1)]]},
    )
    payload = data["createOrder"]
    assert payload["errors"] == [], payload["errors"]
    order: dict[str, Any] = payload["order"]
    return order


async def pay(client: Client, order_id: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("paymentMethod", "CREDIT_CARD")
    data = await client(PROCESS_PAYMENT, input={"orderId": order_id, **fields})
    payload: dict[str, Any] = data["processPayment"]
    return payload


async def paid(client: Client, token: str = "pm_card_visa", **fields: Any) -> dict[str, Any]:
    """A new order paid with the given token; returns the payment."""
    order = await place_order(client, *fields.pop("lines", ()))
    payload = await pay(client, order["id"], token=token, **fields)
    assert payload["errors"] == [], payload["errors"]
    payment: dict[str, Any] = payload["payment"]
    return payment


async def refund(client: Client, payment_id: str, **fields: Any) -> dict[str, Any]:
    data = await client(REFUND_PAYMENT, input={"paymentId": payment_id, **fields})
    payload: dict[str, Any] = data["refundPayment"]
    return payload


@pytest.fixture
async def pending_order(alice: Client) -> dict[str, Any]:
    """Alice's order for two mugs and a T-shirt (USD 50.98), not yet paid."""
    return await place_order(alice, ("MUG-WHT", 2), ("TSHIRT-BLK-M", 1))


@pytest.fixture
async def completed_payment(alice: Client) -> dict[str, Any]:
    """Alice paid a USD 64.99 hoodie with pm_card_visa."""
    return await paid(alice, lines=[("HOODIE-GRY-L", 1)])


@pytest.fixture
async def authorized_payment(alice: Client) -> dict[str, Any]:
    """Alice's USD 64.99 hoodie, authorized with manual capture."""
    payment = await paid(alice, lines=[("HOODIE-GRY-L", 1)], captureMethod="MANUAL")
    assert payment["status"] == "AUTHORIZED"
    return payment


@pytest.fixture
async def awaiting_3ds(alice: Client, pending_order: dict[str, Any]) -> dict[str, Any]:
    """Alice's USD 50.98 payment, waiting for 3-D Secure."""
    payload = await pay(alice, pending_order["id"], token="pm_card_authenticationRequired")
    assert payload["payment"]["status"] == "REQUIRES_ACTION"
    return {**payload["payment"], "clientSecret": payload["clientSecret"]}


@pytest.fixture
async def awaiting_confirmation(alice: Client, pending_order: dict[str, Any]) -> dict[str, Any]:
    """Alice's USD 50.98 payment, started without a token: PENDING with a client secret."""
    payload = await pay(alice, pending_order["id"])
    assert payload["payment"]["status"] == "PENDING"
    return {**payload["payment"], "clientSecret": payload["clientSecret"]}


@pytest.fixture
def later(server: LiveServer) -> Any:
    """Moves the service's clock past the time any gateway call can take."""

    def travel() -> None:
        server.service.clock = lambda: utcnow() + server.service.charge_timeout + timedelta(1)

    yield travel
    server.service.clock = utcnow
