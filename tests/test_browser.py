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
from conftest import refund
from support import Client, LiveServer

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
