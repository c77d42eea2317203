"""Queries: pagination, filters, payment status, products."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from clients import Client, cursor_number
from conftest import paid, place_order

PAYMENTS = """
query ($filter: PaymentFilter, $first: Int!, $after: String) {
  payments(filter: $filter, first: $first, after: $after) {
    total endCursor hasNextPage
    items { id status gateway paymentMethod customer { email } }
  }
}
"""

ORDERS = """
query ($first: Int!, $after: String) {
  orders(first: $first, after: $after) { total endCursor hasNextPage items { id } }
}
"""


async def test_payments_are_paged_newest_first_without_gaps_or_repeats(
    admin: Client, alice: Client
) -> None:
    # given five more completed payments of Alice's
    made = [(await paid(alice))["id"] for _ in range(5)]
    email_filter = {"customerEmail": "alice@example.com", "status": ["COMPLETED"]}
    # when an admin pages through them two at a time
    seen: list[str] = []
    after = None
    while True:
        page = (await admin(PAYMENTS, filter=email_filter, first=2, after=after))["payments"]
        seen += [p["id"] for p in page["items"]]
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    # then every payment appears exactly once, newest first
    assert len(seen) == len(set(seen)) == page["total"]
    assert [s for s in seen if s in made] == list(reversed(made))


async def test_payments_filter_by_status_order_gateway_method(admin: Client, alice: Client) -> None:
    failed = await paid(alice, token="pm_card_chargeDeclined")
    order = await place_order(alice)
    offline = (
        await alice(
            """mutation ($id: ID!) { processPayment(input: {orderId: $id,
               paymentMethod: BANK_TRANSFER}) { payment { id } } }""",
            id=order["id"],
        )
    )["processPayment"]["payment"]
    by_status = (await admin(PAYMENTS, filter={"status": ["FAILED"]}, first=100))["payments"]
    assert failed["id"] in {p["id"] for p in by_status["items"]}
    assert {p["status"] for p in by_status["items"]} == {"FAILED"}
    by_order = (await admin(PAYMENTS, filter={"orderId": order["id"]}, first=10))["payments"]
    assert [p["id"] for p in by_order["items"]] == [offline["id"]]
    manual = (await admin(PAYMENTS, filter={"gateway": "manual"}, first=100))["payments"]
    assert offline["id"] in {p["id"] for p in manual["items"]}
    assert {p["paymentMethod"] for p in manual["items"]} <= {"BANK_TRANSFER", "CASH_ON_DELIVERY"}
    by_method = (await admin(PAYMENTS, filter={"paymentMethod": "BANK_TRANSFER"}, first=100))[
        "payments"
    ]
    assert offline["id"] in {p["id"] for p in by_method["items"]}


async def test_page_size_is_bounded_and_cursors_are_checked(admin: Client) -> None:
    too_big = await admin.post(PAYMENTS, first=1000)
    assert too_big["errors"][0]["extensions"]["code"] == "VALIDATION"
    bad_cursor = await admin.post(PAYMENTS, first=5, after="not a cursor")
    assert bad_cursor["errors"][0]["extensions"]["code"] == "VALIDATION"


async def test_orders_are_paged(alice: Client) -> None:
    for _ in range(3):
        await place_order(alice)
    first = (await alice(ORDERS, first=2))["orders"]
    assert len(first["items"]) == 2 and first["hasNextPage"]
    second = (await alice(ORDERS, first=2, after=first["endCursor"]))["orders"]
    assert not {o["id"] for o in first["items"]} & {o["id"] for o in second["items"]}


async def test_payment_status_and_nested_order(alice: Client, completed_payment: Any) -> None:
    data = await alice(
        """query ($id: ID!) { paymentStatus(id: $id)
             payment(id: $id) { order { number payments { id } customer { id } } } }""",
        id=completed_payment["id"],
    )
    assert data["paymentStatus"] == "COMPLETED"
    assert data["payment"]["order"]["payments"] == [{"id": completed_payment["id"]}]
    assert data["payment"]["order"]["customer"]["id"] == "cus_alice"


async def test_products_show_prices_in_their_currency(alice: Client) -> None:
    products = {
        p["sku"]: p for p in (await alice("{ products { sku price currency } }"))["products"]
    }
    assert products["MUG-WHT"]["price"] == "12.99"
    assert products["MATCHA-100G"] == {"sku": "MATCHA-100G", "price": "3200", "currency": "JPY"}
    assert products["DATES-1KG"]["price"] == "4.750"


STATS = """query ($since: DateTime!, $minutes: Int!) {
  paymentStats(since: $since, bucketMinutes: $minutes) {
    start payments succeeded failed successRate
  }
}"""


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


async def test_payment_stats_count_payments_and_their_success_in_buckets(
    admin: Client, alice: Client
) -> None:
    # given the buckets since nine minutes ago, as they are now: two of five minutes
    since = (datetime.now(UTC) - timedelta(minutes=9)).replace(microsecond=0)
    # (given as another time zone's local time: the same instant)
    local = since.astimezone(timezone(timedelta(hours=2))).isoformat()
    before = (await admin(STATS, since=local, minutes=5))["paymentStats"]
    # when two payments succeed and one is declined
    await paid(alice)
    await paid(alice)
    await paid(alice, token="pm_card_chargeDeclined")
    after = (await admin(STATS, since=local, minutes=5))["paymentStats"]
    # then there are two buckets of five minutes from `since`, and the last counts them
    assert [b["start"] for b in after] == [
        since.isoformat(),
        (since + timedelta(minutes=5)).isoformat(),
    ]
    grew = {k: after[-1][k] - before[-1][k] for k in ("payments", "succeeded", "failed")}
    assert grew == {"payments": 3, "succeeded": 2, "failed": 1}
    last = after[-1]
    assert last["successRate"] == round(last["succeeded"] / (last["succeeded"] + last["failed"]), 4)


async def test_payment_stats_are_for_admins_and_bounded(admin: Client, alice: Client) -> None:
    refused = await alice.post(STATS, since=_ago(minutes=5), minutes=5)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    for since, minutes in (
        (_ago(days=2), 60),  # more than a day ago
        (_ago(hours=2), 1),  # 120 buckets
        (_ago(minutes=5), 0),  # no width
        ((datetime.now(UTC) + timedelta(minutes=1)).isoformat(), 5),  # the future
        (datetime.now().replace(tzinfo=None).isoformat(), 5),  # no time zone
    ):
        answer = await admin.post(STATS, since=since, minutes=minutes)
        assert answer["errors"][0]["extensions"]["code"] == "VALIDATION", (since, minutes)


async def test_payments_filter_by_order_number(
    admin: Client, alice: Client, completed_payment: dict[str, Any]
) -> None:
    number = (
        await alice(
            "query ($id: ID!) { payment(id: $id) { order { number } } }",
            id=completed_payment["id"],
        )
    )["payment"]["order"]["number"]
    found = (await admin(PAYMENTS, filter={"orderNumber": number.lower()}, first=10))["payments"]
    assert [p["id"] for p in found["items"]] == [completed_payment["id"]]
    none = await admin(PAYMENTS, filter={"orderNumber": "ORD-0000-000000"}, first=10)
    assert none["payments"]["items"] == []


async def test_the_live_cursor_is_the_newest_committed_change(admin: Client, alice: Client) -> None:
    # given a payment just made
    payment = await paid(alice)
    # then the live cursor is at (or past) its last event
    cursor = (await admin("{ liveCursor }"))["liveCursor"]
    events = (
        await admin("query ($id: ID!) { payment(id: $id) { events { id } } }", id=payment["id"])
    )["payment"]["events"]
    assert cursor_number(cursor) >= cursor_number(events[-1]["id"])
    # and it is an admin's to read
    refused = await alice.post("{ liveCursor }")
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_times_in_filters_need_a_time_zone_and_any_zone_will_do(
    admin: Client, alice: Client
) -> None:
    payment = await paid(alice)
    # a time with no zone names no instant: refused, saying so
    naive = datetime.now().replace(tzinfo=None).isoformat()
    refused = await admin.post(PAYMENTS, filter={"createdBefore": naive}, first=5)
    assert refused["errors"][0]["extensions"]["code"] == "VALIDATION"
    assert "createdBefore needs a time zone" in refused["errors"][0]["message"]
    # and the same instant in another zone finds the same payments as in UTC
    before = datetime.now(UTC) - timedelta(minutes=1)
    for zone in (UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))):
        since = before.astimezone(zone).isoformat()
        found = await admin(PAYMENTS, filter={"createdAfter": since}, first=100)
        assert payment["id"] in {p["id"] for p in found["payments"]["items"]}, zone
