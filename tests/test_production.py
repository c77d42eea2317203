"""Production mode, served by a real `payql serve`: no IDE, no introspection, no
suggestions, HSTS, and JSON log lines with request ids and no secrets."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import free_port, payql_serve

from resolvers.auth import mint_token


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("production")
    secret = secrets.token_hex(32)
    env = {
        "PAYQL_ENV": "production",
        "PAYQL_DATABASE_URL": f"sqlite://{tmp / 'payql.sqlite3'}",
        "PAYQL_JWT_SECRET": secret,
        "PAYQL_SIMULATED_GATEWAY": "1",  # a card gateway with no account, for the test
        "PAYQL_SIMULATED_WEBHOOK_SECRET": secrets.token_hex(16),
        "PAYQL_RECONCILE_EVERY_S": "0",
    }
    log = tmp / "payql.log"
    with payql_serve(env, free_port(), log=log) as url:
        token = mint_token(secret, sub="cus_alice", email="alice@example.com")
        yield {"url": url, "token": token, "log": log}


def post(production: dict[str, Any], query: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{production['url']}/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {production['token']}", **headers},
    )


def messages(response: httpx.Response) -> list[str]:
    return [e["message"] for e in response.json().get("errors") or []]


def test_no_graphql_ide_is_served(production: dict[str, Any]) -> None:
    page = httpx.get(f"{production['url']}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert "graphiql" not in page.text.lower()


@pytest.mark.parametrize(
    "query", ["{ __schema { types { name } } }", '{ __type(name: "Payment") { name } }']
)
def test_introspection_is_refused(production: dict[str, Any], query: str) -> None:
    response = post(production, query)
    assert response.json()["data"] is None
    assert any("introspection has been disabled" in m for m in messages(response))


def test_typename_still_works(production: dict[str, Any]) -> None:
    assert post(production, "{ __typename }").json()["data"] == {"__typename": "Query"}


@pytest.mark.parametrize(
    "query",
    [
        '{ paymnt(id: "x") { id } }',  # a field
        '{ payment(id: "x") { stauts } }',  # a field of a type
        "{ payments(filter: {status: [COMPLETE]}) { total } }",  # an enum value
        '{ payment(idd: "x") { id } }',  # an argument
    ],
)
def test_errors_give_no_suggestions_that_map_the_schema(
    production: dict[str, Any], query: str
) -> None:
    response = post(production, query)
    assert messages(response)
    for message in messages(response):
        assert "Did you mean" not in message, message


def test_responses_demand_https_from_then_on(production: dict[str, Any]) -> None:
    response = httpx.get(f"{production['url']}/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_the_dashboard_is_served_and_the_demo_checkout_is_not(
    production: dict[str, Any],
) -> None:
    dashboard = httpx.get(f"{production['url']}/dashboard")
    assert dashboard.status_code == 200
    assert "script-src 'self';" in dashboard.headers["content-security-policy"]
    assert httpx.get(f"{production['url']}/demo/checkout").status_code == 404
    assert httpx.post(f"{production['url']}/demo/token").status_code == 404


def test_metrics_are_off_without_a_metrics_token(production: dict[str, Any]) -> None:
    # payment volumes are the business's own: production shows them only to a scraper
    # holding PAYQL_METRICS_TOKEN, and none is set here
    assert httpx.get(f"{production['url']}/metrics").status_code == 404
    assert httpx.get(f"{production['url']}/readyz").status_code == 200


def test_each_request_is_one_json_log_line_with_its_id_and_no_secrets(
    production: dict[str, Any],
) -> None:
    # given a request with a bearer token, an email and a card-like string
    response = post(
        production,
        'query Catalog { products { sku } payment(id: "4242424242424242") { id } }',
        **{"X-Request-ID": "proxy-0123456789"},
    )
    request_id = response.headers["x-request-id"]
    # then the log has one JSON line for it, with the request id and the operation
    # (written just after the response went out)
    deadline = time.monotonic() + 10
    while request_id not in Path(production["log"]).read_text():
        assert time.monotonic() < deadline, Path(production["log"]).read_text()
        time.sleep(0.05)
    text = Path(production["log"]).read_text()
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    mine = [e for e in entries if e.get("request_id") == request_id]
    assert [e["logger"] for e in mine if e["logger"] == "payql.request"] == ["payql.request"]
    [line] = [e for e in mine if e["logger"] == "payql.request"]
    assert line["status"] == 200 and line["path"] == "/graphql"
    assert line["client_request_id"] == "proxy-0123456789"
    assert line["operation"] == "query Catalog"
    assert isinstance(line["duration_ms"], float)
    # and nothing secret anywhere in the log
    for secret in (production["token"], "alice@example.com", "4242424242424242"):
        assert secret not in text
