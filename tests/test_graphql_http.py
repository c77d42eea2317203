"""GraphQL over HTTP (the GraphQL Foundation's spec): media types and status codes.

`application/graphql-response+json` when the client prefers it: 400 and no `data` for
a request that never ran, 200 once execution started. `application/json` for clients
asking for it, for `*/*` and for no Accept: 200 for every GraphQL answer. 406 for an
Accept allowing neither, 405 for a mutation by GET, 401 without a valid token.

The last test runs the Foundation's own audit suite (npm `graphql-http`, pinned in
tests/node/) against the real server.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients import Client
from servers import LiveServer

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
TYPENAME = "{ __typename }"
MY_ORDERS = "{ orders { total } }"
CREATE_ORDER = """mutation { createOrder(input: {lines: [{sku: "MUG-WHT", quantity: 1}]}) {
  order { id } errors { code } } }"""
PAYMENT_STATUS = "query ($id: ID!) { paymentStatus(id: $id) }"
# Admins only: for a customer the operation runs and its one field fails.
ALL_PAYMENTS = "{ payments { total } }"
# The products are there; the payment's field fails on its argument (no NUL in a string).
PRODUCTS_AND_A_BAD_ID = '{ products { sku } payment(id: "pay_\\u0000") { id } }'
_DEEP = ["orders", "items"] + ["payments", "order"] * 5  # 12 deep; 10 is allowed
TOO_DEEP = "{ " + " { ".join(_DEEP) + " { id }" + " }" * len(_DEEP)
SUBSCRIPTION = "subscription { paymentStatusChanged { status } }"


async def post(client: Client, body: Any, accept: str | None, **headers: str) -> httpx.Response:
    """POST a JSON body with the client's token and exactly this Accept (None: none)."""
    request = client.http.build_request(
        "POST",
        f"{client.url}/graphql",
        content=json.dumps(body).encode(),
        headers={"content-type": JSON, **headers},
    )
    if client.token:
        request.headers["authorization"] = f"Bearer {client.token}"
    del request.headers["accept"]  # httpx's own */*
    if accept is not None:
        request.headers["accept"] = accept
    return await client.http.send(request)


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def charset(response: httpx.Response) -> str:
    return response.headers["content-type"].partition("charset=")[2].strip()


# -- content negotiation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "answered_in"),
    [
        (None, JSON),  # no Accept: the legacy type, which every GraphQL client reads
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}; charset=utf-8", GRAPHQL_RESPONSE),
        # what the spec recommends clients send
        (f"{GRAPHQL_RESPONSE}, {JSON};q=0.9", GRAPHQL_RESPONSE),
        (f"{JSON};q=0.9, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"{JSON}, {GRAPHQL_RESPONSE};q=0.5", JSON),
        (f"text/html, */*;q=0.1, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"*/*, {JSON};q=0", GRAPHQL_RESPONSE),  # JSON refused by name
        ("APPLICATION/GRAPHQL-RESPONSE+JSON", GRAPHQL_RESPONSE),
    ],
)
async def test_the_answer_comes_in_the_media_type_the_client_prefers(
    alice: Client, accept: str | None, answered_in: str
) -> None:
    # when a query is sent with this Accept
    response = await post(alice, {"query": TYPENAME}, accept)
    # then it is answered in the preferred type, in UTF-8, with its data
    assert response.status_code == 200, response.text
    assert media_type(response) == answered_in
    assert charset(response) == "utf-8"
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "application/xml, text/plain;q=0.5",
        f"{JSON};q=0, {GRAPHQL_RESPONSE};q=0",
        f"{GRAPHQL_RESPONSE}; charset=iso-8859-1",
    ],
)
async def test_an_accept_allowing_neither_type_is_refused_with_406_and_nothing_runs(
    alice: Client, accept: str
) -> None:
    # given Alice's orders so far
    before = (await alice(MY_ORDERS))["orders"]["total"]
    # when she sends a mutation accepting neither JSON type
    response = await post(alice, {"query": CREATE_ORDER}, accept)
    # then it is refused, saying which types the endpoint answers in
    assert response.status_code == 406
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "NOT_ACCEPTABLE"
    assert GRAPHQL_RESPONSE in error["message"] and JSON in error["message"]
    # and no order was made
    assert (await alice(MY_ORDERS))["orders"]["total"] == before


# -- GraphQL request errors: the operation never ran -----------------------------------

REQUEST_ERRORS = {
    "does not parse": ({"query": "{"}, "Syntax Error"),
    "does not validate": ({"query": "{ nope }"}, "Cannot query field 'nope'"),
    "variables do not coerce": (
        {"query": PAYMENT_STATUS, "variables": {"id": None}},
        "Variable '$id' has invalid value",
    ),
    "variables missing": ({"query": PAYMENT_STATUS}, "Variable '$id' has invalid value"),
    "unknown operation name": (
        {"query": "query A { __typename }", "operationName": "B"},
        'Unknown operation named "B"',
    ),
    "over a limit": ({"query": TOO_DEEP}, "at most 10 is allowed"),
    "a subscription over HTTP": ({"query": SUBSCRIPTION}, "graphql-transport-ws"),
}


@pytest.mark.parametrize("case", REQUEST_ERRORS)
async def test_a_request_that_never_runs_is_400_with_no_data_in_graphql_response_json(
    alice: Client, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    body, message = REQUEST_ERRORS[case]
    # when it is sent accepting application/graphql-response+json
    with caplog.at_level(logging.ERROR):
        response = await post(alice, body, GRAPHQL_RESPONSE)
    # then it is a Bad Request, a GraphQL response with errors and no data entry
    assert response.status_code == 400, response.text
    assert media_type(response) == GRAPHQL_RESPONSE
    answer = response.json()
    assert "data" not in answer
    assert message in answer["errors"][0]["message"], answer
    # and nothing unexpected happened on the way
    assert not [r for r in caplog.records if r.name.startswith("payql")], caplog.text


@pytest.mark.parametrize("case", REQUEST_ERRORS)
async def test_a_request_that_never_runs_is_200_in_application_json(
    alice: Client, case: str
) -> None:
    body, message = REQUEST_ERRORS[case]
    # when it is sent accepting application/json (or */*, as clients.Client does)
    for accept in (JSON, "*/*"):
        response = await post(alice, body, accept)
        # then it is 200, as the spec says for that type, with the errors
        assert response.status_code == 200, response.text
        assert media_type(response) == JSON
        answer = response.json()
        assert answer["data"] is None
        assert message in answer["errors"][0]["message"], answer


# -- execution started: 200 whatever the type ------------------------------------------


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_an_operation_that_ran_is_200_even_with_field_errors(
    alice: Client, accept: str
) -> None:
    # when a customer's operation runs and one of its fields fails
    partial = await post(alice, {"query": PRODUCTS_AND_A_BAD_ID}, accept)
    # then it is 200 with the data there is, and the field's error at its path
    assert partial.status_code == 200, partial.text
    assert media_type(partial) == accept
    answer = partial.json()
    assert answer["data"]["products"] and answer["data"]["payment"] is None
    assert answer["errors"][0]["path"] == ["payment"]
    # and when the only field fails (a non-null one, so data is null), still 200
    forbidden = await post(alice, {"query": ALL_PAYMENTS}, accept)
    assert forbidden.status_code == 200, forbidden.text
    answer = forbidden.json()
    assert "data" in answer and answer["data"] is None
    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# -- requests that are not GraphQL over HTTP -------------------------------------------

MALFORMED = {
    "a body that is not JSON": (b'{ "not a JSON', "Unable to parse request body as JSON"),
    "no query": ({"qeury": TYPENAME}, "No GraphQL query found"),
    "a query that is not a string": ({"query": 7}, "`query` must be a string"),
    "variables that are not an object": (
        {"query": TYPENAME, "variables": ["x"]},
        "`variables` must be an object",
    ),
    "extensions that are not an object": (
        {"query": TYPENAME, "extensions": "x"},
        "`extensions` must be an object",
    ),
    "an operationName that is not a string": (
        {"query": TYPENAME, "operationName": {"x": 1}},
        "`operationName` must be a string",
    ),
    "a JSON list": ([{"query": TYPENAME}], "Batching is not enabled"),
}


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_request_is_400_with_a_graphql_shaped_error(
    alice: Client, case: str, accept: str
) -> None:
    body, message = MALFORMED[case]
    # when it is sent
    request = alice.http.build_request(
        "POST",
        f"{alice.url}/graphql",
        content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={"content-type": JSON, "authorization": f"Bearer {alice.token}", "accept": accept},
    )
    response = await alice.http.send(request)
    # then it is a Bad Request, said in the type asked for, with no data
    assert response.status_code == 400, response.text
    assert media_type(response) == accept
    answer = response.json()
    assert "data" not in answer
    [error] = answer["errors"]
    assert message in error["message"]
    assert error["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_a_mutation_by_get_is_405_and_changes_nothing(alice: Client, accept: str) -> None:
    # given Alice's orders so far
    before = (await alice(MY_ORDERS))["orders"]["total"]
    # when she sends a mutation by GET
    response = await alice.http.get(
        f"{alice.url}/graphql",
        params={"query": CREATE_ORDER},
        headers={"authorization": f"Bearer {alice.token}", "accept": accept},
    )
    # then it is Method Not Allowed, pointing at POST
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert media_type(response) == accept
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    # and no order was made
    assert (await alice(MY_ORDERS))["orders"]["total"] == before
    # while a query by GET is answered in the type asked for
    query = await alice.http.get(
        f"{alice.url}/graphql",
        params={"query": PAYMENT_STATUS, "variables": json.dumps({"id": "pay_none"})},
        headers={"authorization": f"Bearer {alice.token}", "accept": accept},
    )
    assert query.status_code == 200
    assert media_type(query) == accept
    assert query.json() == {"data": {"paymentStatus": None}}


# -- authentication --------------------------------------------------------------------


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON, None])
@pytest.mark.parametrize("token", [None, "eyJhbGciOiJIUzI1NiJ9.e30.forged"])
async def test_an_unauthenticated_request_is_401_in_either_type(
    anonymous: Client, accept: str | None, token: str | None
) -> None:
    # when a request comes with no token, or one that is not valid
    response = await post(anonymous.as_(token), {"query": TYPENAME}, accept)
    # then it is refused before GraphQL, with 401 and a Bearer challenge
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="payql"')
    assert ('error="invalid_token"' in challenge) == (token is not None)
    assert media_type(response) == (accept or JSON)
    answer = response.json()
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["UNAUTHENTICATED"]
    # with no data entry in the new type, and the `"data": null` JSON clients know
    if media_type(response) == GRAPHQL_RESPONSE:
        assert "data" not in answer
    else:
        assert answer["data"] is None


# -- the GraphQL Foundation's audit ----------------------------------------------------


def test_the_graphql_over_http_audit_passes_in_full(server: LiveServer, node_scripts: Path) -> None:
    # given the Foundation's audit suite, its requests carrying an admin's token
    token = server.token("audit", role="admin")
    # when it audits the real server
    done = subprocess.run(
        ["node", str(node_scripts / "audit.mjs"), f"{server.url}/graphql"],
        env={**os.environ, "PAYQL_AUDIT_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    # then every audit is ok: the MUSTs, and the SHOULDs and MAYs too
    assert len(results) >= 61, results  # graphql-http 1.23.1 has 61
    failing = [
        f"{r['id']} {r['name']}: {r['status']}, {r.get('reason')} (answered {r.get('response')})"
        for r in results
        if r["status"] != "ok"
    ]
    assert not failing, "\n".join(failing)
