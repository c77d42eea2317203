"""A gateway that behaves like Stripe in test mode, with no keys and no network.

It answers Stripe's test payment methods the way Stripe does (pm_card_visa succeeds,
pm_card_chargeDeclined is declined, pm_card_authenticationRequired asks for 3-D
Secure, …), honours idempotency keys, and refuses what Stripe refuses (capturing
more than authorized, refunding more than captured).

Its intents live in this process's memory: enough for development, tests and
benchmarks, lost on restart.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import dataclass, field

from gateways.base import (
    Card,
    ChargeRequest,
    ChargeState,
    GatewayError,
    GatewayStatus,
    RefundOutcome,
    RefundState,
)

S = GatewayStatus
CARD_METHODS = frozenset({"CREDIT_CARD", "DEBIT_CARD", "APPLE_PAY", "GOOGLE_PAY"})


@dataclass(frozen=True)
class TestCard:
    card: Card
    outcome: S  # SUCCEEDED, FAILED or REQUIRES_ACTION
    decline_code: str | None = None
    message: str | None = None


def _card(brand: str, last4: str) -> Card:
    return Card(brand=brand, last4=last4, exp_month=12, exp_year=2034)


_DECLINED = "Your card was declined."
TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard(_card("visa", "4242"), S.SUCCEEDED),
    "tok_visa": TestCard(_card("visa", "4242"), S.SUCCEEDED),
    "pm_card_mastercard": TestCard(_card("mastercard", "4444"), S.SUCCEEDED),
    "tok_mastercard": TestCard(_card("mastercard", "4444"), S.SUCCEEDED),
    "pm_card_amex": TestCard(_card("amex", "8431"), S.SUCCEEDED),
    "tok_amex": TestCard(_card("amex", "8431"), S.SUCCEEDED),
    "pm_card_visa_debit": TestCard(_card("visa", "5556"), S.SUCCEEDED),
    "tok_visa_debit": TestCard(_card("visa", "5556"), S.SUCCEEDED),
    "pm_card_chargeDeclined": TestCard(_card("visa", "0002"), S.FAILED, "card_declined", _DECLINED),
    "tok_chargeDeclined": TestCard(_card("visa", "0002"), S.FAILED, "card_declined", _DECLINED),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        _card("visa", "9995"), S.FAILED, "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard(
        _card("visa", "0069"), S.FAILED, "expired_card", "Your card has expired."
    ),
    "pm_card_authenticationRequired": TestCard(_card("visa", "3155"), S.REQUIRES_ACTION),
    "pm_card_threeDSecure2Required": TestCard(_card("visa", "3220"), S.REQUIRES_ACTION),
}


@dataclass
class _Intent:
    id: str
    amount: int
    currency: str
    manual_capture: bool
    client_secret: str
    status: S
    amount_captured: int = 0
    amount_refunded: int = 0
    card: Card | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    refunds: list[str] = field(default_factory=list)

    def state(self) -> ChargeState:
        secret_visible = self.status in (S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_ACTION)
        return ChargeState(
            transaction_id=self.id,
            status=self.status,
            amount_captured=self.amount_captured,
            client_secret=self.client_secret if secret_visible else None,
            failure_code=self.failure_code,
            failure_message=self.failure_message,
            card=self.card,
        )


class SimulatedGateway:
    name = "simulated"
    methods = CARD_METHODS | {"PAYPAL"}

    def __init__(self, latency_ms: int = 0) -> None:
        self.latency = latency_ms / 1000
        self.intents: dict[str, _Intent] = {}
        self.calls: Counter[str] = Counter()  # operation -> count, for tests and benchmarks
        self._replies: dict[str, ChargeState | RefundState] = {}  # idempotency key -> reply

    def accepts_token(self, method: str, token: str | None) -> str | None:
        if token is None:
            return None
        if method == "PAYPAL":
            return "PayPal payments take no card token: leave it out and confirm on the client"
        if token not in TEST_CARDS:
            return f"unknown payment method token {token!r}: use a Stripe test token"
        return None

    async def charge(self, request: ChargeRequest) -> ChargeState:
        self.calls["charge"] += 1  # every request, replays included
        self.calls[f"charge:{request.reference}"] += 1
        await self._travel()
        reply = self._replies.get(request.idempotency_key)
        if isinstance(reply, ChargeState):
            return reply
        intent_id = f"pi_sim_{secrets.token_hex(12)}"
        intent = _Intent(
            id=intent_id,
            amount=request.amount,
            currency=request.currency,
            manual_capture=request.manual_capture,
            client_secret=f"{intent_id}_secret_{secrets.token_hex(12)}",
            status=S.REQUIRES_PAYMENT_METHOD,
        )
        self.intents[intent_id] = intent
        if request.token is not None:
            self._confirm(intent, TEST_CARDS[request.token])
        state = intent.state()
        self._replies[request.idempotency_key] = state
        return state

    def _confirm(self, intent: _Intent, test_card: TestCard) -> None:
        intent.card = test_card.card
        if test_card.outcome is S.FAILED:
            intent.status = S.FAILED
            intent.failure_code = test_card.decline_code
            intent.failure_message = test_card.message
        elif test_card.outcome is S.REQUIRES_ACTION:
            intent.status = S.REQUIRES_ACTION
        elif intent.manual_capture:
            intent.status = S.REQUIRES_CAPTURE
        else:
            intent.status = S.SUCCEEDED
            intent.amount_captured = intent.amount

    async def capture(self, transaction_id: str, amount: int, idempotency_key: str) -> ChargeState:
        await self._travel()
        reply = self._replies.get(idempotency_key)
        if isinstance(reply, ChargeState):
            return reply
        self.calls["capture"] += 1
        intent = self._intent(transaction_id)
        if intent.status is not S.REQUIRES_CAPTURE:
            raise GatewayError(
                f"payment intent {intent.id} is {intent.status.value}, not capturable"
            )
        if amount > intent.amount:
            raise GatewayError("cannot capture more than was authorized")
        intent.status = S.SUCCEEDED
        intent.amount_captured = amount
        state = intent.state()
        self._replies[idempotency_key] = state
        return state

    async def cancel(self, transaction_id: str, idempotency_key: str) -> ChargeState:
        await self._travel()
        self.calls["cancel"] += 1
        intent = self._intent(transaction_id)
        if intent.status in (S.SUCCEEDED, S.FAILED):
            raise GatewayError(f"payment intent {intent.id} is {intent.status.value}")
        intent.status = S.CANCELED
        return intent.state()

    async def refund(self, transaction_id: str, amount: int, idempotency_key: str) -> RefundState:
        await self._travel()
        reply = self._replies.get(idempotency_key)
        if isinstance(reply, RefundState):
            return reply
        self.calls["refund"] += 1
        intent = self._intent(transaction_id)
        if intent.status is not S.SUCCEEDED:
            raise GatewayError(f"payment intent {intent.id} has no captured charge to refund")
        if amount > intent.amount_captured - intent.amount_refunded:
            raise GatewayError("the refund exceeds the charge's unrefunded amount")
        intent.amount_refunded += amount
        refund = RefundState(f"re_sim_{secrets.token_hex(12)}", RefundOutcome.SUCCEEDED)
        intent.refunds.append(refund.refund_id)
        self._replies[idempotency_key] = refund
        return refund

    async def retrieve(self, transaction_id: str) -> ChargeState | None:
        await self._travel()
        self.calls["retrieve"] += 1
        return self._intent(transaction_id).state()

    def _intent(self, transaction_id: str) -> _Intent:
        try:
            return self.intents[transaction_id]
        except KeyError:
            raise GatewayError(f"no such payment intent: {transaction_id}") from None

    async def _travel(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)


__all__ = ["TEST_CARDS", "SimulatedGateway"]
