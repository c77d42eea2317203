"""Trusted documents: operations named by the sha256 of their text, from a manifest read
at start-up (PAYQL_TRUSTED_DOCUMENTS), and only those with PAYQL_TRUSTED_DOCUMENTS_ONLY."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import graphql.language.parser
import httpx
import pytest
import strawberry.schema.schema
from clients import Subscription
from conftest import CREATE_ORDER, PROCESS_PAYMENT
from gateway_support import confirm
from httpx_ws import WebSocketDisconnect
from servers import LiveServer, base_settings, database, running_server

from payql.cli import main
from payql.settings import Settings, SettingsError
from schema.guards import DocumentLimits

PAYMENT_STATUS = "query TrustedPaymentStatus($id: ID!) { paymentStatus(id: $id) }"
# Sent only by id, never as a query, by the test that proves it is never parsed again;
# printed on one line with its fragment first, as GraphQL Code Generator writes it.
PAYMENT_READ = (
    "fragment PaymentFields on Payment { amount currency id status } "
    "query TrustedPaymentRead($id: ID!) { payment(id: $id) { ...PaymentFields } }"
)
# Its cost depends on $n: measured per request (limits below: at most 5000).
ORDER_HISTORY = """query TrustedOrderHistory($n: Int!) {
  orders(first: $n) { items { id payments { id events { id } } } }
}"""
STATUS_CHANGED = """subscription TrustedStatus($paymentId: ID) {
  paymentStatusChanged(paymentId: $paymentId) { status payment { id status } }
}"""
UNTRUSTED = "query Untrusted($id: ID!) { paymentStatus(id: $id) }"

DOCUMENTS = (PAYMENT_STATUS, PAYMENT_READ, ORDER_HISTORY, STATUS_CHANGED, CREATE_ORDER)
DOCUMENTS += (PROCESS_PAYMENT,)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(path: Path, content: Any) -> str:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What GraphQL Code Generator's client preset writes: "sha256:<hash>" → document
    (older versions of it write the bare hash: the start-up tests use those)."""
    folder = tmp_path_factory.mktemp("manifest")
    manifest = {f"sha256:{sha256(d)}": d for d in DOCUMENTS}
    return write_manifest(folder / "persisted-documents.json", manifest)


@pytest.fixture(scope="module")
def trusted_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, manifest: str
) -> Iterator[LiveServer]:
    """A server that knows the manifest's documents and takes free queries too."""
    with database(backend, tmp_path_factory.mktemp(backend)) as url:
        settings = replace(base_settings(url), trusted_documents=manifest, max_query_cost=5000)
        with running_server(settings) as live:
            yield live


@pytest.fixture(scope="module")
def only_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, manifest: str
) -> Iterator[LiveServer]:
    """A server that takes the manifest's documents and nothing else (production's way)."""
    with database(backend, tmp_path_factory.mktemp(backend)) as url:
        settings = replace(
            base_settings(url), trusted_documents=manifest, trusted_documents_only=True
        )
        with running_server(settings) as live:
            yield live


def alice(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('cus_alice')}"}


async def by_id(
    http: httpx.AsyncClient, server: LiveServer, document: str, **variables: Any
) -> dict[str, Any]:
    """POST {"documentId": "sha256:…", "variables": …} as Alice."""
    response = await http.post(
        f"{server.url}/graphql",
        json={"documentId": f"sha256:{sha256(document)}", "variables": variables},
        headers=alice(server),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post(http: httpx.AsyncClient, server: LiveServer, body: dict[str, Any]) -> Any:
    response = await http.post(f"{server.url}/graphql", json=body, headers=alice(server))
    return response.json()


async def alices_payment(http: httpx.AsyncClient, server: LiveServer, token: str) -> Any:
    """Alice's new order, paid with `token`, made by trusted documents only."""
    order = await by_id(
        http, server, CREATE_ORDER, input={"lines": [{"sku": "MUG-WHT", "quantity": 1}]}
    )
    assert not order.get("errors"), order
    order_id = order["data"]["createOrder"]["order"]["id"]
    paid = await by_id(
        http,
        server,
        PROCESS_PAYMENT,
        input={"orderId": order_id, "paymentMethod": "CREDIT_CARD", "token": token},
    )
    assert not paid.get("errors"), paid
    return paid["data"]["processPayment"]


def code_of(body: dict[str, Any]) -> str:
    assert body.get("data") is None, body  # refused before anything ran
    code: str = body["errors"][0]["extensions"]["code"]
    return code


# -- requests by id ----------------------------------------------------------------------


async def test_a_trusted_document_runs_by_its_id_over_post_and_get(
    trusted_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given Alice's completed payment
    payment = (await alices_payment(http, trusted_server, "pm_card_visa"))["payment"]
    # when she reads its status by the document's id, by POST
    posted = await by_id(http, trusted_server, PAYMENT_STATUS, id=payment["id"])
    # and by GET, with the bare hash (as an HTTP cache would see it)
    got = await http.get(
        f"{trusted_server.url}/graphql",
        params={
            "documentId": sha256(PAYMENT_STATUS),
            "variables": json.dumps({"id": payment["id"]}),
        },
        headers={**alice(trusted_server), "Accept": "*/*"},
    )
    # then both run the trusted document
    assert posted == {"data": {"paymentStatus": "COMPLETED"}}
    assert got.status_code == 200, got.text
    assert got.json() == {"data": {"paymentStatus": "COMPLETED"}}


async def test_apollos_persisted_query_extension_names_a_trusted_document(
    trusted_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given Alice's completed payment
    payment = (await alices_payment(http, trusted_server, "pm_card_visa"))["payment"]
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256(PAYMENT_STATUS)}}
    # when Apollo Client sends only the hash, by POST and by GET (useGETForHashedQueries)
    posted = await post(
        http, trusted_server, {"extensions": extensions, "variables": {"id": payment["id"]}}
    )
    got = await http.get(
        f"{trusted_server.url}/graphql",
        params={
            "operationName": "TrustedPaymentStatus",
            "extensions": json.dumps(extensions),
            "variables": json.dumps({"id": payment["id"]}),
        },
        headers=alice(trusted_server),
    )
    # then the trusted document runs
    assert posted == {"data": {"paymentStatus": "COMPLETED"}}
    assert got.json() == {"data": {"paymentStatus": "COMPLETED"}}


async def test_an_unknown_or_malformed_document_id_is_refused_clearly(
    trusted_server: LiveServer, http: httpx.AsyncClient
) -> None:
    unknown = sha256(UNTRUSTED)
    # when a client names a document the manifest does not have
    by_document_id = await post(http, trusted_server, {"documentId": f"sha256:{unknown}"})
    by_apollo = await post(
        http,
        trusted_server,
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": unknown}}},
    )
    # or an id that is not a sha256 at all
    malformed = await post(http, trusted_server, {"documentId": "md5:0123"})
    # then each is refused, with nothing run: in words, and Apollo's in Apollo's own
    assert code_of(by_document_id) == "UNKNOWN_DOCUMENT_ID"
    assert by_document_id["errors"][0]["message"].startswith(
        f"unknown document id sha256:{unknown}"
    )
    assert code_of(by_apollo) == "PERSISTED_QUERY_NOT_FOUND"
    assert by_apollo["errors"][0]["message"] == "PersistedQueryNotFound"
    assert code_of(malformed) == "INVALID_DOCUMENT_ID"
    assert "sha256:" in malformed["errors"][0]["message"]


async def test_a_query_sent_with_an_id_that_is_not_its_hash_is_refused(
    trusted_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given Alice's order, waiting to be paid
    order = await by_id(
        http, trusted_server, CREATE_ORDER, input={"lines": [{"sku": "MUG-WHT", "quantity": 1}]}
    )
    order_id = order["data"]["createOrder"]["order"]["id"]
    pay = {"input": {"orderId": order_id, "paymentMethod": "CREDIT_CARD", "token": "pm_card_visa"}}
    # when a mutation is sent with a trusted query's id, both ways
    documented = await post(
        http,
        trusted_server,
        {"query": PROCESS_PAYMENT, "variables": pay, "documentId": sha256(PAYMENT_STATUS)},
    )
    apollo = await post(
        http,
        trusted_server,
        {
            "query": PROCESS_PAYMENT + " ",
            "variables": pay,
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(PROCESS_PAYMENT)}},
        },
    )
    # then both are refused, saying why, and nothing was paid
    assert code_of(documented) == "DOCUMENT_ID_MISMATCH"
    assert code_of(apollo) == "DOCUMENT_ID_MISMATCH"
    assert "does not match its document id" in documented["errors"][0]["message"]
    status = await by_id(http, trusted_server, ORDER_HISTORY, n=1)
    assert status["data"]["orders"]["items"][0] == {"id": order_id, "payments": []}


async def test_apollos_retry_runs_its_query_without_registering_it(
    trusted_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given Alice's payment, and a query the manifest does not have
    payment = (await alices_payment(http, trusted_server, "pm_card_visa"))["payment"]
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256(UNTRUSTED)}}
    variables = {"id": payment["id"]}
    # when Apollo Client, told PersistedQueryNotFound, sends the query with its hash
    retry = await post(
        http, trusted_server, {"query": UNTRUSTED, "extensions": extensions, "variables": variables}
    )
    # then it runs, as any free query would
    assert retry == {"data": {"paymentStatus": "COMPLETED"}}
    # and it was not registered: the hash alone is still not found
    again = await post(http, trusted_server, {"extensions": extensions, "variables": variables})
    assert code_of(again) == "PERSISTED_QUERY_NOT_FOUND"


async def order_count(http: httpx.AsyncClient, server: LiveServer) -> int:
    history = await by_id(http, server, ORDER_HISTORY, n=40)  # fewer here; within the cost
    return len(history["data"]["orders"]["items"])


async def test_a_trusted_mutation_is_refused_over_get(
    trusted_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given the orders there are
    before = await order_count(http, trusted_server)
    # when a mutation is sent by its id over GET
    response = await http.get(
        f"{trusted_server.url}/graphql",
        params={
            "documentId": f"sha256:{sha256(CREATE_ORDER)}",
            "variables": json.dumps({"input": {"lines": [{"sku": "MUG-WHT", "quantity": 1}]}}),
        },
        headers={**alice(trusted_server), "Accept": "application/json"},
    )
    # then it is refused as any mutation over GET is (405, POST allowed), and no order
    # was made
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "mutations are not allowed when using GET" in response.text
    assert await order_count(http, trusted_server) == before


async def test_a_trusted_document_still_needs_a_token(
    trusted_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # when a caller without a token names a trusted document, and an unknown one
    for document in (PAYMENT_STATUS, UNTRUSTED):
        response = await http.post(
            f"{trusted_server.url}/graphql", json={"documentId": f"sha256:{sha256(document)}"}
        )
        # then it is refused for the missing token, before its id is even looked up
        assert response.status_code == 401
        assert code_of(response.json()) == "UNAUTHENTICATED"


async def test_a_trusted_documents_variables_still_meet_every_guard(
    trusted_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given Alice's order
    order = await by_id(
        http, trusted_server, CREATE_ORDER, input={"lines": [{"sku": "MUG-WHT", "quantity": 1}]}
    )
    order_id = order["data"]["createOrder"]["order"]["id"]
    # when she pays it by a trusted mutation with a card number for a token
    card = await by_id(
        http,
        trusted_server,
        PROCESS_PAYMENT,
        input={"orderId": order_id, "paymentMethod": "CREDIT_CARD", "token": "4242424242424242"},
    )
    # then the card number is refused as it would be in any query
    assert card["data"]["processPayment"]["errors"][0]["code"] == "CARD_DATA_REJECTED"
    # when a trusted query's variables make it cost more than the limit (5000 here)
    expensive = await by_id(http, trusted_server, ORDER_HISTORY, n=100)
    cheap = await by_id(http, trusted_server, ORDER_HISTORY, n=2)
    # then it is measured with them, and refused; with smaller ones it runs
    assert code_of(expensive) == "QUERY_TOO_COMPLEX"
    assert expensive["errors"][0]["extensions"]["cost"] > 5000
    assert cheap["data"]["orders"]["items"][0]["id"] == order_id


async def test_a_trusted_document_is_never_parsed_validated_or_measured_again(
    trusted_server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given Alice's payment
    payment = (await alices_payment(http, trusted_server, "pm_card_visa"))["payment"]

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a trusted document was parsed, validated or measured again")

    # when every parse, every validation and every document measurement fails
    monkeypatch.setattr(graphql.language.parser.Parser, "parse_document", forbidden)
    monkeypatch.setattr(strawberry.schema.schema, "validate", forbidden)
    monkeypatch.setattr(DocumentLimits, "check", forbidden)
    # then the trusted document (never seen as a query) still runs by its id, each time
    for _ in range(3):
        read = await by_id(http, trusted_server, PAYMENT_READ, id=payment["id"])
        assert read == {
            "data": {
                "payment": {
                    "id": payment["id"],
                    "status": "COMPLETED",
                    "amount": "12.99",
                    "currency": "USD",
                }
            }
        }
    # while a query the server has not seen fails, as the patches mean it to
    fresh = await post(
        http, trusted_server, {"query": PAYMENT_READ + " # new", "variables": {"id": payment["id"]}}
    )
    assert fresh["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


# -- trusted documents only ---------------------------------------------------------------


async def test_only_trusted_documents_refuses_free_queries_over_http(
    only_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given Alice's payment, made by trusted documents
    payment = (await alices_payment(http, only_server, "pm_card_visa"))["payment"]
    variables = {"id": payment["id"]}
    # when she sends a free query, also one with its own hash (Apollo's retry)
    free = await post(http, only_server, {"query": UNTRUSTED, "variables": variables})
    hashed = await post(
        http,
        only_server,
        {
            "query": UNTRUSTED,
            "variables": variables,
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(UNTRUSTED)}},
        },
    )
    # then both are refused, saying what to send instead
    assert code_of(free) == "TRUSTED_DOCUMENTS_ONLY"
    assert "documentId" in free["errors"][0]["message"]
    assert code_of(hashed) == "TRUSTED_DOCUMENTS_ONLY"
    # while a trusted document runs, by its id or by its text with its id
    assert await by_id(http, only_server, PAYMENT_STATUS, **variables) == {
        "data": {"paymentStatus": "COMPLETED"}
    }
    both = {"query": PAYMENT_STATUS, "documentId": sha256(PAYMENT_STATUS), "variables": variables}
    assert await post(http, only_server, both) == {"data": {"paymentStatus": "COMPLETED"}}


async def test_only_trusted_documents_over_the_websocket(
    only_server: LiveServer, http: httpx.AsyncClient
) -> None:
    # given Alice's payment waiting for 3-D Secure, made by trusted documents
    paid = await alices_payment(http, only_server, "pm_card_authenticationRequired")
    payment = paid["payment"]
    async with Subscription.connect(only_server.url, http, only_server.token("cus_alice")) as sub:
        await sub.ack()
        # when she subscribes with a free query
        await sub.subscribe(
            STATUS_CHANGED.replace("TrustedStatus", "Free"), paymentId=payment["id"]
        )
        # then it is refused
        assert await sub.refusal() == "TRUSTED_DOCUMENTS_ONLY"
        # when she subscribes by the trusted subscription's id
        await sub.ws.send_json(
            {
                "id": "trusted",
                "type": "subscribe",
                "payload": {
                    "documentId": f"sha256:{sha256(STATUS_CHANGED)}",
                    "variables": {"paymentId": payment["id"]},
                },
            }
        )
        # then she gets the payment's state, then its change when 3-D Secure passes
        assert (await sub.next())["paymentStatusChanged"]["status"] == "REQUIRES_ACTION"
        answer = await confirm(
            http, only_server, {"clientSecret": paid["clientSecret"], "authenticate": True}
        )
        assert answer.status_code == 200, answer.text
        assert (await sub.next())["paymentStatusChanged"] == {
            "status": "COMPLETED",
            "payment": {"id": payment["id"], "status": "COMPLETED"},
        }
        # and an unknown id is refused on the websocket as over HTTP
        await sub.ws.send_json(
            {"id": "unknown", "type": "subscribe", "payload": {"documentId": sha256(UNTRUSTED)}}
        )
        assert await sub.refusal() == "UNKNOWN_DOCUMENT_ID"
        # when a free query is sent under an id that is not a string
        await sub.ws.send_json(
            {"id": 7, "type": "subscribe", "payload": {"query": "query Free { __typename }"}}
        )
        # then nothing runs: the connection is closed as the protocol says (4400)
        with pytest.raises(WebSocketDisconnect) as closed:
            await sub.receive()
        assert closed.value.code == 4400


# -- start-up ----------------------------------------------------------------------------

VALID = "query Valid { products { sku } }"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "cannot read the manifest"),
        ("{not json", "is not JSON"),
        ([VALID], "must be a JSON object of sha256 hash"),
        ({sha256(VALID): 42}, f"the entry '{sha256(VALID)}' must map to the document's text"),
        ({sha256(VALID + " "): VALID}, "is not the sha256 of its document"),
        ({hashlib.sha1(VALID.encode()).hexdigest(): VALID}, "hashAlgorithm: 'sha256'"),
        ({f"sha1:{hashlib.sha1(VALID.encode()).hexdigest()}": VALID}, "that is a sha1 hash"),
        ({sha256("query {"): "query {"}, "does not parse: Syntax Error"),
        (
            {sha256("{ products { price { x } } }"): "{ products { price { x } } }"},
            "is not valid against the schema",
        ),
        (
            {
                sha256("query Deep { payment(id: 1) { cardDetails { brand } } }"): (
                    "query Deep { payment(id: 1) { cardDetails { brand } } }"
                )
            },
            "exceeds the document limits: its operation Deep: this operation is 3 fields deep",
        ),
    ],
)
def test_a_manifest_that_cannot_be_used_is_refused_at_start_up(
    tmp_path: Path, content: Any, said: str
) -> None:
    # given a manifest that is missing, malformed, or has an entry that fails
    path = tmp_path / "persisted-documents.json"
    if content is not None:
        write_manifest(path, content)
    settings = replace(
        base_settings(f"sqlite://{tmp_path / 'db.sqlite3'}"),
        trusted_documents=str(path),
        max_query_depth=2,
    )
    # when the server starts, then it refuses to, saying which entry and why
    with pytest.raises(SettingsError, match="PAYQL_TRUSTED_DOCUMENTS") as refused:
        with running_server(settings):
            pass
    assert said in str(refused.value)


def test_payql_serve_reports_a_bad_manifest_before_it_migrates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a manifest whose entry is not its document's hash
    path = write_manifest(tmp_path / "manifest.json", {sha256("x"): VALID})
    database_file = tmp_path / "payql.sqlite3"
    monkeypatch.setenv("PAYQL_TRUSTED_DOCUMENTS", path)
    monkeypatch.setenv("PAYQL_DATABASE_URL", f"sqlite://{database_file}")
    # when `payql serve` starts, then it stops with the entry named, having changed nothing
    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert f"payql: PAYQL_TRUSTED_DOCUMENTS ({path}): the entry '{sha256('x')}'" in error
    assert not database_file.exists()


def test_trusted_documents_settings_come_from_payql_variables(tmp_path: Path) -> None:
    manifest = str(tmp_path / "m.json")
    settings = Settings.from_env(
        {"PAYQL_TRUSTED_DOCUMENTS": manifest, "PAYQL_TRUSTED_DOCUMENTS_ONLY": "1"}
    )
    assert (settings.trusted_documents, settings.trusted_documents_only) == (manifest, True)
    assert not Settings.from_env({}).trusted_documents_only
    # only trusted documents, with no manifest to take them from, is refused
    with pytest.raises(SettingsError, match="PAYQL_TRUSTED_DOCUMENTS_ONLY needs"):
        Settings.from_env({"PAYQL_TRUSTED_DOCUMENTS_ONLY": "1"})
