"""Notifications: customers' emails over a real SMTP server (aiosmtpd on a free port)
and merchants' signed webhooks to a real HTTP receiver, written in the transaction of
the change they tell of and delivered by the dispatcher, at least once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from clients import Client
from conftest import paid, pay, place_order, refund
from gateway_support import post_webhook, stripe_event
from servers import LiveServer, base_settings, database, free_port, running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models import targets
from models.dispatcher import Dispatcher, SmtpMailer
from models.notifications import display_money, leaks
from models.outbox import MAX_ENDPOINTS
from models.tables import Notification, WebhookEvent
from models.targets import TargetRefused, check_target
from models.write_path import utcnow

WAIT = 15  # seconds to wait for a delivery

NOTIFICATIONS = """
query ($id: ID!) {
  payment(id: $id) {
    status
    notifications { id channel eventId eventType recipient status attempts lastError }
  }
}
"""
CREATE_ENDPOINT = """
mutation ($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    endpoint { id url eventTypes description } secret errors { code field message }
  }
}
"""
DELETE_ENDPOINT = """
mutation ($id: ID!) { deleteWebhookEndpoint(id: $id) { deletedId errors { code } } }
"""
DELIVERIES = """
query ($endpointId: ID, $paymentId: ID) {
  webhookDeliveries(endpointId: $endpointId, paymentId: $paymentId) {
    id eventId eventType status attempts lastError redeliveryOf body
  }
}
"""
REDELIVER = """
mutation ($id: ID!) {
  redeliverWebhook(id: $id) { delivery { id eventId status redeliveryOf } errors { code } }
}
"""


# -- a real SMTP server -------------------------------------------------------------------


class Inbox:
    """aiosmtpd's handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str, subject_has: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address and subject_has in str(m["Subject"])]

    async def wait_for(self, address: str, subject_has: str) -> EmailMessage:
        deadline = time.monotonic() + WAIT
        while not (found := self.to(address, subject_has)):
            if time.monotonic() > deadline:
                subjects = [str(m["Subject"]) for m in self.messages]
                raise AssertionError(f"no mail to {address} about {subject_has!r}: {subjects}")
            await asyncio.sleep(0.05)
        return found[0]


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


# -- a merchant's system ----------------------------------------------------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A merchant's webhook endpoint over real HTTP; it can fail on purpose."""

    received: list[Delivery] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    delay: float = 0.0

    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.url = f"http://{self.host}:{self.port}/hooks"
        app = Starlette(routes=[Route("/hooks", self.receive, methods=["POST"])])
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.failures.pop(0) if self.failures else 200
        self.received.append(Delivery(dict(request.headers), body, status))
        return JSONResponse({"ok": status == 200}, status_code=status)

    def of_event(self, event_id: str) -> list[Delivery]:
        return [d for d in self.received if d.headers.get("payql-event-id") == event_id]

    async def wait_for(self, event_type: str, payment_id: str, answered: int = 200) -> Delivery:
        deadline = time.monotonic() + WAIT
        while True:
            for delivery in self.received:
                event = json.loads(delivery.body)
                if (
                    event["type"] == event_type
                    and event["data"]["object"]["id"] == payment_id
                    and delivery.answered == answered
                ):
                    return delivery
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event_type} for {payment_id} answered {answered}")
            await asyncio.sleep(0.05)


def verify(delivery: Delivery, secret: str) -> bool:
    """What a merchant's receiver does: HMAC-SHA256 over "t.body" with its secret, and
    any v1 may match (while a secret is rolled there are two)."""
    pairs = [p.split("=", 1) for p in delivery.headers["payql-signature"].split(",")]
    t = next(value for key, value in pairs if key == "t")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + delivery.body, hashlib.sha256)
    matches = [hmac.compare_digest(expected.hexdigest(), v) for k, v in pairs if k == "v1"]
    return any(matches) and abs(time.time() - int(t)) < 300


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp(backend: str) -> Iterator[SmtpServer]:
    """A mail server per backend: order numbers start again with each database."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver(backend: str) -> Iterator[Receiver]:
    """A merchant's system per backend: event ids are positions in one database."""
    r = Receiver()
    r.thread.start()
    deadline = time.monotonic() + 10
    while not r.server.started:
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.02)
    yield r
    r.server.should_exit = True
    r.thread.join(timeout=10)


@pytest.fixture(scope="module")
def shop(
    backend: str, tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer
) -> Iterator[LiveServer]:
    """payql telling customers (over SMTP) and merchants (by webhook), retrying fast."""
    settings = replace(
        base_settings(""),
        customer_emails=True,
        smtp_url=f"smtp://127.0.0.1:{smtp.port}",
        mail_from="Acme Shop <payments@shop.example>",
        shop_name="Acme Shop",
        dispatch_every_ms=100,
        notify_retry_base_ms=200,
    )
    with (
        database(backend, tmp_path_factory.mktemp(f"notify-{backend}")) as url,
        running_server(replace(settings, database_url=url)) as live,
    ):
        yield live


@pytest.fixture
def shopper(shop: LiveServer, http: httpx.AsyncClient) -> Client:
    return Client(shop.url, shop.token("cus_carol", email="carol@example.com"), http)


@pytest.fixture
def shop_admin(shop: LiveServer, http: httpx.AsyncClient) -> Client:
    return Client(shop.url, shop.token("admin", role="admin"), http)


@pytest.fixture
async def endpoint(shop_admin: Client, receiver: Receiver) -> AsyncIterator[dict[str, Any]]:
    """A merchant's endpoint for every event, with its secret."""
    data = await shop_admin(CREATE_ENDPOINT, input={"url": receiver.url, "eventTypes": ["*"]})
    payload = data["createWebhookEndpoint"]
    assert payload["errors"] == [], payload
    yield {**payload["endpoint"], "secret": payload["secret"]}
    await shop_admin(DELETE_ENDPOINT, id=payload["endpoint"]["id"])


async def notifications_of(admin: Client, payment_id: str) -> list[dict[str, Any]]:
    return (await admin(NOTIFICATIONS, id=payment_id))["payment"]["notifications"]


async def eventually(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.05)
    return result


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


# -- customers' emails -------------------------------------------------------------------


async def test_a_receipt_lists_the_order_and_its_amounts_and_nothing_secret(
    shopper: Client, smtp: SmtpServer
) -> None:
    # when Carol pays two mugs and a hoodie
    order = await place_order(shopper, ("MUG-WHT", 2), ("HOODIE-GRY-L", 1))
    payment = (await pay(shopper, order["id"], token="pm_card_visa"))["payment"]
    assert payment["status"] == "COMPLETED"
    # then she gets a receipt, in text and in HTML
    mail = await smtp.inbox.wait_for("carol@example.com", order["number"])
    assert mail["Subject"] == f"Receipt for order {order['number']}"
    assert mail["From"] == "Acme Shop <payments@shop.example>"
    text = text_of(mail)
    for line in ("White mug × 2", "$25.98", "Grey hoodie (L) × 1", "$64.99", "Total", "$90.97"):
        assert line in text, text
    assert "Visa ending in 4242" in text and payment["id"] in text
    assert "<td>White mug × 2</td>" in html_of(mail)
    # and nothing in it is a card number, a token or a secret
    # (the parts as read: a MIME boundary's random digits can look like a card number)
    said = "\n".join((str(mail["Subject"]), text, html_of(mail)))
    assert leaks(said) is None
    assert "pm_card_visa" not in mail.as_string() and "secret" not in said.lower()


async def test_a_decline_says_why_for_people(shopper: Client, smtp: SmtpServer) -> None:
    order = await place_order(shopper, ("MUG-WHT", 1))
    payment = (await pay(shopper, order["id"], token="pm_card_chargeDeclinedInsufficientFunds"))[
        "payment"
    ]
    assert payment["status"] == "FAILED"
    mail = await smtp.inbox.wait_for("carol@example.com", f"order {order['number']} did not")
    text = text_of(mail)
    assert "$12.99" in text and "your card has insufficient funds" in text
    assert "Nothing was charged" in text


async def test_a_refund_is_confirmed_with_what_was_refunded_in_all(
    shopper: Client, shop_admin: Client, smtp: SmtpServer
) -> None:
    payment = await paid(shopper, lines=[("HOODIE-GRY-L", 1)])
    made = await refund(shop_admin, payment["id"], amount="20")
    assert made["errors"] == []
    mail = await smtp.inbox.wait_for("carol@example.com", "Refund of $20.00")
    text = text_of(mail)
    assert "We have refunded $20.00" in text and "Visa ending in 4242" in text
    assert "In all, $20.00 of your payment of $64.99 has been refunded." in text


async def test_with_smtp_down_the_receipt_is_retried_and_delivered_once_it_is_back(
    shopper: Client, shop_admin: Client, smtp: SmtpServer
) -> None:
    # given the mail server is down
    smtp.stop()
    try:
        order = await place_order(shopper, ("MUG-WHT", 3))
        payment = (await pay(shopper, order["id"], token="pm_card_visa"))["payment"]

        # then the receipt waits, its failed attempts recorded
        async def failed_twice() -> bool:
            [note] = await notifications_of(shop_admin, payment["id"])
            return note["attempts"] >= 2 and note["status"] == "PENDING" and note["lastError"]

        await eventually(failed_twice, "two failed attempts")
    finally:
        # when it is back
        smtp.start()
    await smtp.inbox.wait_for("carol@example.com", order["number"])

    async def delivered() -> list[dict[str, Any]]:
        notes = await notifications_of(shop_admin, payment["id"])
        return [n for n in notes if n["status"] == "DELIVERED"]

    [note] = await eventually(delivered, "delivered")
    assert note["attempts"] >= 3 and note["channel"] == "EMAIL"
    await asyncio.sleep(0.5)  # a few more dispatcher rounds: nothing is sent again
    assert len(smtp.inbox.to("carol@example.com", order["number"])) == 1


async def test_a_change_that_rolls_back_sends_nothing(
    shopper: Client, shop_admin: Client, shop: LiveServer, smtp: SmtpServer
) -> None:
    # given the change's transaction fails after its notifications were written
    outbox = shop.service.outbox
    write = outbox.write

    async def write_then_fail(*args: Any, **kwargs: Any) -> int:
        await write(*args, **kwargs)
        raise RuntimeError("the transaction fails after the outbox row")

    outbox.write = write_then_fail  # type: ignore[method-assign]
    try:
        order = await place_order(shopper, ("MUG-WHT", 4))
        body = await shopper.post(
            "mutation ($i: ProcessPaymentInput!) { processPayment(input: $i) { payment { id } } }",
            i={"orderId": order["id"], "paymentMethod": "CREDIT_CARD", "token": "pm_card_visa"},
        )
        assert body["errors"], body
    finally:
        del outbox.write  # the method again
    # then the payment did not change, no notification exists, and no mail goes out
    [payment] = (
        await shop_admin(
            "query ($o: ID!) { paymentsByOrder(orderId: $o) { id status } }", o=order["id"]
        )
    )["paymentsByOrder"]
    assert payment["status"] == "PENDING"
    assert await notifications_of(shop_admin, payment["id"]) == []
    await shop.on_server_loop(shop.app.state.dispatcher.drain())
    assert smtp.inbox.to("carol@example.com", order["number"]) == []


# -- merchants' webhooks ------------------------------------------------------------------------


async def test_a_merchants_endpoint_gets_each_change_signed_with_its_own_secret(
    shopper: Client, shop_admin: Client, receiver: Receiver, endpoint: dict[str, Any]
) -> None:
    assert endpoint["secret"].startswith("whsec_") and endpoint["eventTypes"] == ["*"]
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    delivery = await receiver.wait_for("payment.completed", payment["id"])
    # the receiver can verify it, and nothing in it is secret
    assert verify(delivery, endpoint["secret"])
    assert not verify(delivery, "whsec_someone_else")
    event = json.loads(delivery.body)
    assert event["id"] == delivery.headers["payql-event-id"]
    assert event["data"]["object"]["status"] == "COMPLETED"
    assert event["data"]["object"]["card"] == {"brand": "visa", "last4": "4242"}
    assert "clientSecret" not in delivery.body.decode() and leaks(delivery.body.decode()) is None

    # and the delivery is on record (once the dispatcher has the answer)
    async def recorded_delivered() -> dict[str, Any] | None:
        [row] = (await shop_admin(DELIVERIES, paymentId=payment["id"]))["webhookDeliveries"]
        return row if row["status"] == "DELIVERED" else None

    recorded = await eventually(recorded_delivered, "recorded as delivered")
    assert recorded["eventId"] == event["id"]
    assert recorded["body"]["data"] == event["data"]


ROLL_SECRET = """
mutation ($id: ID!) {
  rollWebhookEndpointSecret(id: $id) {
    endpoint { id previousSecretExpiresAt } secret errors { code field }
  }
}
"""


async def test_a_rolled_secret_is_shown_once_and_the_old_one_signs_beside_it_for_a_day(
    shopper: Client,
    shop_admin: Client,
    shop: LiveServer,
    receiver: Receiver,
    endpoint: dict[str, Any],
    paused: Any,
) -> None:
    old = endpoint["secret"]
    # when the admin rolls the endpoint's secret
    rolled = (await shop_admin(ROLL_SECRET, id=endpoint["id"]))["rollWebhookEndpointSecret"]
    new = rolled["secret"]
    # then the new one is shown, and when the old one stops signing
    assert rolled["errors"] == [] and new.startswith("whsec_") and new != old
    until = datetime.fromisoformat(rolled["endpoint"]["previousSecretExpiresAt"])
    assert timedelta(hours=23, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=24)
    # and a delivery meanwhile verifies with either secret
    dispatcher = Dispatcher(mailer=None)
    try:
        payment = await paid(shopper, lines=[("MUG-WHT", 1)])
        await shop.on_server_loop(dispatcher.drain())
    finally:
        await shop.on_server_loop(dispatcher.aclose())
    delivery = await receiver.wait_for("payment.completed", payment["id"])
    assert verify(delivery, new) and verify(delivery, old)
    # and a day later only with the new one
    later = Dispatcher(mailer=None, clock=lambda: utcnow() + timedelta(days=1, minutes=1))
    try:
        again = await paid(shopper, lines=[("MUG-WHT", 1)])
        await shop.on_server_loop(later.drain())
    finally:
        await shop.on_server_loop(later.aclose())
    delivery = await receiver.wait_for("payment.completed", again["id"])
    assert verify(delivery, new) and not verify(delivery, old)


async def test_only_an_admin_rolls_a_secret_and_only_of_an_endpoint_that_exists(
    shopper: Client, shop_admin: Client, endpoint: dict[str, Any]
) -> None:
    forbidden = (await shopper(ROLL_SECRET, id=endpoint["id"]))["rollWebhookEndpointSecret"]
    assert forbidden["errors"] == [{"code": "FORBIDDEN", "field": None}]
    assert forbidden["secret"] is None
    unknown = (await shop_admin(ROLL_SECRET, id="whe_none"))["rollWebhookEndpointSecret"]
    assert unknown["errors"] == [{"code": "NOT_FOUND", "field": "id"}]


async def test_a_failing_receiver_is_retried_and_gets_the_event_once_it_recovers(
    shopper: Client, shop_admin: Client, receiver: Receiver, endpoint: dict[str, Any]
) -> None:
    # given the merchant's system fails twice
    receiver.failures[:] = [500, 503]
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    # then the third attempt gets through, and only that one succeeded
    delivered = await receiver.wait_for("payment.completed", payment["id"])
    attempts = receiver.of_event(delivered.headers["payql-event-id"])
    assert [d.answered for d in attempts] == [500, 503, 200]
    assert len({d.headers["payql-delivery-id"] for d in attempts}) == 1

    async def recorded() -> dict[str, Any] | None:
        [row] = (await shop_admin(DELIVERIES, paymentId=payment["id"]))["webhookDeliveries"]
        return row if row["status"] == "DELIVERED" else None

    row = await eventually(recorded, "recorded as delivered")
    assert row["attempts"] == 3


async def test_a_delivery_is_redelivered_on_request_as_the_same_event(
    shopper: Client, shop_admin: Client, receiver: Receiver, endpoint: dict[str, Any]
) -> None:
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    first = await receiver.wait_for("payment.completed", payment["id"])
    delivery_id = first.headers["payql-delivery-id"]
    # when an admin asks for it again
    data = (await shop_admin(REDELIVER, id=delivery_id))["redeliverWebhook"]
    assert data["errors"] == [] and data["delivery"]["redeliveryOf"] == delivery_id
    # then the receiver gets the same event, as another delivery
    event_id = first.headers["payql-event-id"]

    async def twice() -> bool:
        return len(receiver.of_event(event_id)) == 2

    await eventually(twice, "redelivered")
    again = receiver.of_event(event_id)[1]
    assert again.body == first.body or json.loads(again.body) == json.loads(first.body)
    assert again.headers["payql-delivery-id"] == data["delivery"]["id"] != delivery_id
    assert verify(again, endpoint["secret"])


async def test_two_dispatchers_at_once_never_send_one_delivery_twice(
    shopper: Client,
    shop: LiveServer,
    smtp: SmtpServer,
    receiver: Receiver,
    endpoint: dict[str, Any],
    paused: Any,
) -> None:
    # given the server's own dispatcher is paused while ten payments complete
    payments = [await paid(shopper, lines=[("MUG-WHT", 1)]) for _ in range(10)]
    receiver.delay = 0.05
    # when three dispatchers deliver them at the same moment
    mailer = SmtpMailer(f"smtp://127.0.0.1:{smtp.port}")
    rivals = [Dispatcher(mailer=mailer, batch=4) for _ in range(3)]
    try:
        counts = await shop.on_server_loop(_race(rivals))
    finally:
        receiver.delay = 0.0
        for rival in rivals:
            await shop.on_server_loop(rival.aclose())
    # then each delivery was made exactly once, by one of them
    ids = {p["id"] for p in payments}
    made = [
        d.headers["payql-delivery-id"]
        for d in receiver.received
        if json.loads(d.body)["data"]["object"]["id"] in ids
    ]
    assert len(made) == len(set(made)) == 10
    # and each receipt once: every claimed delivery is one of these twenty
    receipts = [m for m in smtp.inbox.messages if str(m["Subject"]).startswith("Receipt")]
    numbers = {str(m["Subject"]).rsplit(" ", 1)[1] for m in receipts}
    assert sum(counts) == 20 and len(receipts) == len(numbers)


async def _race(dispatchers: list[Dispatcher]) -> list[int]:
    return list(await asyncio.gather(*(d.drain() for d in dispatchers)))


async def test_endpoints_are_for_admins_and_refuse_what_cannot_be_delivered(
    shopper: Client, shop_admin: Client, receiver: Receiver
) -> None:
    def errors(data: dict[str, Any]) -> list[tuple[str, str | None]]:
        return [(e["code"], e["field"]) for e in data["createWebhookEndpoint"]["errors"]]

    ftp = await shop_admin(CREATE_ENDPOINT, input={"url": "ftp://x.example/", "eventTypes": ["*"]})
    assert errors(ftp) == [("VALIDATION", "url")]
    creds = await shop_admin(
        CREATE_ENDPOINT, input={"url": "https://u:p@x.example/", "eventTypes": ["*"]}
    )
    assert errors(creds) == [("VALIDATION", "url")]
    unknown = await shop_admin(
        CREATE_ENDPOINT, input={"url": receiver.url, "eventTypes": ["payment.exploded"]}
    )
    assert errors(unknown) == [("VALIDATION", "eventTypes")]
    customer = await shopper(CREATE_ENDPOINT, input={"url": receiver.url, "eventTypes": ["*"]})
    assert errors(customer) == [("FORBIDDEN", None)]
    listed = await shopper.post("{ webhookEndpoints { id } }")
    assert listed["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_cap_on_endpoints_holds_when_they_are_created_at_once(
    shop_admin: Client, receiver: Receiver
) -> None:
    # given the endpoints the shop has now
    before = (await shop_admin("{ webhookEndpoints { id } }"))["webhookEndpoints"]
    room = MAX_ENDPOINTS - len(before)
    # when ten more than there is room for are created at the same moment
    answers = await asyncio.gather(
        *(
            shop_admin(CREATE_ENDPOINT, input={"url": receiver.url, "eventTypes": ["*"]})
            for _ in range(room + 10)
        )
    )
    payloads = [answer["createWebhookEndpoint"] for answer in answers]
    made = [payload for payload in payloads if payload["endpoint"]]
    refused = [payload["errors"] for payload in payloads if not payload["endpoint"]]
    try:
        # then exactly as many as there was room for were made, the rest refused
        assert len(made) == room
        assert len(refused) == 10
        assert all(errors[0]["code"] == "INVALID_STATE" for errors in refused)
        after = (await shop_admin("{ webhookEndpoints { id } }"))["webhookEndpoints"]
        assert len(after) == MAX_ENDPOINTS
    finally:
        for payload in made:
            await shop_admin(DELETE_ENDPOINT, id=payload["endpoint"]["id"])


async def test_only_the_chosen_events_go_to_an_endpoint_and_deleting_it_stops_them(
    shopper: Client, shop_admin: Client, receiver: Receiver
) -> None:
    created = (
        await shop_admin(
            CREATE_ENDPOINT, input={"url": receiver.url, "eventTypes": ["refund.succeeded"]}
        )
    )["createWebhookEndpoint"]
    endpoint_id = created["endpoint"]["id"]
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    await refund(shop_admin, payment["id"])
    await receiver.wait_for("refund.succeeded", payment["id"])
    rows = (await shop_admin(DELIVERIES, endpointId=endpoint_id))["webhookDeliveries"]
    assert [r["eventType"] for r in rows] == ["refund.succeeded"]
    # deleted, it gets nothing more
    deleted = (await shop_admin(DELETE_ENDPOINT, id=endpoint_id))["deleteWebhookEndpoint"]
    assert deleted == {"deletedId": endpoint_id, "errors": []}
    other = await paid(shopper, lines=[("MUG-WHT", 1)])
    await refund(shop_admin, other["id"])
    assert (await shop_admin(DELIVERIES, paymentId=other["id"]))["webhookDeliveries"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.7/",
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://localhost:8000/hooks",
        "http://0.0.0.0/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[2002:a9fe:a9fe::]/",  # 6to4
        "http://[::127.0.0.1]/",  # IPv4-compatible
        "http://[::ffff:0:7f00:1]/",  # IPv4-translated
    ],
)
async def test_in_production_private_and_loopback_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused, match="public addresses only"):
        await check_target(url, allow_private=False)
    await check_target(url, allow_private=True)  # development may use them


async def test_a_public_address_is_accepted_without_a_lookup() -> None:
    await check_target("https://93.184.215.14/hooks", allow_private=False)


async def test_a_target_that_turned_private_is_given_up_at_delivery(
    shopper: Client,
    shop_admin: Client,
    shop: LiveServer,
    endpoint: dict[str, Any],
    paused: Any,
) -> None:
    # given an endpoint registered where private addresses were allowed, and a
    # dispatcher that allows none (production)
    strict = Dispatcher(mailer=None, allow_private=False)
    try:
        payment = await paid(shopper, lines=[("MUG-WHT", 1)])
        await shop.on_server_loop(strict.drain())
    finally:
        await shop.on_server_loop(strict.aclose())
    [row] = (await shop_admin(DELIVERIES, paymentId=payment["id"]))["webhookDeliveries"]
    assert row["status"] == "FAILED" and "public addresses only" in row["lastError"]
    assert row["attempts"] == 1


def test_a_pinned_request_keeps_the_name_for_http_and_tls() -> None:
    # given an https endpoint whose name was checked at an IPv6 address
    target = targets.pinned("https://hooks.example:8443/in?x=1", ["2001:db8::1"])
    # then the request goes to that address, naming the host for HTTP and for TLS
    assert target.url == "https://[2001:db8::1]:8443/in?x=1"
    assert target.headers == {"Host": "hooks.example:8443"}
    assert target.extensions == {"sni_hostname": "hooks.example"}
    # and with private addresses allowed (development) nothing is pinned
    assert targets.pinned("http://localhost:9000/", []) == targets.Pinned(
        "http://localhost:9000/", {}, {}
    )


@contextmanager
def receiving(host: str, port: int) -> Iterator[Receiver]:
    receiver = Receiver(host=host, port=port)
    receiver.thread.start()
    deadline = time.monotonic() + 10
    while not receiver.server.started:
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    try:
        yield receiver
    finally:
        receiver.server.should_exit = True
        receiver.thread.join(10)


async def test_a_delivery_goes_to_the_address_that_was_checked_not_a_second_lookup(
    shopper: Client,
    shop_admin: Client,
    shop: LiveServer,
    paused: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a merchant's host name whose first lookup gives a public address (played
    # by 127.0.0.2) and every later one the service's own network (127.0.0.1): DNS
    # rebinding, with something of ours listening at both
    port = free_port()
    monkeypatch.setattr(targets, "_public", lambda address: str(address) == "127.0.0.2")
    lookups: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hooks.merchant.test":
            return real(host, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.2" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with receiving("127.0.0.2", port) as public, receiving("127.0.0.1", port) as internal:
        created = await shop_admin(
            CREATE_ENDPOINT,
            input={"url": f"http://hooks.merchant.test:{port}/hooks", "eventTypes": ["*"]},
        )
        endpoint = created["createWebhookEndpoint"]["endpoint"]
        strict = Dispatcher(mailer=None, allow_private=False)  # production's check
        try:
            # when a change is delivered to it
            payment = await paid(shopper, lines=[("MUG-WHT", 1)])
            await shop.on_server_loop(strict.drain())
        finally:
            await shop.on_server_loop(strict.aclose())
            await shop_admin(DELETE_ENDPOINT, id=endpoint["id"])
        # then it went to the address that was checked, once looked up, with its name
        assert internal.received == []
        [delivery] = [d for d in public.received if payment["id"].encode() in d.body]
        assert delivery.headers["host"] == f"hooks.merchant.test:{port}"
        assert lookups == ["hooks.merchant.test"]


async def test_what_is_past_its_retention_is_pruned_in_batches_and_pending_is_kept(
    shopper: Client, shop: LiveServer, paused: Any
) -> None:
    # given deliveries and webhook events 31 days old, and others newer or still due
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    old = utcnow() - timedelta(days=31)

    async def given() -> dict[str, set[Any]]:
        rows = await Notification.filter(payment_id=payment["id"]).order_by("id")
        assert len(rows) >= 1
        delivered = await Notification.create(
            **{**_copy(rows[0]), "id": "ntf_old_delivered", "status": "delivered"}
        )
        failed = await Notification.create(
            **{**_copy(rows[0]), "id": "ntf_old_failed", "status": "failed"}
        )
        due = await Notification.create(
            **{**_copy(rows[0]), "id": "ntf_old_pending", "status": "pending"}
        )
        recent = await Notification.create(
            **{**_copy(rows[0]), "id": "ntf_recent_delivered", "status": "delivered"}
        )
        ids = [delivered.id, failed.id, due.id]
        await Notification.filter(id__in=ids).update(created_at=old)
        events = [
            await WebhookEvent.create(
                gateway="simulated", event_id=f"evt_prune_{n}", type="x", outcome="applied"
            )
            for n in range(3)
        ]
        await WebhookEvent.filter(id__in=[e.id for e in events]).update(received_at=old)
        fresh = await WebhookEvent.create(
            gateway="simulated", event_id="evt_prune_fresh", type="x", outcome="applied"
        )
        return {"kept": {due.id, recent.id}, "events": {e.id for e in events}, "fresh": {fresh.id}}

    made = await shop.on_server_loop(given())
    # when the dispatcher prunes, two rows at a time
    pruner = Dispatcher(mailer=None, prune_batch=2)
    try:
        gone = await shop.on_server_loop(pruner.prune())
    finally:
        await shop.on_server_loop(pruner.aclose())

    async def left() -> tuple[set[str], set[int]]:
        notes = set(await Notification.filter(id__startswith="ntf_").values_list("id", flat=True))
        events = set(await WebhookEvent.all().values_list("id", flat=True))
        return notes, events

    notes, events = await shop.on_server_loop(left())
    # then the old delivered and given-up ones and the old events are gone, in batches
    assert gone >= 5
    assert not {"ntf_old_delivered", "ntf_old_failed"} & notes
    assert not made["events"] & events
    # and what is pending, or recent, stays
    assert made["kept"] <= notes
    assert made["fresh"] <= events


def _copy(row: Notification) -> dict[str, Any]:
    fields = ("channel", "event_id", "event_type", "payment_id", "endpoint_id", "recipient")
    values = {name: getattr(row, name) for name in fields}
    return {
        **values,
        "payload": row.payload,
        "next_attempt_at": row.next_attempt_at,
        "give_up_at": row.give_up_at,
    }


async def test_payql_dispatch_once_delivers_from_a_process_of_its_own(
    shopper: Client, shop: LiveServer, smtp: SmtpServer, paused: Any
) -> None:
    # given the server's own dispatcher is paused, with a receipt waiting
    order = await place_order(shopper, ("MUG-WHT", 5))
    await pay(shopper, order["id"], token="pm_card_visa")
    # when `payql dispatch --once` runs beside it
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "payql.cli",
        "dispatch",
        "--once",
        env={
            **os.environ,
            "PAYQL_DATABASE_URL": shop.settings.database_url,
            "PAYQL_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
            "PAYQL_MAIL_FROM": "Acme Shop <payments@shop.example>",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    # then the receipt went out from there
    assert process.returncode == 0, err.decode()
    assert "dispatched:" in out.decode()
    assert len(smtp.inbox.to("carol@example.com", order["number"])) == 1


async def test_in_development_without_smtp_mail_goes_to_the_mailbox_folder(
    backend: str,
    tmp_path: Any,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if backend != "sqlite":
        pytest.skip("the mailbox does not depend on the database: once, on SQLite")
    mailbox = tmp_path / "mailbox"
    settings = replace(
        base_settings(f"sqlite://{tmp_path / 'payql.sqlite3'}"),
        customer_emails=True,
        mailbox_dir=str(mailbox),
        dispatch_every_ms=100,
    )
    with (
        caplog.at_level(logging.INFO, logger="payql.notifications"),
        running_server(settings) as dev,
    ):
        client = Client(dev.url, dev.token("cus_dana", email="dana@example.com"), http)
        payment = await paid(client, lines=[("MUG-WHT", 1)])

        async def written() -> list[Any]:
            return sorted(mailbox.glob("*.eml"))

        [path] = await eventually(written, "an .eml file")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "dana@example.com"
    assert str(message["Subject"]).startswith("Receipt for order")
    assert isinstance(message, EmailMessage) and payment["id"] in text_of(message)
    assert f"written to {path}" in caplog.text


# -- after review ---------------------------------------------------------------------------


@pytest.fixture
def paused(shop: LiveServer) -> Iterator[Any]:
    """The server's own dispatcher claims nothing while the test runs its own."""
    dispatcher = shop.app.state.dispatcher

    async def nothing() -> list[Any]:
        return []

    dispatcher._claim = nothing
    yield dispatcher
    del dispatcher._claim


async def test_a_receipt_after_a_partial_capture_says_what_was_taken(
    shopper: Client, shop_admin: Client, smtp: SmtpServer
) -> None:
    held = await paid(shopper, lines=[("HOODIE-GRY-L", 1)], captureMethod="MANUAL")
    captured = await shop_admin(
        """mutation ($id: ID!) { capturePayment(id: $id, amount: "40") { errors { code } } }""",
        id=held["id"],
    )
    assert captured["capturePayment"]["errors"] == []
    order = (await shop_admin(NOTIFICATIONS, id=held["id"]))["payment"]
    assert [n["eventType"] for n in order["notifications"]][-1] == "payment.completed"
    receipts = await eventually(
        lambda: _receipt_for(smtp, held["id"]), "a receipt for the captured payment"
    )
    text = text_of(receipts)
    assert "Your payment of $40.00 went through." in text
    assert "Total" in text and "$64.99" in text and "Paid" in text


async def _receipt_for(smtp: SmtpServer, payment_id: str) -> EmailMessage | None:
    for message in smtp.inbox.messages:
        if str(message["Subject"]).startswith("Receipt") and payment_id in text_of(message):
            return message
    return None


async def test_names_in_an_email_are_escaped_in_its_html(
    shop_admin: Client, smtp: SmtpServer
) -> None:
    created = await shop_admin(
        """mutation ($input: CreateOrderInput!) {
             createOrder(input: $input) { order { id number } errors { code } } }""",
        input={
            "lines": [{"sku": "MUG-WHT", "quantity": 1}],
            "customer": {"name": "Eve <b>Bold</b> & Co", "email": "eve@example.com"},
        },
    )
    order = created["createOrder"]["order"]
    assert (await pay(shop_admin, order["id"], token="pm_card_visa"))["errors"] == []
    mail = await smtp.inbox.wait_for("eve@example.com", order["number"])
    assert "Hello Eve &lt;b&gt;Bold&lt;/b&gt; &amp; Co," in html_of(mail)
    assert "<b>Bold</b>" not in html_of(mail)
    assert "Hello Eve <b>Bold</b> & Co," in text_of(mail)


async def test_customers_can_neither_manage_nor_see_notifications(
    shopper: Client, shop_admin: Client, endpoint: dict[str, Any], receiver: Receiver
) -> None:
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    delivery = await receiver.wait_for("payment.completed", payment["id"])
    assert (await notifications_of(shopper, payment["id"])) == []
    assert await notifications_of(shop_admin, payment["id"])
    deleted = await shopper(DELETE_ENDPOINT, id=endpoint["id"])
    assert deleted["deleteWebhookEndpoint"]["errors"] == [{"code": "FORBIDDEN"}]
    again = await shopper(REDELIVER, id=delivery.headers["payql-delivery-id"])
    assert again["redeliverWebhook"]["errors"] == [{"code": "FORBIDDEN"}]
    listed = await shopper.post(DELIVERIES, paymentId=payment["id"])
    assert listed["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_card_number_in_an_endpoints_input_is_refused_before_anything(
    shop_admin: Client, receiver: Receiver
) -> None:
    data = await shop_admin(
        CREATE_ENDPOINT,
        input={"url": receiver.url, "eventTypes": ["*"], "description": "4242424242424242"},
    )
    payload = data["createWebhookEndpoint"]
    assert payload["endpoint"] is None and payload["secret"] is None
    assert [e["code"] for e in payload["errors"]] == ["CARD_DATA_REJECTED"]


async def test_a_delivery_that_outlasts_half_its_lease_is_abandoned_and_tried_again(
    shopper: Client,
    shop_admin: Client,
    shop: LiveServer,
    receiver: Receiver,
    endpoint: dict[str, Any],
    paused: Any,
) -> None:
    # given a receiver slower than half the lease of a dispatcher
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    hasty = Dispatcher(mailer=None, lease=timedelta(seconds=1), retry_base=0.1)
    receiver.delay = 1.5
    try:
        await shop.on_server_loop(hasty.run_once())
    finally:
        receiver.delay = 0.0
        await shop.on_server_loop(hasty.aclose())
    # then the attempt was abandoned before the lease ran out, to be tried again
    [row] = (await shop_admin(DELIVERIES, paymentId=payment["id"]))["webhookDeliveries"]
    assert (row["status"], row["attempts"], row["lastError"]) == (
        "PENDING",
        1,
        "the delivery took too long",
    )


async def test_a_redirect_is_not_followed_and_a_delivery_is_given_up_in_the_end(
    shopper: Client,
    shop_admin: Client,
    shop: LiveServer,
    receiver: Receiver,
    endpoint: dict[str, Any],
    paused: Any,
) -> None:
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    # a 302 is a failure: never a trip to another address
    receiver.failures[:] = [302]
    strict = Dispatcher(mailer=None, retry_base=0.01)
    # and three days on, a failure is the last attempt
    late = Dispatcher(mailer=None, clock=lambda: utcnow() + timedelta(days=4))
    try:
        await shop.on_server_loop(strict.run_once())
        [row] = (await shop_admin(DELIVERIES, paymentId=payment["id"]))["webhookDeliveries"]
        assert (row["status"], row["lastError"]) == ("PENDING", "the endpoint answered HTTP 302")
        receiver.failures[:] = [500]
        await shop.on_server_loop(late.run_once())
    finally:
        receiver.failures.clear()
        await shop.on_server_loop(strict.aclose())
        await shop.on_server_loop(late.aclose())
    [row] = (await shop_admin(DELIVERIES, paymentId=payment["id"]))["webhookDeliveries"]
    assert (row["status"], row["attempts"], row["lastError"]) == (
        "FAILED",
        2,
        "the endpoint answered HTTP 500",
    )


def test_amounts_are_shown_in_each_currencys_own_format() -> None:
    assert display_money(123450, "USD") == "$1,234.50"
    assert display_money(320000, "JPY") == "¥320,000"
    assert display_money(1200, "EUR") == "€12.00"
    assert display_money(99900, "SEK") == "999.00 SEK"
    assert display_money(1500, "KWD") == "1.500 KWD"


async def test_3d_secure_and_a_dispute_reach_the_merchant_too(
    shopper: Client,
    http: httpx.AsyncClient,
    shop: LiveServer,
    receiver: Receiver,
    endpoint: dict[str, Any],
) -> None:
    # a payment that waits for 3-D Secure
    order = await place_order(shopper, ("MUG-WHT", 1))
    waiting = (await pay(shopper, order["id"], token="pm_card_authenticationRequired"))["payment"]
    told = await receiver.wait_for("payment.requires_action", waiting["id"])
    assert json.loads(told.body)["data"]["object"]["status"] == "REQUIRES_ACTION"
    assert "_secret_" not in told.body.decode()  # its client secret is the customer's only
    # a dispute opened on a completed one (the gateway's webhook)
    payment = await paid(shopper, lines=[("MUG-WHT", 1)])
    dispute = {
        "id": "dp_notify_1",
        "object": "dispute",
        "amount": 1299,
        "currency": "usd",
        "reason": "fraudulent",
        "status": "needs_response",
        "payment_intent": payment["gatewayTransactionId"],
    }
    event = stripe_event("charge.dispute.created", dispute)
    assert (await post_webhook(http, shop, event)).status_code == 200
    opened = await receiver.wait_for("dispute.created", payment["id"])
    assert json.loads(opened.body)["data"]["dispute"] == {
        "object": "dispute",
        "id": "dp_notify_1",
        "amount": "12.99",
        "status": "needs_response",
        "reason": "fraudulent",
    }
