"""The served schema honours the public contract (tests/contract.graphql)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clients import Client
from graphql import (
    GraphQLSchema,
    build_client_schema,
    build_schema,
    find_breaking_changes,
    get_introspection_query,
    lexicographic_sort_schema,
    print_schema,
)
from test_introspection import EVERY_OPTION

from schema.schema import schema

CONTRACT = Path(__file__).with_name("contract.graphql")


def test_served_schema_has_no_breaking_change_against_the_contract() -> None:
    # given the contract and the schema the service serves
    contract = build_schema(CONTRACT.read_text())
    served = build_schema(schema.as_str())
    # when graphql-core compares them
    changes = find_breaking_changes(contract, served)
    # then nothing the contract promises is missing or changed
    assert [c.description for c in changes] == []


# What the issues added to the shared contract, in the repo's copy (nothing else differs).
ADDED = ["PaymentStatusChange.type added"]


def test_contract_copy_is_the_shared_contract_and_its_additions_when_present() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "contract" / "schema.graphql"
    if not shared.exists():
        pytest.skip("no ../shared beside this clone: only the repo's own copy is checked")
    original, copy = build_schema(shared.read_text()), build_schema(CONTRACT.read_text())
    # nothing the shared contract promises is missing from the copy
    assert find_breaking_changes(original, copy) == []
    # and the copy adds only what the issues asked for
    added = [
        f"{name}.{field} added"
        for name, kind in copy.type_map.items()
        if not name.startswith("__") and hasattr(kind, "fields")
        for field in kind.fields
        if field not in getattr(original.type_map.get(name), "fields", {})
    ]
    assert added == ADDED


async def test_payql_schema_prints_the_schema_the_server_serves(alice: Client) -> None:
    # given the SDL that `payql schema` prints (what codegen tools are pointed at)
    printed = subprocess.run(  # noqa: ASYNC221 (a short command, before anything else)
        [sys.executable, "-m", "payql.cli", "schema"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PAYQL_ENV": "production"},  # no settings needed, none read
    ).stdout
    # when the running server is introspected
    body = await alice.post(get_introspection_query(**EVERY_OPTION))
    assert body.get("errors") is None, body["errors"]
    served = build_client_schema(body["data"])

    # then both are the same schema, descriptions and deprecations included
    def sdl(built: GraphQLSchema) -> str:
        return print_schema(lexicographic_sort_schema(built))

    assert sdl(build_schema(printed)) == sdl(served)
    assert find_breaking_changes(build_schema(CONTRACT.read_text()), served) == []
