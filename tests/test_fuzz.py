"""Fuzzing the whole schema over real HTTP: valid and invalid documents, hostile variables.

Whatever arrives, the answer is a clean GraphQL response: no 500, no unexpected
(masked) error, which would be a bug found, and nothing internal in any message.
The runs are derandomized (the same examples every run, so CI is repeatable) and
bounded: PAYQL_FUZZ_EXAMPLES examples per test (1,000 by default).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries
from servers import LiveServer

from schema.schema import schema

EXAMPLES = int(os.environ.get("PAYQL_FUZZ_EXAMPLES", "1000"))
SDL = schema.as_str()

SCALARS = {
    "Decimal": st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=2).map(nodes.String),
        st.text(max_size=12).map(nodes.String),
    ),
    "DateTime": st.one_of(
        st.datetimes().map(lambda d: nodes.String(d.isoformat())),
        st.text(max_size=12).map(nodes.String),
    ),
    "JSON": st.one_of(
        st.text(max_size=20).map(nodes.String),
        st.integers().map(nodes.Int),
        st.dictionaries(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,44}", fullmatch=True),
            st.text(max_size=20).map(nodes.String),
            max_size=3,
        ).map(
            lambda d: nodes.Object(
                [
                    graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v)
                    for k, v in d.items()
                ]
            )
        ),
    ),
}

# What a message must never show: tracebacks, source paths, SQL, drivers, exception names.
INTERNALS = re.compile(
    r"Traceback|File \"|\.py\b|/work/|site-packages|SELECT |INSERT |UPDATE |DELETE FROM|"
    r"sqlite|asyncpg|psycopg|tortoise|pypika|KeyError|AttributeError|TypeError|"
    r"ValueError|RuntimeError|IntegrityError|OperationalError",
)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
def send(server: LiveServer) -> Iterator[Callable[[Any], None]]:
    """POST one request as an admin (who may reach every field) and check the answer."""
    client = httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.token('admin', role='admin')}"},
        timeout=30,
    )

    def post(body: Any) -> None:
        response = client.post("/graphql", json=body)
        check(response, sent=body)

    yield post
    client.close()


def quoted_in(value: Any) -> Iterator[str]:
    """How an error may quote the caller's own input back: each string, list and
    object it sent, as Python's repr or as JSON, quotes and brackets included."""
    if isinstance(value, str | list | dict):
        yield repr(value)
        yield json.dumps(value)
    if isinstance(value, dict):
        for key, item in value.items():
            yield from quoted_in(key)
            yield from quoted_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from quoted_in(item)


def check(response: httpx.Response, sent: Any = None) -> None:
    assert response.status_code in (200, 400, 413), (response.status_code, response.text)
    # A message may quote the caller's variables ("cannot represent value: {'SELECT ':
    # None}"): only what payql adds must be clean. Only the variables, and only quoted.
    variables = sent.get("variables") if isinstance(sent, dict) else None
    text = response.text
    for quoted in sorted(set(quoted_in(variables)), key=len, reverse=True):
        text = text.replace(quoted, "").replace(json.dumps(quoted)[1:-1], "")
    assert not INTERNALS.search(text), response.text
    if response.status_code != 200:
        return
    body = response.json()
    assert set(body) <= {"data", "errors", "extensions"}, body
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code != "INTERNAL_SERVER_ERROR", f"an unexpected error: {response.text}"
        assert error["message"] != "Unexpected error.", response.text


@FUZZ
@given(document=queries(SDL, custom_scalars=SCALARS))
def test_valid_queries_get_clean_answers(send: Any, document: str) -> None:
    send({"query": document})


@FUZZ
@given(document=mutations(SDL, custom_scalars=SCALARS))
def test_valid_mutations_get_clean_answers(send: Any, document: str) -> None:
    send({"query": document})


@FUZZ
@given(document=queries(SDL, custom_scalars=SCALARS, mode=Mode.NEGATIVE))
def test_invalid_queries_get_clean_errors(send: Any, document: str) -> None:
    send({"query": document})


@FUZZ
@given(document=mutations(SDL, custom_scalars=SCALARS, mode=Mode.NEGATIVE))
def test_invalid_mutations_get_clean_errors(send: Any, document: str) -> None:
    send({"query": document})


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

WITH_VARIABLES = [
    "query ($id: ID!) { payment(id: $id) { id status refunds { id } } }",
    "query ($f: PaymentFilter, $n: Int!, $a: String) {"
    " payments(filter: $f, first: $n, after: $a) { total } }",
    "mutation ($i: CreateOrderInput!) { createOrder(input: $i) { order { id } errors { code } } }",
    "mutation ($i: ProcessPaymentInput!) {"
    " processPayment(input: $i) { payment { id } errors { code } } }",
    "mutation ($i: RefundPaymentInput!) {"
    " refundPayment(input: $i) { refund { id } errors { code } } }",
    "mutation ($id: ID!, $a: Decimal) { capturePayment(id: $id, amount: $a) { errors { code } } }",
]


@FUZZ
@given(
    query=st.sampled_from(WITH_VARIABLES),
    variables=st.dictionaries(st.sampled_from(["id", "f", "n", "a", "i"]), JSON_VALUES, max_size=4),
)
def test_hostile_variables_get_clean_errors(send: Any, query: str, variables: Any) -> None:
    send({"query": query, "variables": variables})


@FUZZ
@given(body=JSON_VALUES | st.text(max_size=200))
def test_bodies_that_are_not_graphql_requests_get_clean_errors(send: Any, body: Any) -> None:
    send(body)
