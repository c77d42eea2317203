"""The gateway interface: a small Protocol, the values it speaks, and its errors.

Statuses use Stripe's vocabulary, the lingua franca of card gateways; the payment
rules (models/rules.py) say what each one means for a payment. A gateway never
imports anything from the rest of payql.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable


class GatewayStatus(Enum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # waiting for the client to confirm
    AWAITING_FUNDS = "awaiting_funds"  # offline: waiting for the money to arrive
    REQUIRES_ACTION = "requires_action"  # 3-D Secure or another customer step
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"  # authorized, manual capture
    # The customer approved (a PayPal order): payql finishes it with `complete`.
    APPROVED = "approved"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class RefundOutcome(Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Card:
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeRequest:
    reference: str  # our payment id
    amount: int  # minor units
    currency: str
    method: str  # a PaymentMethod name: CREDIT_CARD, PAYPAL, BANK_TRANSFER, …
    token: str | None
    manual_capture: bool
    idempotency_key: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundReport:
    """A refund as the gateway knows it: ours (its reference) or made elsewhere."""

    refund_id: str
    amount: int
    status: RefundOutcome
    reference: str | None = None  # our refund id, when the gateway echoes it back
    failure_reason: str | None = None


@dataclass(frozen=True)
class DisputeReport:
    dispute_id: str
    amount: int
    currency: str
    status: str  # Stripe's: warning_needs_response, needs_response, under_review, won, lost, …
    reason: str | None = None


@dataclass(frozen=True)
class ChargeState:
    transaction_id: str
    status: GatewayStatus
    amount_captured: int = 0
    client_secret: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    card: Card | None = None
    refunds: tuple[RefundReport, ...] = ()
    # Where to send the customer to act (PayPal's approval page), while REQUIRES_ACTION.
    redirect_url: str | None = None


@dataclass(frozen=True)
class RefundState:
    refund_id: str
    status: RefundOutcome
    failure_reason: str | None = None


@dataclass(frozen=True)
class GatewayEvent:
    """A verified webhook event, read into our terms."""

    id: str  # the gateway's event id: the key webhooks are deduplicated on
    type: str
    transaction_id: str | None
    reference: str | None  # our payment id, when the gateway echoes it back
    charge: ChargeState | None  # the payment's state, for events that carry one
    payload: Mapping[str, Any] = field(default_factory=dict)
    refunds: tuple[RefundReport, ...] = ()  # refund events
    dispute: DisputeReport | None = None  # dispute events
    # The event says something changed but carries no detail: ask the gateway.
    refresh: bool = False


class GatewayError(Exception):
    """The gateway refused the request for a reason that retrying will not fix."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or failed; the outcome is unknown. Retry or sync."""


class GatewayConfigError(ValueError):
    """A gateway's option is missing or wrong, raised when the gateway is made. payql
    names the setting that holds it (PAYQL_GATEWAY_<NAME>_<OPTION> for a plug-in)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option
        self.message = message


class Gateway(Protocol):
    name: str
    # PaymentMethod names this gateway can take.
    methods: frozenset[str]

    def accepts_token(self, method: str, token: str | None) -> str | None:
        """None when the token suits the method, else why not (checked before any write)."""
        ...

    async def charge(self, request: ChargeRequest) -> ChargeState: ...

    async def capture(
        self, transaction_id: str, amount: int, idempotency_key: str
    ) -> ChargeState: ...

    async def cancel(self, transaction_id: str, idempotency_key: str) -> ChargeState: ...

    async def refund(
        self, transaction_id: str, amount: int, idempotency_key: str
    ) -> RefundState: ...

    async def retrieve(self, transaction_id: str) -> ChargeState | None:
        """The gateway's truth about a payment, or None when it holds none (offline methods)."""
        ...

    async def find(self, reference: str) -> ChargeState | None:
        """The charge made for our payment `reference`, if the gateway has one: how a
        charge whose answer never came back (a timeout, a crash) is found again."""
        ...

    def parse_webhook(
        self, payload: bytes, headers: Mapping[str, str]
    ) -> GatewayEvent | Awaitable[GatewayEvent]:
        """Verify the raw body's signature first, then read it; raise InvalidSignature.
        A gateway that verifies by asking its processor (PayPal) may be async."""
        ...


@runtime_checkable
class Completes(Protocol):
    """A gateway whose customers approve a payment that the merchant then completes
    (PayPal: the buyer approves an order, the merchant captures or authorizes it).
    Only a gateway that reports APPROVED needs this."""

    async def complete(
        self, transaction_id: str, manual_capture: bool, idempotency_key: str
    ) -> ChargeState:
        """Capture the approved payment (or authorize it, for a manual capture)."""
        ...
