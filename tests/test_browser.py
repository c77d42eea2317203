"""The pages in a real browser: Debian's Chromium, driven by Playwright.

Playwright never downloads a browser here: it drives the system's `chromium`, and
these tests say they were skipped where there is none (`.ci/run` installs it). Every
page must load with no console error, no uncaught exception, no failed request and no
CSP violation; a screenshot of each is saved under tests/artifacts/ (git-ignored).
The pages do not depend on the database, so they run on SQLite only.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from clients import Client
from conftest import paid, refund
from servers import LiveServer, free_port

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# No network here: nothing may reach out on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CAPTURE = "mutation ($id: ID!) { capturePayment(id: $id) { errors { code message } } }"
PRODUCTS = "query Products { products { sku name price currency } }"
WATCH = """subscription Watch($id: ID) {
  paymentStatusChanged(paymentId: $id) { status payment { id refundedAmount } }
}"""


@dataclass
class Problems:
    """What went wrong on a page: every test asserts there was nothing."""

    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.console or self.failed)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        pytest.skip("browser tests skipped: no chromium found (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(
    browser: Any, backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Any, Problems]]:
    if backend != "sqlite":
        pytest.skip("browser tests run once, on SQLite: the pages do not depend on it")
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    tab = await context.new_page()
    problems = Problems()
    tab.on(
        "console",
        lambda message: (
            message.type in ("error", "warning")
            and problems.console.append(f"{message.type}: {message.text}")
        ),
    )
    tab.on("pageerror", lambda error: problems.console.append(f"uncaught: {error}"))
    tab.on(
        "requestfailed",
        lambda req: problems.failed.append(f"{req.method} {req.url}: {req.failure}"),
    )
    tab.on(
        "response",
        lambda response: (
            response.status >= 400 and problems.failed.append(f"{response.status} {response.url}")
        ),
    )
    try:
        yield tab, problems
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        await tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        await context.close()


def graphiql_url(server: LiveServer, token: str, query: str, **variables: Any) -> str:
    params = {"q": query}  # `query` would make it a GET query, not the page
    if variables:
        params["v"] = json.dumps(variables)
    return f"{server.url}/graphql?{urlencode(params)}#token={token}"


async def run_in_graphiql(tab: Any) -> Any:
    await tab.locator(".graphiql-execute-button").click()
    return tab.locator(".result-window")


async def test_graphiql_runs_a_query_offline_with_its_own_assets(
    server: LiveServer, page: tuple[Any, Problems]
) -> None:
    tab, problems = page
    requested: list[str] = []
    tab.on("request", lambda req: requested.append(req.url))
    # given GraphiQL opened with a customer's token in the address's fragment
    token = server.token("cus_alice", email="alice@example.com")
    await tab.goto(graphiql_url(server, token, PRODUCTS))
    # when the query is run
    result = await run_in_graphiql(tab)
    # then the products come back
    await result.get_by_text('"MUG-WHT"').wait_for()
    assert "signed in as cus_alice" in await tab.locator("#who").inner_text()
    # and every file came from payql itself, the token left the address bar, and
    # nothing failed or complained
    assert requested and all(url.startswith(server.url) for url in requested), requested
    assert "token=" not in tab.url
    assert not problems, problems


async def test_graphiql_documents_the_schema_and_completes_fields(
    server: LiveServer, page: tuple[Any, Problems]
) -> None:
    tab, problems = page
    introspected: list[Any] = []
    tab.on(
        "response",
        lambda r: "IntrospectionQuery" in (r.request.post_data or "") and introspected.append(r),
    )
    # given GraphiQL opened in development with a customer's token
    token = server.token("cus_alice", email="alice@example.com")
    await tab.goto(graphiql_url(server, token, PRODUCTS))
    # when its documentation explorer is opened and Payment chosen
    await tab.get_by_label("Show Documentation Explorer").click()
    explorer = tab.locator(".graphiql-doc-explorer")
    await explorer.get_by_role("link", name="Payment", exact=True).click()
    # then the docs pane shows Payment and its fields, with their types
    await explorer.locator(".graphiql-doc-explorer-title", has_text="Payment").wait_for()
    for name in ("refundedAmount", "clientSecret", "events"):
        await explorer.locator(".graphiql-doc-explorer-field-name", has_text=name).first.wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    await tab.screenshot(path=str(ARTIFACTS / "graphiql-docs-payment.png"))
    assert "Error fetching schema" not in await tab.content()
    # and its own introspection query was answered (no limit refused it)
    assert introspected and introspected[0].status == 200
    assert "errors" not in await introspected[0].json()
    # when a query is typed in the editor
    editor = tab.locator(".graphiql-query-editor .CodeMirror")
    await editor.click()
    await tab.keyboard.press("Control+A")
    await tab.keyboard.type("{ paym")
    # then autocompletion offers the schema's fields
    hints = tab.locator(".CodeMirror-hints")
    await hints.get_by_text("payments", exact=True).wait_for()
    assert "paymentsByOrder" in await hints.inner_text()
    assert not problems, problems


async def test_graphiql_shows_a_subscription_live(
    server: LiveServer,
    admin: Client,
    completed_payment: dict[str, Any],
    page: tuple[Any, Problems],
) -> None:
    tab, problems = page
    # given GraphiQL subscribed to a completed payment, as an admin
    token = server.token("admin", role="admin")
    await tab.goto(graphiql_url(server, token, WATCH, id=completed_payment["id"]))
    result = await run_in_graphiql(tab)
    await result.get_by_text('"COMPLETED"').wait_for()
    # when another client refunds part of it
    await refund(admin, completed_payment["id"], amount="5")
    # then the change shows up in GraphiQL by itself
    await result.get_by_text('"PARTIALLY_REFUNDED"').wait_for()
    await result.get_by_text('"5.00"').wait_for()
    assert not problems, problems


# -- the dashboard ---------------------------------------------------------------------


async def open_dashboard(tab: Any, server: LiveServer) -> None:
    await tab.goto(f"{server.url}/dashboard#token={server.token('admin', role='admin')}")
    await tab.locator("#live[data-state='live']").wait_for()
    await tab.locator("#payments tbody tr").first.wait_for()
    await tab.locator("#chart[data-total]").wait_for(state="attached")


async def test_the_dashboard_shows_a_change_made_elsewhere_within_a_second(
    server: LiveServer, alice: Client, completed_payment: dict[str, Any], page: tuple[Any, Problems]
) -> None:
    tab, problems = page
    # given the dashboard open, live
    await open_dashboard(tab, server)
    total = int(await tab.locator("#chart").get_attribute("data-total") or "0")
    # when a customer pays somewhere else
    payment = await paid(alice, lines=[("MUG-WHT", 1)])
    # then within a second the dashboard shows the new payment, completed
    row = tab.locator(f"tr[data-payment-id='{payment['id']}']")
    await row.locator(".badge.COMPLETED").wait_for(timeout=1000)
    assert "$" in await row.inner_text()
    # and the last hour's chart counts it
    await tab.locator(f"#chart[data-total='{total + 1}']").wait_for(timeout=5000)
    assert not problems, problems


async def test_a_partial_refund_made_from_the_dashboard(
    server: LiveServer, admin: Client, completed_payment: dict[str, Any], page: tuple[Any, Problems]
) -> None:
    tab, problems = page
    # given the dashboard showing Alice's completed USD 64.99 payment
    await open_dashboard(tab, server)
    row = tab.locator(f"tr[data-payment-id='{completed_payment['id']}']")
    # when an admin opens it and refunds 10.00 of it
    await row.click()
    detail = tab.locator("#detail")
    await detail.get_by_text("Audit trail").wait_for()
    await detail.get_by_label("Refund amount").fill("10")
    await detail.get_by_role("button", name="Refund").click()
    # then the panel and the row say so
    await detail.get_by_text("Refunded $10.00.").wait_for()
    await detail.locator("[data-field='refunded']").get_by_text("$10.00").wait_for()
    await row.locator(".badge.PARTIALLY_REFUNDED").wait_for()
    await detail.locator("ol.events").get_by_text("partially refunded").first.wait_for()
    # and so does the API
    data = await admin(
        "query ($id: ID!) { payment(id: $id) { status refundedAmount } }",
        id=completed_payment["id"],
    )
    assert data["payment"] == {"status": "PARTIALLY_REFUNDED", "refundedAmount": "10.00"}
    assert not problems, problems


async def test_the_dashboard_shows_which_notifications_a_payment_sent(
    server: LiveServer, admin: Client, alice: Client, page: tuple[Any, Problems]
) -> None:
    tab, problems = page
    # given a merchant's endpoint that nothing answers, and a payment made since
    dead = f"http://127.0.0.1:{free_port()}/hooks"
    created = await admin(
        """mutation ($input: CreateWebhookEndpointInput!) {
             createWebhookEndpoint(input: $input) { endpoint { id } errors { code } } }""",
        input={"url": dead, "eventTypes": ["payment.completed"]},
    )
    endpoint_id = created["createWebhookEndpoint"]["endpoint"]["id"]
    try:
        payment = await paid(alice, lines=[("MUG-WHT", 1)])
        # when an admin opens it
        await open_dashboard(tab, server)
        await tab.locator(f"tr[data-payment-id='{payment['id']}']").click()
        detail = tab.locator("#detail")
        # then its panel lists the webhook, not delivered yet, with why
        await detail.get_by_text("Notifications (1)").wait_for()
        item = detail.locator("ol.notifications li").first
        await item.get_by_text(f"to {dead}").wait_for()
        await item.locator(".badge.PENDING").wait_for()
        assert "payment.completed" in await item.inner_text()
    finally:
        await admin(
            "mutation ($id: ID!) { deleteWebhookEndpoint(id: $id) { deletedId } }",
            id=endpoint_id,
        )
    assert not problems, problems


class Network:
    """The page's websockets to payql, through Playwright: cut them as a network drop
    would and refuse new ones until it is back, or let them go silent (a half-open
    connection: nothing arrives, and nothing says so)."""

    def __init__(self) -> None:
        self.down = False
        self.open: list[Any] = []
        self.silent: set[int] = set()  # connections that went silent (by id())
        self.connections = 0

    async def route(self, ws: Any) -> None:
        if self.down:
            await ws.close(code=1001, reason="network down")
            return
        self.connections += 1
        server = ws.connect_to_server()
        key = id(ws)
        ws.on_message(lambda message: None if key in self.silent else server.send(message))
        server.on_message(lambda message: None if key in self.silent else ws.send(message))
        self.open.append(ws)

    def silence(self) -> None:
        """The open connections stop carrying anything; new ones work."""
        self.silent.update(id(ws) for ws in self.open)

    async def drop(self) -> None:
        self.down = True
        for ws in self.open:
            await ws.close(code=1001, reason="network down")
        self.open.clear()

    def restore(self) -> None:
        self.down = False


async def test_the_dashboard_resumes_after_a_network_drop_with_nothing_missed(
    server: LiveServer,
    admin: Client,
    completed_payment: dict[str, Any],
    authorized_payment: dict[str, Any],
    page: tuple[Any, Problems],
) -> None:
    tab, problems = page
    network = Network()
    await tab.route_web_socket(re.compile(r".*/graphql$"), network.route)
    # given the dashboard open, having seen one live change
    await open_dashboard(tab, server)
    await refund(admin, completed_payment["id"], amount="1")
    seen = tab.locator(f"tr[data-payment-id='{completed_payment['id']}']")
    await seen.locator(".badge.PARTIALLY_REFUNDED").wait_for()
    # when its connection drops, and meanwhile an authorized payment is captured
    await network.drop()
    await tab.locator("#live[data-state='reconnecting']").wait_for()
    captured = await admin(CAPTURE, id=authorized_payment["id"])
    assert captured["capturePayment"]["errors"] == []
    row = tab.locator(f"tr[data-payment-id='{authorized_payment['id']}']")
    assert await row.locator(".badge.AUTHORIZED").count() == 1  # not seen yet
    # and the network comes back
    network.restore()
    # then the dashboard reconnects and shows the change it missed: its subscription
    # resumes after the changes it has seen (it never reloads the list: dashboard.js)
    await tab.locator("#live[data-state='live']").wait_for(timeout=20_000)
    await row.locator(".badge.COMPLETED").wait_for(timeout=5_000)
    assert not problems, problems


async def test_the_dashboard_replaces_a_connection_that_went_silent(
    server: LiveServer,
    admin: Client,
    authorized_payment: dict[str, Any],
    page: tuple[Any, Problems],
) -> None:
    tab, problems = page
    network = Network()
    await tab.route_web_socket(re.compile(r".*/graphql$"), network.route)
    # given the dashboard open and live
    await open_dashboard(tab, server)
    assert network.connections == 1
    # when its connection goes silent, as a half-open one does after a network change
    network.silence()
    captured = await admin(CAPTURE, id=authorized_payment["id"])
    assert captured["capturePayment"]["errors"] == []
    # then an unanswered ping gives it away (keep-alive 10 s, then 5 s without a pong),
    # a new connection is made, and the change sent meanwhile is shown
    await tab.locator("#live[data-connections='2'][data-state='live']").wait_for(timeout=25_000)
    row = tab.locator(f"tr[data-payment-id='{authorized_payment['id']}']")
    await row.locator(".badge.COMPLETED").wait_for(timeout=10_000)
    assert network.connections >= 2
    assert not problems, problems


# -- the demo checkout -----------------------------------------------------------------


async def checkout(tab: Any, server: LiveServer, card: str) -> None:
    """Two mugs in the basket, reviewed (the server's total shown), and paid with the
    test card whose label is `card`."""
    await tab.goto(f"{server.url}/demo/checkout")
    await tab.get_by_label("Quantity of White mug").fill("2")
    await tab.get_by_role("button", name="Review order").click()
    await tab.locator("[data-field='total']").get_by_text("$25.98").wait_for()
    await tab.get_by_role("radio", name=card).check()
    await tab.get_by_role("button", name="Pay $25.98").click()


async def test_the_demo_checkout_pays_with_a_card_that_succeeds(
    server: LiveServer, page: tuple[Any, Problems]
) -> None:
    tab, problems = page
    await checkout(tab, server, "Visa, succeeds")
    await tab.get_by_role("heading", name="Paid $25.98").wait_for()
    assert "visa •••• 4242" in await tab.locator("#outcome").inner_text()
    assert not problems, problems


async def test_the_demo_checkout_says_why_a_card_was_declined(
    server: LiveServer, page: tuple[Any, Problems]
) -> None:
    tab, problems = page
    await checkout(tab, server, "Declined")
    await tab.get_by_role("heading", name="Payment declined").wait_for()
    reason = await tab.locator("[data-field='reason']").inner_text()
    assert reason == "Your card was declined. Try another card, or ask your bank why."
    # and the same order can then be paid with another card
    await tab.get_by_role("button", name="Try another way to pay").click()
    await tab.get_by_label("Visa, succeeds").check()
    await tab.get_by_role("button", name="Pay $25.98").click()
    await tab.get_by_role("heading", name="Paid $25.98").wait_for()
    assert not problems, problems


@pytest.mark.parametrize(
    ("answer", "heading"),
    [("Approve and pay", "Paid $25.98"), ("Cancel and return to the shop", "Payment cancelled")],
)
async def test_the_demo_checkout_pays_with_paypal_approved_in_its_popup(
    server: LiveServer, page: tuple[Any, Problems], answer: str, heading: str
) -> None:
    tab, problems = page
    await checkout(tab, server, "PayPal")
    dialog = tab.locator("dialog#paypal")
    await dialog.get_by_text("$25.98").wait_for()
    # the buyer goes to PayPal's page (simulated), in a popup
    async with tab.expect_popup() as opened:
        await dialog.get_by_role("button", name="Continue to PayPal").click()
    popup = await opened.value
    popup.on("pageerror", lambda error: problems.console.append(f"popup uncaught: {error}"))
    popup.on(
        "console",
        lambda message: (
            message.type in ("error", "warning")
            and problems.console.append(f"popup {message.type}: {message.text}")
        ),
    )
    await popup.get_by_role("button", name=answer).click()
    # the simulated PayPal tells payql by webhook; payql captures; the page sees it live
    await tab.get_by_role("heading", name=heading).wait_for()
    if answer == "Approve and pay":
        outcome = await tab.locator("#outcome").inner_text()
        assert "paid with PayPal" in outcome
        # and an admin refunds it from the dashboard, in part and then in full
        found = re.search(r"Payment (pay_\w+)", outcome)
        assert found is not None
        payment_id = found.group(1)
        await open_dashboard(tab, server)
        row = tab.locator(f"tr[data-payment-id='{payment_id}']")
        await row.click()
        detail = tab.locator("#detail")
        await detail.get_by_label("Refund amount").fill("5")
        await detail.get_by_role("button", name="Refund").click()
        await detail.get_by_text("Refunded $5.00.").wait_for()
        await row.locator(".badge.PARTIALLY_REFUNDED").wait_for()
        await detail.get_by_role("button", name="Refund").click()
        await detail.get_by_text("Refunded in full.").wait_for()
        await row.locator(".badge.REFUNDED").wait_for()
        # with nothing left to refund the panel has no refund form (and no trace of one)
        await detail.get_by_role("button", name="Refund").wait_for(state="detached")
        assert "false" not in (await detail.inner_text()).split("\n")
    assert not problems, problems


@pytest.mark.parametrize(
    ("answer", "heading"), [("Approve", "Paid $25.98"), ("Deny", "Payment declined")]
)
async def test_the_demo_checkout_asks_for_3d_secure_and_follows_the_answer_live(
    server: LiveServer, page: tuple[Any, Problems], answer: str, heading: str
) -> None:
    tab, problems = page
    await checkout(tab, server, "3-D Secure required")
    dialog = tab.locator("dialog#three-ds")
    await dialog.get_by_text("$25.98").wait_for()
    await dialog.get_by_role("button", name=answer).click()
    # the outcome arrives by the gateway's webhook, and from there live to the page
    await tab.get_by_role("heading", name=heading).wait_for()
    if answer == "Deny":
        reason = await tab.locator("[data-field='reason']").inner_text()
        assert "not confirmed with your bank" in reason
    assert not problems, problems


async def test_the_dashboard_filters_and_searches(
    server: LiveServer,
    alice: Client,
    bob: Client,
    completed_payment: dict[str, Any],
    page: tuple[Any, Problems],
) -> None:
    tab, problems = page
    # given a declined payment of Bob's beside Alice's completed one
    declined = await paid(bob, token="pm_card_chargeDeclined")
    await open_dashboard(tab, server)
    alices = tab.locator(f"tr[data-payment-id='{completed_payment['id']}']")
    bobs = tab.locator(f"tr[data-payment-id='{declined['id']}']")
    await alices.wait_for()
    await bobs.wait_for()
    # when searching by Bob's email, only his payments are listed
    await tab.get_by_placeholder("order number (ORD-…) or customer email").fill("bob@example.com")
    await alices.wait_for(state="detached")
    await bobs.wait_for()
    assert all(
        "bob@example.com" in text
        for text in await tab.locator("#payments tbody tr").all_inner_texts()
    )
    # and by an order's number, only that order's
    order = await alice(
        "query ($id: ID!) { payment(id: $id) { order { number } } }", id=completed_payment["id"]
    )
    search = tab.get_by_placeholder("order number (ORD-…) or customer email")
    await search.fill(order["payment"]["order"]["number"])
    await alices.wait_for()
    assert await tab.locator("#payments tbody tr").count() == 1
    # and by status
    await search.fill("")
    await tab.get_by_label("Status").select_option("FAILED")
    await bobs.wait_for()
    await alices.wait_for(state="detached")
    assert set(await tab.locator("#payments tbody .badge").all_inner_texts()) == {"failed"}
    assert not problems, problems


async def test_capture_and_cancel_from_the_dashboard(
    server: LiveServer,
    alice: Client,
    authorized_payment: dict[str, Any],
    page: tuple[Any, Problems],
) -> None:
    tab, problems = page
    # given an authorized payment and one waiting for 3-D Secure
    waiting = await paid(alice, token="pm_card_authenticationRequired")
    await open_dashboard(tab, server)
    detail = tab.locator("#detail")
    # when an admin captures the first from its panel
    await tab.locator(f"tr[data-payment-id='{authorized_payment['id']}']").click()
    await detail.get_by_role("button", name="Capture").click()
    # then it is completed, in the panel and in the list
    await detail.get_by_text("Captured.").wait_for()
    row = tab.locator(f"tr[data-payment-id='{authorized_payment['id']}']")
    await row.locator(".badge.COMPLETED").wait_for()
    # (the panel is drawn again from the API: then there is nothing left to capture)
    await detail.get_by_role("button", name="Capture").wait_for(state="detached")
    # and when the other is cancelled, it is cancelled
    await tab.locator(f"tr[data-payment-id='{waiting['id']}']").click()
    await detail.get_by_role("button", name="Cancel payment").click()
    await detail.get_by_text("Cancelled.").wait_for()
    await tab.locator(f"tr[data-payment-id='{waiting['id']}'] .badge.CANCELLED").wait_for()
    assert not problems, problems


async def test_the_dashboard_shows_more_than_one_page(
    server: LiveServer, anonymous: Client, page: tuple[Any, Problems]
) -> None:
    tab, problems = page
    # given 55 payments of one customer (the dashboard shows 50 at a time)
    carol = anonymous.as_(server.token("cus_carol", email="carol@example.com"))
    made = [(await paid(carol))["id"] for _ in range(55)]
    await open_dashboard(tab, server)
    await tab.get_by_placeholder("order number (ORD-…) or customer email").fill("carol@example.com")
    await tab.get_by_text("50 shown of 55 matching").wait_for()
    assert await tab.locator(f"tr[data-payment-id='{made[0]}']").count() == 0  # the oldest
    # when the next page is asked for
    await tab.get_by_role("button", name="Show more").click()
    # then all 55 are listed, once each, and there is no more to show
    await tab.get_by_text("55 shown of 55 matching").wait_for()
    shown = [
        await row.get_attribute("data-payment-id")
        for row in await tab.locator("#payments tbody tr").all()
    ]
    assert sorted(shown) == sorted(made)
    assert await tab.get_by_role("button", name="Show more").is_hidden()
    assert not problems, problems
