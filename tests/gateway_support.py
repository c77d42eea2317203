"""Test support: what gateways send and do: Stripe-shaped events and webhooks signed
the Stripe way, the simulated gateway's confirm page, and the localstripe emulator."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import subprocess
import time
from decimal import Decimal
from typing import Any

import httpx
from servers import LiveServer, free_port

from models import money


def stripe_event(event_type: str, intent: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A Stripe-shaped event about a PaymentIntent, as a gateway would send it."""
    return {
        "id": f"evt_test_{secrets.token_hex(8)}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": {**intent, **changes}},
    }


async def post_webhook(
    http: httpx.AsyncClient,
    server: LiveServer,
    event: dict[str, Any],
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    signature: str | None = None,
) -> httpx.Response:
    """POST a webhook signed the Stripe way (t=…,v1=HMAC-SHA256 over "t.body")."""
    body = json.dumps(event).encode()
    t = int(time.time()) if timestamp is None else timestamp
    key = server.settings.simulated_webhook_secret if secret is None else secret
    digest = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json"}
    if signature != "":
        headers["Stripe-Signature"] = signature or f"t={t},v1={digest}"
    return await http.post(f"{server.url}/webhooks/simulated", content=body, headers=headers)


async def confirm(
    http: httpx.AsyncClient, server: LiveServer, body: dict[str, Any]
) -> httpx.Response:
    return await http.post(f"{server.url}/simulated/confirm", json=body)


async def approve_quietly(http: httpx.AsyncClient, server: LiveServer, client_secret: str) -> None:
    """The customer passes 3-D Secure at the gateway, and its webhook is lost."""
    response = await confirm(
        http, server, {"clientSecret": client_secret, "authenticate": True, "sendWebhook": False}
    )
    assert response.status_code == 200, response.text


def stripe_intent(payment: dict[str, Any], status: str = "succeeded") -> dict[str, Any]:
    """The payment's PaymentIntent as Stripe (or the simulated gateway) shapes it."""
    amount = money.to_minor(Decimal(payment["amount"]), payment["currency"])
    return {
        "id": payment["gatewayTransactionId"],
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": payment["currency"].lower(),
        "status": status,
        "metadata": {"payql_payment_id": payment["id"]},
        "last_payment_error": None,
        "latest_charge": None,
    }


STRIPE_KEY = "sk_test_payql"


STRIPE_WEBHOOK_SECRET = "whsec_payql_tests"


class Localstripe:
    """The localstripe emulator (PyPI), in a process of its own, stoppable mid-test."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Localstripe:
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--from-scratch"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/v1/customers", auth=(STRIPE_KEY, ""), timeout=1)
                return self
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def send_webhooks_to(self, url: str) -> None:
        response = httpx.post(
            f"{self.url}/_config/webhooks/payql",
            data={"url": url, "secret": STRIPE_WEBHOOK_SECRET},
        )
        response.raise_for_status()
