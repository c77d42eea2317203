"""Introspection in development: every standard introspection query passes the limits,
and what is piled or nested past them is still refused, before anything runs.

GraphiQL, GraphQL Code Generator, Rover, Postman and Insomnia all send graphql-js's
`getIntrospectionQuery()`; Python tools send graphql-core's. They nest about 15 fields
deep, past the depth limit (10) meant for data. Production refuses introspection
outright (tests/test_production.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clients import Client
from graphql import build_client_schema, get_introspection_query

from schema import introspection

EVERY_OPTION = {
    "descriptions": True,
    "specified_by_url": True,
    "directive_is_repeatable": True,
    "schema_description": True,
    "input_value_deprecation": True,
    "one_of": True,
}


def codes(body: dict[str, Any]) -> list[str | None]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def messages(body: dict[str, Any]) -> str:
    return " | ".join(e["message"] for e in body.get("errors") or [])


def of_type(levels: int) -> str:
    """`__type(name: "Payment") { ofType { ofType { … } } }`, `levels` deep."""
    chain = "ofType { " * levels + "name" + " }" * levels
    return '{ __type(name: "Payment") { ' + chain + " } }"


@pytest.mark.parametrize(
    "options",
    [{}, EVERY_OPTION, {**EVERY_OPTION, "type_depth": 7}],
    ids=["graphql-core-default", "graphql-core-every-option", "graphql-js-16-chain"],
)
async def test_the_standard_introspection_query_passes(
    alice: Client, options: dict[str, Any]
) -> None:
    # given graphql-core's introspection query (graphql-js 16's chain is 7 deep)
    query = get_introspection_query(**options)
    # when a customer sends it in development
    body = await alice.post(query)
    # then the whole schema comes back, and a client can be built from it
    assert body.get("errors") is None, messages(body)
    built = build_client_schema(body["data"])
    payment = built.get_type("Payment")
    assert payment is not None and "refundedAmount" in payment.fields  # type: ignore[attr-defined]
    assert built.subscription_type is not None
    assert "paymentStatusChanged" in built.subscription_type.fields


async def test_graphql_js_introspection_queries_pass(alice: Client, node_scripts: Path) -> None:
    # given graphql-js's own getIntrospectionQuery(), plain and with every option on
    done = subprocess.run(  # noqa: ASYNC221 (a short script, before the requests)
        ["node", str(node_scripts / "introspection.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed = json.loads(done.stdout)
    assert printed["version"].startswith("16.")
    for name, query in printed["queries"].items():
        # when each is sent
        body = await alice.post(query)
        # then the schema comes back whole
        assert body.get("errors") is None, (name, messages(body))
        built = build_client_schema(body["data"])
        assert built.get_type("Payment") is not None, name
    assert "isOneOf" in printed["queries"]["every-option"]


async def test_two_introspections_in_one_operation_pass_and_three_do_not(alice: Client) -> None:
    # given the full introspection asked for under two, then three aliases
    selection = get_introspection_query(**EVERY_OPTION)
    fragments = selection[selection.index("fragment ") :]
    inner = selection[selection.index("__schema") + len("__schema") : selection.index("fragment ")]
    inner = inner.strip().removesuffix("}").strip()

    def piled(count: int) -> str:
        fields = " ".join(f"s{i}: __schema {inner}" for i in range(count))
        return f"query {{ {fields} }}\n{fragments}"

    # when each is sent
    two = await alice.post(piled(2))
    three = await alice.post(piled(3))
    # then two are answered (a tool may ask twice), three are refused for their cost
    assert two.get("errors") is None, messages(two)
    assert two["data"]["s0"] == two["data"]["s1"]
    assert three.get("data") is None
    assert codes(three) == ["QUERY_TOO_COMPLEX"]
    assert "introspection is too expensive" in messages(three)


async def test_a_tower_of_of_type_is_refused_before_it_runs(alice: Client) -> None:
    # given ofType nested 9 deep (graphql-core's chain), 100 deep and 500 deep
    standard = await alice.post(of_type(9))
    tower = await alice.post(of_type(100))
    taller = await alice.post(of_type(500))
    # then the first is answered; the others are refused, and say why
    assert standard.get("errors") is None, messages(standard)
    assert standard["data"]["__type"]["ofType"] is None  # Payment wraps nothing
    assert tower.get("data") is None
    assert codes(tower) == ["QUERY_TOO_DEEP"]
    assert f"introspection is 102 fields deep; at most {introspection.MAX_DEPTH}" in messages(tower)
    assert taller.get("data") is None
    assert "nested too deeply" in messages(taller)  # the parser's own bound


async def test_a_walk_from_types_through_their_fields_is_refused(alice: Client) -> None:
    # given introspection that walks from every type's fields to their types' fields,
    # five times over (its answer would be the schema many times)
    walk = "fields { type { " * 5
    query = "{ __schema { types { " + walk + "name" + " } }" * 5 + " } } }"
    # when it is sent
    body = await alice.post(query)
    # then GraphQL's own rule against such walks refuses it
    assert body.get("data") is None
    assert messages(body) == "Maximum introspection depth exceeded"


async def test_introspection_beside_data_does_not_loosen_the_data_limits(alice: Client) -> None:
    # given a query too deep for data, with introspection beside it
    deep = 'payment(id: "pay_x") { ' + "order { payments { " * 6 + "id" + " } }" * 6 + " }"
    body = await alice.post("{ __schema { queryType { name } } " + deep + " }")
    # then the data's depth is still judged, and refused
    assert body.get("data") is None
    assert codes(body) == ["QUERY_TOO_DEEP"]
    assert "at most 10 is allowed" in messages(body)


async def test_typename_costs_nothing_deep(alice: Client) -> None:
    # given __typename on a query at the depth limit
    body = await alice.post('{ payment(id: "pay_x") { __typename order { __typename } } }')
    # then it runs
    assert body.get("errors") is None, messages(body)
    assert body["data"] == {"payment": None}
