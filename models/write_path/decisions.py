"""The decisions use cases hand to core.apply: take the gateway's word (Absorb), note
an event, fail, cancel. Each changes the payment only through Tx."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateways.base import ChargeState
from models.rules import PaymentStatus, Reported
from models.tables import Payment
from models.write_path.core import Decide, Tx

if TYPE_CHECKING:
    pass


class Absorb:
    """Decide: take the gateway's word (see Tx.absorb); remembers the verdict.
    With `refunds`, the refunds the gateway lists are reconciled too (a sync)."""

    def __init__(self, state: ChargeState, refunds: bool = False) -> None:
        self.state = state
        self.refunds = refunds
        self.verdict: Reported | None = None

    async def __call__(self, tx: Tx) -> None:
        self.verdict = tx.absorb(self.state)
        if self.refunds:
            await tx.reconcile_refunds(self.state.refunds)


def note_event(event_type: str, **data: Any) -> Decide:
    async def decide(tx: Tx) -> None:
        tx.event(event_type, **data)

    return decide


class Moved(Exception):
    """The payment is no longer in the status a step needs (checked under its lock)."""

    def __init__(self, payment: Payment) -> None:
        self.payment = payment


def note_event_if(status: PaymentStatus, event_type: str, **data: Any) -> Decide:
    async def decide(tx: Tx) -> None:
        if tx.payment.status is not status:
            raise Moved(tx.payment)
        tx.event(event_type, **data)

    return decide


def fail_with(code: str, message: str) -> Decide:
    async def decide(tx: Tx) -> None:
        tx.payment.failure_code = code
        tx.payment.failure_message = message[:500]
        tx.move(PaymentStatus.FAILED)

    return decide


async def cancel_here(tx: Tx) -> None:
    tx.move(PaymentStatus.CANCELLED)
