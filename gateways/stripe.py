"""Stripe, through the official SDK's async client (`StripeClient`, `*_async` calls).

Amounts go in minor units, our ids in `metadata`, our idempotency key as Stripe's.
Stripe's errors become ours: a card error is a FAILED charge with Stripe's decline
code; a connection error, a rate limit or a 5xx is GatewayUnavailable (the outcome
is unknown: the payment stays resolvable by syncPayment, and the retry reuses the
idempotency key, so nothing is charged twice); a bad key is a GatewayError and an
alert in the log, never the key itself.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import stripe

from gateways.base import (
    Card,
    ChargeRequest,
    ChargeState,
    GatewayError,
    GatewayEvent,
    GatewayStatus,
    GatewayUnavailable,
    RefundState,
)
from gateways.signing import InvalidSignature
from gateways.stripe_shapes import charge_state, gateway_event, refund_outcome, refund_report

log = logging.getLogger("payql.gateways.stripe")

TOKEN = re.compile(r"^(pm|tok)_[A-Za-z0-9_]{1,200}$")
# How far back `find` looks for a charge whose answer was lost.
FIND_WINDOW_SECONDS = 24 * 3600


class StripeGateway:
    name = "stripe"
    methods = frozenset({"CREDIT_CARD", "DEBIT_CARD", "APPLE_PAY", "GOOGLE_PAY"})

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str = "",
        api_base: str | None = None,
        timeout: float = 30,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else {},
            max_network_retries=2,
            http_client=stripe.HTTPXClient(timeout=timeout, allow_sync_methods=False),
        )

    def accepts_token(self, method: str, token: str | None) -> str | None:
        if token is not None and not TOKEN.match(token):
            return "a Stripe token looks like pm_… or tok_…"
        return None

    async def charge(self, request: ChargeRequest) -> ChargeState:
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "capture_method": "manual" if request.manual_capture else "automatic",
            "metadata": dict(request.metadata),
            "payment_method_types": ["card"],
        }
        if request.token is not None:
            params["confirm"] = True
            if request.token.startswith("tok_"):
                params["payment_method_data"] = {"type": "card", "card": {"token": request.token}}
            else:
                params["payment_method"] = request.token
        try:
            intent = await self.client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as exc:
            return self._declined(exc)
        except stripe.StripeError as exc:
            raise self._translate(exc) from None
        return await self._state(intent.to_dict())

    async def capture(self, transaction_id: str, amount: int, idempotency_key: str) -> ChargeState:
        try:
            intent = await self.client.v1.payment_intents.capture_async(
                transaction_id,
                params={"amount_to_capture": amount},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._translate(exc) from None
        data = intent.to_dict()
        state = await self._state(data)
        if state.status is GatewayStatus.SUCCEEDED and data.get("amount_received") is None:
            state = replace(state, amount_captured=amount)  # an emulator without the field
        return state

    async def cancel(self, transaction_id: str, idempotency_key: str) -> ChargeState:
        try:
            intent = await self.client.v1.payment_intents.cancel_async(
                transaction_id, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise self._translate(exc) from None
        return await self._state(intent.to_dict())

    async def refund(self, transaction_id: str, amount: int, idempotency_key: str) -> RefundState:
        reference = idempotency_key.removeprefix("payql-")
        try:
            refund = await self.client.v1.refunds.create_async(
                params={
                    "payment_intent": transaction_id,
                    "amount": amount,
                    "metadata": {"payql_refund_id": reference},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._translate(exc) from None
        data = refund.to_dict()
        return RefundState(
            refund_id=str(data["id"]),
            status=refund_outcome(data.get("status")),
            failure_reason=data.get("failure_reason"),
        )

    async def retrieve(self, transaction_id: str) -> ChargeState | None:
        try:
            intent = await self.client.v1.payment_intents.retrieve_async(
                transaction_id, params={"expand": ["latest_charge"]}
            )
        except stripe.StripeError as exc:
            raise self._translate(exc) from None
        return await self._with_refunds(await self._state(intent.to_dict()))

    async def _with_refunds(self, state: ChargeState) -> ChargeState:
        """The PaymentIntent's refunds, listed: Stripe's charges no longer embed them."""
        try:
            page = await self.client.v1.refunds.list_async(
                params={"payment_intent": state.transaction_id, "limit": 100}
            )
            refunds = [refund_report(r.to_dict()) async for r in page.auto_paging_iter()]
        except stripe.StripeError as exc:
            raise self._translate(exc) from None
        return replace(state, refunds=tuple(refunds))

    async def find(self, reference: str) -> ChargeState | None:
        """Our payment's PaymentIntent, among those created in the last day.

        Listing, not Stripe's search: search is eventually consistent (it can miss a
        PaymentIntent made seconds ago), which is exactly when this is needed."""
        since = int(time.time()) - FIND_WINDOW_SECONDS
        try:
            page = await self.client.v1.payment_intents.list_async(params={"limit": 100})
            async for intent in page.auto_paging_iter():  # newest first
                data = intent.to_dict()
                if int(data.get("created") or 0) < since:
                    break
                if (data.get("metadata") or {}).get("payql_payment_id") == reference:
                    return await self._with_refunds(await self._state(data))
        except stripe.StripeError as exc:
            raise self._translate(exc) from None
        return None

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        signature = headers.get("stripe-signature")
        if not self.webhook_secret:
            raise InvalidSignature("PAYQL_STRIPE_WEBHOOK_SECRET is not set: no webhook is trusted")
        if not signature:
            raise InvalidSignature("no Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(payload, signature, self.webhook_secret)
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature(str(exc.user_message or exc)) from None
        except ValueError as exc:
            raise InvalidSignature(f"the body is not a Stripe event: {exc}") from None
        return gateway_event(event.to_dict())

    # -- helpers -----------------------------------------------------------------

    async def _state(self, intent: dict[str, Any]) -> ChargeState:
        state = charge_state(intent)
        if state.card is None and isinstance(intent.get("payment_method"), str):
            card = await self._card(intent["payment_method"])
            if card is not None:
                state = replace(state, card=card)
        return state

    async def _card(self, payment_method: str) -> Card | None:
        """Brand, last four and expiry from the PaymentMethod, when the charge lacks them."""
        try:
            method = (await self.client.v1.payment_methods.retrieve_async(payment_method)).to_dict()
        except stripe.StripeError:
            return None
        card = method.get("card") or {}
        if not card.get("last4"):
            return None
        return Card(
            brand=str(card.get("brand") or "unknown"),
            last4=str(card["last4"]),
            exp_month=int(card.get("exp_month") or 0),
            exp_year=int(card.get("exp_year") or 0),
        )

    def _declined(self, exc: stripe.CardError) -> ChargeState:
        error = exc.error
        intent = getattr(error, "payment_intent", None) if error else None
        transaction_id = ""
        if intent is not None:
            transaction_id = str(intent.get("id") if isinstance(intent, dict) else intent.id)
        decline = getattr(error, "decline_code", None) if error else None
        return ChargeState(
            transaction_id=transaction_id,
            status=GatewayStatus.FAILED,
            failure_code=decline or exc.code or "card_declined",
            failure_message=exc.user_message or "Your card was declined.",
        )

    def _translate(self, exc: stripe.StripeError) -> GatewayError:
        if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            log.error(
                "ALERT: Stripe refused our API key (%s): check PAYQL_STRIPE_SECRET_KEY",
                type(exc).__name__,
            )
            return GatewayError("the Stripe account refused the request (configuration)")
        if isinstance(
            exc,
            stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError,
        ):
            return GatewayUnavailable(f"Stripe did not answer: {type(exc).__name__}")
        if isinstance(exc, stripe.IdempotencyError):
            # The same key while its first request is still running: its outcome is unknown.
            return GatewayUnavailable("Stripe is still working on this request")
        if exc.http_status is not None and exc.http_status >= 500:
            return GatewayUnavailable(f"Stripe failed ({exc.http_status})")
        return GatewayError(str(exc.user_message or exc))
