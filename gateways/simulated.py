"""A gateway that behaves like Stripe in test mode, with no keys and no network.

It answers Stripe's test payment methods the way Stripe does (pm_card_visa succeeds,
pm_card_chargeDeclined is declined, pm_card_authenticationRequired asks for 3-D
Secure, …), honours idempotency keys, and refuses what Stripe refuses (capturing
more than authorized, refunding more than captured). Its PaymentIntents have
Stripe's shape and are read back through the same code as Stripe's.

`confirm` stands in for Stripe.js's confirmCardPayment and the 3-D Secure page: it
changes only the gateway's own state and, like Stripe, reports the outcome as a
signed webhook (Stripe's event shape and signature scheme) to the service.

PAYPAL payments go PayPal's way: REQUIRES_ACTION with an approval page
(`redirect_url`, payql's /simulated/paypal), approved or cancelled there through
`confirm` (the webhook says "approved"), then completed by payql with `complete`.

Its intents live in tables of its own (gateways/simulated_store.py) in the service's
database, so they survive a restart and every worker sees them. For tests and
demos, `inject` scripts the next answer of an operation (a decline, an outage).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx
from tortoise.transactions import in_transaction

from gateways import signing
from gateways.base import (
    Card,
    ChargeRequest,
    ChargeState,
    GatewayError,
    GatewayEvent,
    GatewayStatus,
    GatewayUnavailable,
    RefundOutcome,
    RefundReport,
    RefundState,
)
from gateways.simulated_store import SimulatedIntent, SimulatedReply
from gateways.stripe_shapes import MalformedEvent, charge_state, gateway_event

log = logging.getLogger("payql.gateways.simulated")

S = GatewayStatus
CARD_METHODS = frozenset({"CREDIT_CARD", "DEBIT_CARD", "APPLE_PAY", "GOOGLE_PAY"})
AUTHENTICATION_FAILED = "payment_intent_authentication_failure"  # Stripe's code
# Seconds between webhook delivery attempts (Stripe retries for days; we try briefly).
RETRY_DELAYS = (0.1, 0.3, 1.0, 3.0, 10.0)


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


class ConfirmRefused(Exception):
    """A client-side confirmation the gateway will not take; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Intent:
    id: str
    reference: str
    amount: int
    currency: str
    manual_capture: bool
    client_secret: str
    metadata: dict[str, str]
    status: S = S.REQUIRES_PAYMENT_METHOD
    amount_captured: int = 0
    amount_refunded: int = 0
    card: Card | None = None
    charge_id: str | None = None
    error_code: str | None = None
    decline_code: str | None = None
    error_message: str | None = None
    refunds: list[dict[str, Any]] = field(default_factory=list)  # Stripe's refund objects
    method: str = "CARD"  # or PAYPAL: approved by the buyer, then completed by payql

    def to_stripe(self) -> dict[str, Any]:
        """This intent as Stripe's PaymentIntent object (latest_charge expanded)."""
        failed = self.status is S.FAILED
        status = "requires_payment_method" if failed else self.status.value
        charge = None
        if self.card is not None or self.charge_id is not None:
            details: dict[str, Any] = {"type": "paypal", "paypal": {}}
            if self.card is not None:
                details = {
                    "type": "card",
                    "card": {
                        "brand": self.card.brand,
                        "last4": self.card.last4,
                        "exp_month": self.card.exp_month,
                        "exp_year": self.card.exp_year,
                    },
                }
            charge = {
                "id": self.charge_id,
                "object": "charge",
                "amount": self.amount,
                "captured": self.amount_captured > 0,
                "amount_captured": self.amount_captured,
                "amount_refunded": self.amount_refunded,
                "refunds": {"object": "list", "data": list(self.refunds)},
                "payment_method_details": details,
            }
        error = None
        if failed:
            error = {
                "type": "card_error",
                "code": self.error_code,
                "decline_code": self.decline_code,
                "message": self.error_message,
            }
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": self.amount if self.status is S.REQUIRES_CAPTURE else 0,
            "amount_received": self.amount_captured,
            "currency": self.currency.lower(),
            "capture_method": "manual" if self.manual_capture else "automatic",
            "client_secret": self.client_secret,
            "status": status,
            "metadata": dict(self.metadata),
            "last_payment_error": error,
            "latest_charge": charge,
            "livemode": False,
        }

    def state(self) -> ChargeState:
        if self.status is S.APPROVED:  # PayPal's, not Stripe's: no Stripe status for it
            return charge_state(self.to_stripe(), S.APPROVED)
        state = charge_state(self.to_stripe())
        if self.method == "PAYPAL" and self.status is S.REQUIRES_ACTION:
            state = replace(state, redirect_url=f"{PAYPAL_PAGE}#{self.client_secret}")
        return state

    def to_row(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_row(cls, data: Mapping[str, Any]) -> _Intent:
        values = dict(data)
        values["status"] = S(values["status"])
        values["card"] = Card(**values["card"]) if values.get("card") else None
        return cls(**values)


Outcome = ChargeState | RefundState


def _reply_row(reply: Outcome) -> dict[str, Any]:
    data = asdict(reply)
    data["kind"] = "charge" if isinstance(reply, ChargeState) else "refund"
    data["status"] = reply.status.value
    for report in data.get("refunds", ()):
        report["status"] = report["status"].value
    return data


def _reply(data: Mapping[str, Any]) -> Outcome:
    values = dict(data)
    kind = values.pop("kind")
    if kind == "refund":
        values["status"] = RefundOutcome(values["status"])
        return RefundState(**values)
    values["status"] = S(values["status"])
    values["card"] = Card(**values["card"]) if values.get("card") else None
    values["refunds"] = tuple(
        RefundReport(**{**r, "status": RefundOutcome(r["status"])}) for r in values["refunds"]
    )
    return ChargeState(**values)


# The simulated PayPal approval page, served by payql; the client secret goes in the
# fragment, which never reaches a server or its log.
PAYPAL_PAGE = "/simulated/paypal"
# Its event for a buyer's approval (Stripe has none): the charge is APPROVED.
APPROVED_EVENT = "payment_intent.approved"

_EVENT_TYPES = {
    S.SUCCEEDED: "payment_intent.succeeded",
    S.FAILED: "payment_intent.payment_failed",
    S.REQUIRES_ACTION: "payment_intent.requires_action",
    S.PROCESSING: "payment_intent.processing",
    S.CANCELED: "payment_intent.canceled",
    S.REQUIRES_CAPTURE: "payment_intent.amount_capturable_updated",
    S.APPROVED: APPROVED_EVENT,
}


class SimulatedGateway:
    name = "simulated"
    methods = CARD_METHODS | {"PAYPAL"}

    def __init__(self, latency_ms: int = 0, webhook_secret: str = "") -> None:
        self.latency = latency_ms / 1000
        self.webhook_secret = webhook_secret
        self.calls: Counter[str] = Counter()  # operation -> count, for tests and benchmarks
        self._script: defaultdict[str, list[Outcome | Exception]] = defaultdict(list)
        self._lose: set[str] = set()
        self._deliveries: set[asyncio.Task[None]] = set()

    def inject(self, operation: str, outcome: Outcome | Exception) -> None:
        """Script the next `operation` (charge, capture, cancel, refund, retrieve, find):
        answer with `outcome`, or raise it, instead of behaving normally."""
        self._script[operation].append(outcome)

    def lose_next_answer(self, operation: str) -> None:
        """Do the next `operation` (charge or refund) for real, then lose its answer: the
        caller sees a timeout although the money moved."""
        self._lose.add(operation)

    def _answer(self, operation: str, outcome: Outcome) -> Outcome:
        if operation in self._lose:
            self._lose.discard(operation)
            raise GatewayUnavailable(f"the {operation} was made, but its answer was lost")
        return outcome

    def _scripted(self, operation: str) -> Outcome | None:
        if not self._script[operation]:
            return None
        outcome = self._script[operation].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    # -- the server-side API -------------------------------------------------------

    def accepts_token(self, method: str, token: str | None) -> str | None:
        if token is None:
            return None
        if method == "PAYPAL":
            return "PayPal payments take no token: the buyer approves at PayPal (nextAction)"
        if token not in TEST_CARDS:
            shown = token if len(token) <= 40 else token[:40] + "…"
            return f"unknown payment method token {shown!r}: use a Stripe test token"
        return None

    async def charge(self, request: ChargeRequest) -> ChargeState:
        self.calls["charge"] += 1  # every request, replays included
        self.calls[f"charge:{request.reference}"] += 1
        await self._travel(0.5)  # the request on its way
        scripted = self._scripted("charge")
        if isinstance(scripted, ChargeState):
            return scripted
        reply = await self._replayed(request.idempotency_key)
        if isinstance(reply, ChargeState):
            return reply
        intent_id = f"pi_sim_{secrets.token_hex(12)}"
        intent = _Intent(
            id=intent_id,
            reference=request.reference,
            amount=request.amount,
            currency=request.currency,
            manual_capture=request.manual_capture,
            client_secret=f"{intent_id}_secret_{secrets.token_hex(12)}",
            metadata=dict(request.metadata),
            method="PAYPAL" if request.method == "PAYPAL" else "CARD",
        )
        if intent.method == "PAYPAL":
            intent.status = S.REQUIRES_ACTION  # the buyer approves on PayPal's page
        elif request.token is not None:
            self._confirm(intent, TEST_CARDS[request.token])
        state = intent.state()
        async with in_transaction() as conn:
            await SimulatedIntent.create(
                using_db=conn,
                id=intent.id,
                client_secret=intent.client_secret,
                reference=intent.reference,
                data=intent.to_row(),
            )
            await SimulatedReply.create(
                using_db=conn, key=request.idempotency_key, data=_reply_row(state)
            )
        await self._travel(0.5)  # the answer on its way back: the charge is made already
        self._answer("charge", state)
        return state

    def _confirm(self, intent: _Intent, test_card: TestCard) -> None:
        intent.card = test_card.card
        intent.charge_id = f"ch_sim_{secrets.token_hex(12)}"
        if test_card.outcome is S.FAILED:
            self._fail(intent, "card_declined", test_card.decline_code, test_card.message)
        elif test_card.outcome is S.REQUIRES_ACTION:
            intent.status = S.REQUIRES_ACTION
        else:
            self._authorize(intent)

    def _authorize(self, intent: _Intent) -> None:
        if intent.manual_capture:
            intent.status = S.REQUIRES_CAPTURE
        else:
            intent.status = S.SUCCEEDED
            intent.amount_captured = intent.amount

    @staticmethod
    def _fail(intent: _Intent, code: str, decline_code: str | None, message: str | None) -> None:
        intent.status = S.FAILED
        intent.error_code = code
        intent.decline_code = decline_code
        intent.error_message = message

    async def _answered(self, operation: str, idempotency_key: str) -> ChargeState | None:
        """A call's way in: counted, on its way, then a scripted answer or the first
        answer to its idempotency key, if there is one."""
        self.calls[operation] += 1
        await self._travel()
        scripted = self._scripted(operation)
        if isinstance(scripted, ChargeState):
            return scripted
        reply = await self._replayed(idempotency_key)
        return reply if isinstance(reply, ChargeState) else None

    async def capture(self, transaction_id: str, amount: int, idempotency_key: str) -> ChargeState:
        if (answered := await self._answered("capture", idempotency_key)) is not None:
            return answered
        async with self._intent(transaction_id) as intent:
            if intent.status is not S.REQUIRES_CAPTURE:
                raise GatewayError(
                    f"payment intent {intent.id} is {intent.status.value}, not capturable"
                )
            if amount > intent.amount:
                raise GatewayError("cannot capture more than was authorized")
            intent.status = S.SUCCEEDED
            intent.amount_captured = amount
            state = intent.state()
        await self._remember(idempotency_key, state)
        return state

    async def complete(
        self, transaction_id: str, manual_capture: bool, idempotency_key: str
    ) -> ChargeState:
        """PayPal's capture (or authorize) of an order its buyer approved."""
        if (answered := await self._answered("complete", idempotency_key)) is not None:
            return answered
        async with self._intent(transaction_id) as intent:
            if intent.status is S.APPROVED:
                intent.charge_id = f"ch_sim_{secrets.token_hex(12)}"
                self._authorize(intent)
            elif intent.status not in (S.SUCCEEDED, S.REQUIRES_CAPTURE):
                raise GatewayError(f"payment intent {intent.id} is {intent.status.value}")
            state = intent.state()
        await self._remember(idempotency_key, state)
        self._answer("complete", state)
        return state

    async def cancel(self, transaction_id: str, idempotency_key: str) -> ChargeState:
        self.calls["cancel"] += 1
        await self._travel()
        scripted = self._scripted("cancel")
        if isinstance(scripted, ChargeState):
            return scripted
        async with self._intent(transaction_id) as intent:
            if intent.status in (S.SUCCEEDED, S.FAILED, S.APPROVED):
                # APPROVED: PayPal's buyer approved it, and payql may be completing it.
                raise GatewayError(f"payment intent {intent.id} is {intent.status.value}")
            intent.status = S.CANCELED
            return intent.state()

    async def refund(self, transaction_id: str, amount: int, idempotency_key: str) -> RefundState:
        self.calls["refund"] += 1
        await self._travel()
        scripted = self._scripted("refund")
        if isinstance(scripted, RefundState):
            return scripted
        reply = await self._replayed(idempotency_key)
        if isinstance(reply, RefundState):
            return reply
        async with self._intent(transaction_id) as intent:
            if intent.status is not S.SUCCEEDED:
                raise GatewayError(f"payment intent {intent.id} has no captured charge to refund")
            if amount > intent.amount_captured - intent.amount_refunded:
                raise GatewayError("the refund exceeds the charge's unrefunded amount")
            intent.amount_refunded += amount
            refund = RefundState(f"re_sim_{secrets.token_hex(12)}", RefundOutcome.SUCCEEDED)
            intent.refunds.append(
                {
                    "id": refund.refund_id,
                    "object": "refund",
                    "amount": amount,
                    "status": "succeeded",
                    "payment_intent": intent.id,
                    "metadata": {"payql_refund_id": idempotency_key.removeprefix("payql-")},
                }
            )
        await self._remember(idempotency_key, refund)
        self._answer("refund", refund)
        return refund

    async def retrieve(self, transaction_id: str) -> ChargeState | None:
        self.calls["retrieve"] += 1
        await self._travel()
        scripted = self._scripted("retrieve")
        if isinstance(scripted, ChargeState):
            return scripted
        row = await SimulatedIntent.get_or_none(id=transaction_id)
        if row is None:
            raise GatewayError(f"no such payment intent: {transaction_id}")
        return _Intent.from_row(row.data).state()

    async def find(self, reference: str) -> ChargeState | None:
        self.calls["find"] += 1
        await self._travel()
        scripted = self._scripted("find")
        if isinstance(scripted, ChargeState):
            return scripted
        row = await SimulatedIntent.filter(reference=reference).order_by("-id").first()
        return _Intent.from_row(row.data).state() if row else None

    @asynccontextmanager
    async def _intent(self, transaction_id: str) -> AsyncIterator[_Intent]:
        """The intent, locked for a change that is saved when the block ends."""
        async with in_transaction() as conn:
            row = (
                await SimulatedIntent.filter(id=transaction_id)
                .select_for_update()
                .using_db(conn)
                .first()
            )
            if row is None:
                raise GatewayError(f"no such payment intent: {transaction_id}")
            intent = _Intent.from_row(row.data)
            yield intent
            row.data = intent.to_row()
            await row.save(using_db=conn, update_fields=["data"])

    async def _replayed(self, key: str) -> Outcome | None:
        row = await SimulatedReply.get_or_none(key=key)
        return _reply(row.data) if row else None

    async def _remember(self, key: str, reply: Outcome) -> None:
        await SimulatedReply.update_or_create(key=key, defaults={"data": _reply_row(reply)})

    async def _travel(self, share: float = 1.0) -> None:
        if self.latency:
            await asyncio.sleep(self.latency * share)

    # -- the client side: confirmation and 3-D Secure -------------------------------

    async def confirm(
        self,
        client_secret: str,
        payment_method: str | None,
        authenticate: bool | None,
        deliver_to: str | None,
        approve: bool | None = None,
    ) -> str:
        """Confirm a payment as Stripe.js would, or approve (or cancel) a PayPal one on
        its page; the outcome goes out as webhooks (unless `deliver_to` is None: a lost
        webhook, for trying syncPayment)."""
        await self._travel()
        row = await SimulatedIntent.get_or_none(client_secret=client_secret)
        if row is None:
            raise ConfirmRefused(404, "no payment has this client secret")
        reported: list[S] = []
        async with self._intent(row.id) as intent:
            if intent.method == "PAYPAL":
                if approve is None:
                    raise ConfirmRefused(400, "approve (true or false) answers PayPal's page")
                if intent.status is not S.REQUIRES_ACTION:
                    raise ConfirmRefused(
                        409, f"this PayPal payment is {intent.status.value}: nothing to approve"
                    )
                intent.status = S.APPROVED if approve else S.CANCELED
            elif intent.status is S.REQUIRES_PAYMENT_METHOD:
                if not payment_method:
                    raise ConfirmRefused(
                        400, "paymentMethod is required: this payment has none yet"
                    )
                test_card = TEST_CARDS.get(payment_method)
                if test_card is None:
                    raise ConfirmRefused(400, f"unknown payment method {payment_method!r}")
                self._confirm(intent, test_card)
                if intent.status is S.REQUIRES_ACTION and authenticate is not None:
                    reported.append(S.REQUIRES_ACTION)
                    self._authenticate(intent, authenticate)
            elif intent.status is S.REQUIRES_ACTION:
                if authenticate is None:
                    raise ConfirmRefused(400, "authenticate (true or false) completes 3-D Secure")
                self._authenticate(intent, authenticate)
            else:
                raise ConfirmRefused(
                    409, f"this payment is {intent.status.value}: its client secret is used up"
                )
            reported.append(intent.status)
            events = [self._event(_EVENT_TYPES[status], intent) for status in reported]
        if deliver_to is not None:
            self._deliver(deliver_to, events)
        return intent.status.value

    def _authenticate(self, intent: _Intent, approved: bool) -> None:
        if approved:
            self._authorize(intent)
        else:
            self._fail(
                intent,
                AUTHENTICATION_FAILED,
                None,
                "The customer did not complete 3-D Secure authentication.",
            )

    def _event(self, event_type: str, intent: _Intent) -> dict[str, Any]:
        return {
            "id": f"evt_sim_{secrets.token_hex(12)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": intent.to_stripe()},
        }

    # -- webhooks --------------------------------------------------------------------

    def _deliver(self, url: str, events: list[dict[str, Any]]) -> None:
        task = asyncio.create_task(self._send_all(url, events))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _send_all(self, url: str, events: list[dict[str, Any]]) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            for event in events:  # in order, each until it is accepted
                await self.send_webhook(client, url, event)

    async def send_webhook(
        self, client: httpx.AsyncClient, url: str, event: Mapping[str, Any]
    ) -> bool:
        body = json.dumps(event, separators=(",", ":")).encode()
        for delay in (*RETRY_DELAYS, None):
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": signing.sign(body, self.webhook_secret),
            }
            try:
                response = await client.post(url, content=body, headers=headers)
                if response.is_success:
                    return True
                log.warning("webhook %s got %s", event["id"], response.status_code)
            except httpx.HTTPError as exc:
                log.warning("webhook %s not delivered: %s", event["id"], exc)
            if delay is None:
                break
            await asyncio.sleep(delay)
        log.error("webhook %s to %s given up", event["id"], url)
        return False

    async def drain(self) -> None:
        """Wait for webhooks still being delivered (shutdown, tests)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        signing.verify(payload, headers.get("stripe-signature"), self.webhook_secret)
        try:
            event = json.loads(payload)
        except ValueError:
            raise MalformedEvent("the body is not JSON") from None
        if not isinstance(event, dict):
            raise MalformedEvent("the body is not a JSON object")
        parsed = gateway_event(event)
        if parsed.type == APPROVED_EVENT:  # a PayPal buyer's approval
            intent = event["data"]["object"]
            parsed = replace(parsed, charge=charge_state(intent, S.APPROVED))
        return parsed


__all__ = ["TEST_CARDS", "ConfirmRefused", "SimulatedGateway"]
