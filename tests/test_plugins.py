"""Gateway plug-ins: a package installed beside payql adds a gateway by entry point.

The example plug-in (tests/plugins/payql-acme, the one gateways/README.md documents)
is installed with pip into a throwaway folder, and `payql serve` runs with that folder
on its path, as it would run with the package installed.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from clients import Client
from conftest import pay, place_order
from servers import free_port, payql_serve

from resolvers.auth import mint_token

PLUGIN = Path(__file__).resolve().parent / "plugins" / "payql-acme"
API_KEY = "acme_key_test"
WEBHOOK_SECRET = "acme_whsec_test"
# Acme, listed and set up.
ACME = {
    "PAYQL_GATEWAYS": "acme",
    "PAYQL_GATEWAY_ACME_API_KEY": API_KEY,
    "PAYQL_GATEWAY_ACME_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example plug-in, installed by pip (offline) into a folder of its own, with
    a second, broken plug-in beside it whose module cannot be imported."""
    work = tmp_path_factory.mktemp("plugins")
    source = work / "source"
    shutil.copytree(PLUGIN, source)  # pip builds in place: not in the repository
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    broken = target / "payql_broken-0.1.0.dist-info"
    broken.mkdir()
    (broken / "METADATA").write_text("Metadata-Version: 2.1\nName: payql-broken\nVersion: 0.1.0\n")
    (broken / "entry_points.txt").write_text("[payql.gateways]\nbroken = payql_broken:Gateway\n")
    (target / "payql_broken.py").write_text("import a_module_nobody_installed\n")
    yield target


def serve_env(tmp_path: Path, site: Path, **settings: str) -> dict[str, str]:
    return {
        "PAYQL_DATABASE_URL": f"sqlite://{tmp_path / 'plugins.sqlite3'}",
        "PAYQL_JWT_SECRET": "plug-in tests " + "x" * 32,
        "PYTHONPATH": str(site),
        **settings,
    }


def people(base: str, http: httpx.AsyncClient, env: dict[str, str]) -> tuple[Client, Client]:
    secret = env["PAYQL_JWT_SECRET"]
    alice = Client(base, mint_token(secret, sub="cus_alice", email="alice@example.com"), http)
    admin = Client(base, mint_token(secret, sub="admin", role="admin"), http)
    return alice, admin


async def acme_webhook(
    http: httpx.AsyncClient, base: str, body: dict[str, Any], secret: str = WEBHOOK_SECRET
) -> httpx.Response:
    from payql_acme import sign  # the plug-in's own signing, as Acme would sign

    raw = json.dumps(body).encode()
    return await http.post(
        f"{base}/webhooks/acme",
        content=raw,
        headers={"Content-Type": "application/json", "Acme-Signature": sign(raw, secret)},
    )


REFUND = """mutation ($input: RefundPaymentInput!) {
  refundPayment(input: $input) { payment { status refundedAmount } errors { code message } }
}"""
STATUS = "query ($id: ID!) { payment(id: $id) { status gatewayTransactionId } }"


async def test_an_installed_plug_in_takes_payments_refunds_and_webhooks(
    installed: Path, tmp_path: Path, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(installed))
    env = serve_env(tmp_path, installed, **ACME)
    with payql_serve(env, free_port()) as base:
        alice, admin = people(base, http, env)
        # when Alice pays through Acme
        paid = await pay(alice, (await place_order(alice))["id"], gateway="acme", token="acme_ok")
        # then it is paid there, and can be refunded in part
        assert paid["errors"] == [] and paid["payment"]["status"] == "COMPLETED"
        refunded = await admin(REFUND, input={"paymentId": paid["payment"]["id"], "amount": "1"})
        assert refunded["refundPayment"]["errors"] == []
        assert refunded["refundPayment"]["payment"]["status"] == "PARTIALLY_REFUNDED"
        # and a slow charge is settled by Acme's signed webhook, once
        slow = await pay(alice, (await place_order(alice))["id"], gateway="acme", token="acme_slow")
        payment_id = slow["payment"]["id"]
        assert slow["payment"]["status"] == "PROCESSING"
        charge_id = (await alice(STATUS, id=payment_id))["payment"]["gatewayTransactionId"]
        event = {
            "id": f"acme_evt_{secrets.token_hex(4)}",
            "type": "charge.succeeded",
            "charge": {
                "id": charge_id,
                "reference": payment_id,
                "status": "succeeded",
                "amount_captured": 2500,
            },
        }
        assert (await acme_webhook(http, base, event)).json()["outcome"] == "applied"
        assert (await acme_webhook(http, base, event)).json()["outcome"] == "duplicate"
        assert (await alice(STATUS, id=payment_id))["payment"]["status"] == "COMPLETED"
        # and a forged or unreadable one is refused
        forged = await acme_webhook(http, base, event, secret="not acme's")
        assert forged.status_code == 400
        raw = b"not json"
        from payql_acme import sign

        unreadable = await http.post(
            f"{base}/webhooks/acme",
            content=raw,
            headers={"Acme-Signature": sign(raw, WEBHOOK_SECRET)},
        )
        assert unreadable.status_code == 400
        # and a declined card is a FAILED payment, as with any gateway
        declined = await pay(
            alice, (await place_order(alice))["id"], gateway="acme", token="acme_decline"
        )
        assert declined["payment"]["status"] == "FAILED"
        assert declined["payment"]["failureCode"] == "card_declined"


async def test_a_plug_in_that_fails_to_load_is_named_and_the_others_still_work(
    installed: Path, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    # given three plug-ins listed: Acme without its API key, one whose module cannot
    # be imported, and one no package provides
    env = serve_env(
        tmp_path,
        installed,
        PAYQL_GATEWAYS="acme,broken,nosuch",
        PAYQL_GATEWAY_ACME_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    log = tmp_path / "payql.log"
    with payql_serve(env, free_port(), log=log) as base:
        alice, _ = people(base, http, env)
        # then payql is up, and the built-in gateways work
        ok = await pay(alice, (await place_order(alice))["id"], token="pm_card_visa")
        assert ok["payment"]["status"] == "COMPLETED"
        # and a payment through each broken one says what is wrong, naming the setting
        answers = {}
        for name in ("acme", "broken", "nosuch"):
            refused = await pay(
                alice, (await place_order(alice))["id"], gateway=name, token="acme_ok"
            )
            assert refused["payment"] is None
            [error] = refused["errors"]
            assert error["code"] == "GATEWAY_UNAVAILABLE"
            answers[name] = error["message"]
        assert "PAYQL_GATEWAY_ACME_API_KEY" in answers["acme"]
        assert "broken gateway could not be loaded" in answers["broken"]
        assert "a_module_nobody_installed" not in answers["broken"]  # internals: log only
        assert answers["nosuch"] == "the nosuch gateway is not installed"
        # and its webhooks are answered 503, so that the gateway retries once it is
        # fixed, telling whoever posts nothing more
        webhook = await http.post(f"{base}/webhooks/acme", content=b"{}")
        assert webhook.status_code == 503
        assert webhook.json() == {"error": "gateway unavailable; retry later"}
    # and the log said so at start-up, for each
    text = log.read_text()
    for expected in (
        "the acme gateway is not set up: an Acme API key",
        "is required (set PAYQL_GATEWAY_ACME_API_KEY)",
        "(PAYQL_GATEWAYS lists it)",
        "the broken gateway could not be loaded: check its package and its "
        "PAYQL_GATEWAY_BROKEN_* settings",
        "a_module_nobody_installed",
        "'nosuch'",
    ):
        assert expected in text, expected


async def test_options_go_by_exact_name_and_a_broken_card_gateway_is_not_ready(
    installed: Path, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    # given Acme as the card gateway, set up, beside another gateway's variables that
    # share its prefix, and a misspelt option
    env = serve_env(
        tmp_path,
        installed,
        **ACME,
        PAYQL_CARD_GATEWAY="acme",
        PAYQL_GATEWAY_ACME_EU_API_KEY="acme_key_of_another_gateway",
        PAYQL_GATEWAY_ACME_WEBHOOK_SECERT="typo",
    )
    log = tmp_path / "ok.log"
    with payql_serve(env, free_port(), log=log) as base:
        alice, _ = people(base, http, env)
        # then Acme loads with its own two options only, and takes card payments
        paid = await pay(alice, (await place_order(alice))["id"], token="acme_ok")
        assert paid["payment"]["status"] == "COMPLETED"
        assert (await http.get(f"{base}/readyz")).status_code == 200
    assert "PAYQL_GATEWAY_ACME_WEBHOOK_SECERT is not an option of the acme gateway" in (
        log.read_text()
    )
    # and when its key is missing, payql starts but says it is not ready
    del env["PAYQL_GATEWAY_ACME_API_KEY"]
    with payql_serve(env, free_port()) as base:
        ready = await http.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert ready.json()["card_gateway"] == "unavailable"


async def test_a_refund_through_a_gateway_that_stopped_working_reserves_nothing(
    installed: Path, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    env = serve_env(tmp_path, installed, **ACME)
    # given a payment made through Acme
    with payql_serve(env, free_port()) as base:
        alice, _ = people(base, http, env)
        paid = await pay(alice, (await place_order(alice))["id"], gateway="acme", token="acme_ok")
        payment_id = paid["payment"]["id"]
    # when payql restarts with Acme broken, and an admin refunds
    del env["PAYQL_GATEWAY_ACME_API_KEY"]
    with payql_serve(env, free_port()) as base:
        _, admin = people(base, http, env)
        answer = await admin(REFUND, input={"paymentId": payment_id, "amount": "1"})
        # then the refund is refused, and nothing is left pending to be sent later
        assert [e["code"] for e in answer["refundPayment"]["errors"]] == ["GATEWAY_UNAVAILABLE"]
        after = await admin(
            "query ($id: ID!) { payment(id: $id) { refundableAmount refunds { id } } }",
            id=payment_id,
        )
    assert after["payment"]["refunds"] == []
    assert after["payment"]["refundableAmount"] == paid["payment"]["amount"]
