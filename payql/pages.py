"""The pages people look at, and the files they load: plain files under payql/static,
served by the app itself (no front-end build step, no CDN, so they work offline and
under a strict CSP). Libraries are vendored from their npm packages with their
licences: static/vendor/fetch.sh fetches them, SHA256SUMS pins them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from payql.settings import Settings
from resolvers.auth import mint_token

STATIC = Path(__file__).resolve().parent / "static"
DEMO_CUSTOMER = "cus_demo"

# Scripts and styles from payql only, never inline; fetches and websockets to payql
# only ('self' covers ws: and wss: to the same host).
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def page(name: str) -> Response:
    """One of the HTML pages, under the pages' CSP; always revalidated, so a page and
    the scripts it names never come from different releases."""
    return FileResponse(
        STATIC / name,
        media_type="text/html; charset=utf-8",
        headers={"content-security-policy": PAGE_CSP, "cache-control": "no-cache"},
    )


async def graphiql(request: Request) -> Response:
    return page("graphiql/index.html")


async def dashboard(request: Request) -> Response:
    """Admins' live dashboard (the data needs an admin's token; the page itself is
    public, like any sign-in page)."""
    return page("dashboard/index.html")


async def demo_checkout(request: Request) -> Response:
    """Development only: an SPA checkout against the simulated gateway."""
    return page("demo/checkout.html")


async def simulated_paypal(request: Request) -> Response:
    """The simulated gateway's PayPal approval page (a PAYPAL payment's redirectUrl)."""
    return page("demo/paypal.html")


def demo_token(settings: Settings) -> Any:
    async def token(request: Request) -> Response:
        """Development only: a token for the demo customer, so that the demo checkout
        runs with nothing to paste. (Production serves neither this nor the page.)"""
        minted = mint_token(
            settings.jwt_secret,
            sub=DEMO_CUSTOMER,
            role="customer",
            email="demo@example.com",
            name="Demo Customer",
            ttl=timedelta(hours=12),
        )
        return JSONResponse({"token": minted}, headers={"cache-control": "no-store"})

    return token


class _Revalidated(StaticFiles):
    """Every file is revalidated (its ETag makes that a 304), like the pages: a page
    and the scripts it loads always come from the same release."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["cache-control"] = "no-cache"
        return response


def static_files() -> StaticFiles:
    return _Revalidated(directory=STATIC)
