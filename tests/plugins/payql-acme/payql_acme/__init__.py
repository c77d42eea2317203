"""Acme Pay: an example payql gateway plug-in.

Acme is an imaginary card processor. Its "API" lives in this process (a dict of
charges), so that the example needs no account and no network; a real plug-in makes
HTTP calls where this one touches `self._charges`, with the same shapes around them.

What it shows:
- options from the environment (PAYQL_GATEWAY_ACME_API_KEY, ..._WEBHOOK_SECRET), and
  GatewayConfigError naming the one that is wrong;
- every method of the interface (gateways/README.md), idempotent by the key payql
  gives each call;
- outcomes now or later: `acme_ok` succeeds at once, `acme_slow` stays processing
  until a webhook says how it ended, `acme_decline` is declined;
- webhooks verified over the raw body before anything is read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import replace

from gateways.base import (
    Card,
    ChargeRequest,
    ChargeState,
    GatewayConfigError,
    GatewayError,
    GatewayEvent,
    GatewayStatus,
    RefundOutcome,
    RefundReport,
    RefundState,
)
from gateways.signing import InvalidSignature

SIGNATURE_HEADER = "acme-signature"


def sign(payload: bytes, secret: str) -> str:
    """Acme's webhook signature: hex HMAC-SHA256 of the raw body with the secret."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


class AcmeGateway:
    name = "acme"
    methods = frozenset({"CREDIT_CARD", "DEBIT_CARD"})

    # Its options are its keyword parameters: payql passes PAYQL_GATEWAY_ACME_API_KEY
    # as api_key and PAYQL_GATEWAY_ACME_WEBHOOK_SECRET as webhook_secret.
    def __init__(self, api_key: str = "", webhook_secret: str = "") -> None:
        if not api_key.startswith("acme_key_"):
            raise GatewayConfigError("api_key", "an Acme API key (acme_key_…) is required")
        if not webhook_secret:
            raise GatewayConfigError("webhook_secret", "Acme's webhook signing secret is required")
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self._charges: dict[str, ChargeState] = {}  # Acme's side of things
        self._references: dict[str, str] = {}  # our payment id -> Acme's charge id
        self._replies: dict[str, ChargeState | RefundState] = {}  # idempotency keys

    def accepts_token(self, method: str, token: str | None) -> str | None:
        if not token or not token.startswith("acme_"):
            return "Acme takes tokens made by Acme.js (acme_…)"
        return None

    async def charge(self, request: ChargeRequest) -> ChargeState:
        if request.idempotency_key in self._replies:  # a retry: the first answer again
            return self._charge_reply(request.idempotency_key)
        charge_id = f"acme_ch_{secrets.token_hex(8)}"
        card = Card("visa", "4242", 12, 2034)
        if request.token == "acme_decline":
            state = ChargeState(
                charge_id,
                GatewayStatus.FAILED,
                failure_code="card_declined",
                failure_message="Acme declined the card.",
                card=card,
            )
        elif request.token == "acme_slow":
            state = ChargeState(charge_id, GatewayStatus.PROCESSING, card=card)
        elif request.manual_capture:
            state = ChargeState(charge_id, GatewayStatus.REQUIRES_CAPTURE, card=card)
        else:
            state = ChargeState(
                charge_id, GatewayStatus.SUCCEEDED, amount_captured=request.amount, card=card
            )
        self._charges[charge_id] = state
        self._references[request.reference] = charge_id
        self._replies[request.idempotency_key] = state
        return state

    async def capture(self, transaction_id: str, amount: int, idempotency_key: str) -> ChargeState:
        if idempotency_key in self._replies:
            return self._charge_reply(idempotency_key)
        state = self._charge(transaction_id)
        if state.status is not GatewayStatus.REQUIRES_CAPTURE:
            raise GatewayError(f"Acme cannot capture a charge that is {state.status.value}")
        state = replace(state, status=GatewayStatus.SUCCEEDED, amount_captured=amount)
        self._charges[transaction_id] = self._replies[idempotency_key] = state
        return state

    async def cancel(self, transaction_id: str, idempotency_key: str) -> ChargeState:
        if idempotency_key in self._replies:
            return self._charge_reply(idempotency_key)
        state = self._charge(transaction_id)
        if state.status is GatewayStatus.SUCCEEDED:
            raise GatewayError("Acme cannot cancel a completed charge: refund it instead")
        state = replace(state, status=GatewayStatus.CANCELED)
        self._charges[transaction_id] = self._replies[idempotency_key] = state
        return state

    async def refund(self, transaction_id: str, amount: int, idempotency_key: str) -> RefundState:
        reply = self._replies.get(idempotency_key)
        if isinstance(reply, RefundState):
            return reply
        state = self._charge(transaction_id)
        refunded = sum(r.amount for r in state.refunds if r.status is RefundOutcome.SUCCEEDED)
        if amount > state.amount_captured - refunded:
            raise GatewayError("Acme: the refund is more than what is left of the charge")
        # payql's key is "payql-<its refund id>": Acme keeps that id on the refund, so a
        # refund whose answer was lost is matched to payql's, never counted twice.
        refund = RefundReport(
            f"acme_re_{secrets.token_hex(8)}",
            amount,
            RefundOutcome.SUCCEEDED,
            reference=idempotency_key.removeprefix("payql-"),
        )
        self._charges[transaction_id] = replace(state, refunds=(*state.refunds, refund))
        answer = RefundState(refund.refund_id, RefundOutcome.SUCCEEDED)
        self._replies[idempotency_key] = answer
        return answer

    async def retrieve(self, transaction_id: str) -> ChargeState | None:
        return self._charges.get(transaction_id)

    async def find(self, reference: str) -> ChargeState | None:
        charge_id = self._references.get(reference)
        return self._charges.get(charge_id) if charge_id else None

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Acme posts {"id", "type", "charge": {"id", "reference", "status",
        "amount_captured", "failure_code", "failure_message"}}, signed in the
        Acme-Signature header. Verify first; only then read."""
        given = headers.get(SIGNATURE_HEADER, "")
        if not given or not hmac.compare_digest(given, sign(payload, self._webhook_secret)):
            raise InvalidSignature("the Acme-Signature does not match the body")
        body = json.loads(payload)
        charge = body["charge"]
        known = self._charges.get(charge["id"]) or ChargeState(
            charge["id"], GatewayStatus.PROCESSING
        )
        state = replace(  # what the event says; what it does not (card, refunds) stays
            known,
            status=GatewayStatus(charge["status"]),
            amount_captured=int(charge.get("amount_captured", 0)),
            failure_code=charge.get("failure_code"),
            failure_message=charge.get("failure_message"),
        )
        self._charges[state.transaction_id] = state  # Acme's own record moves on too
        return GatewayEvent(
            id=body["id"],
            type=body["type"],
            transaction_id=state.transaction_id,
            reference=charge.get("reference"),
            charge=state,
            payload=body,
        )

    def _charge(self, transaction_id: str) -> ChargeState:
        state = self._charges.get(transaction_id)
        if state is None:
            raise GatewayError(f"Acme has no charge {transaction_id}")
        return state

    def _charge_reply(self, key: str) -> ChargeState:
        reply = self._replies[key]
        assert isinstance(reply, ChargeState)
        return reply
