"""The served schema honours the public contract (tests/contract.graphql)."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import build_schema, find_breaking_changes

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


def test_contract_copy_matches_the_shared_contract_when_present() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "contract" / "schema.graphql"
    if not shared.exists():
        pytest.skip("no ../shared beside this clone: only the repo's own copy is checked")
    assert CONTRACT.read_text() == shared.read_text()
