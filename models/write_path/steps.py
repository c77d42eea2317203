"""What the use cases share: a gateway step on a payment that exists (note the intent,
call the gateway outside any transaction, apply its answer), finding a charge whose
answer was lost, and completing a payment the customer approved at the gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateways.base import ChargeState, Completes, Gateway, GatewayError, GatewayUnavailable
from models import rules
from models.access import Actor, one_payment
from models.errors import DomainError, ErrorCode, invalid_state, not_found
from models.rules import CaptureMethod, EventSource, PaymentStatus, Reported
from models.tables import Payment
from models.write_path.core import Decide, Outcome, apply
from models.write_path.decisions import Absorb, Moved, note_event, note_event_if

if TYPE_CHECKING:
    from models.write_path.service import PaymentService

log = logging.getLogger("payql.payments")


async def gateway_step(
    svc: PaymentService,
    payment: Payment,
    source: EventSource,
    intent: tuple[str, dict[str, Any]],
    call: Callable[[Gateway, str, str], Awaitable[ChargeState]],
    key: str | None = None,
    only_if: PaymentStatus | None = None,
) -> Outcome:
    """Record the intent, call the gateway, apply its answer. The idempotency key is
    per attempt (the noted version) unless given: a retry of this call is the same
    request, and a later attempt (another amount, after a refusal) is a new one."""
    gateway = svc.gateway_of(payment)
    event_type, data = intent
    note = (  # only_if is decided under the row's lock
        note_event(event_type, **data)
        if only_if is None
        else note_event_if(only_if, event_type, **data)
    )
    noted = await apply(svc, payment.id, note, source)
    assert payment.gateway_transaction_id is not None
    if key is None:
        key = f"payql-{payment.id}-{event_type.rsplit('.', 1)[-1]}-{noted.version}"
    try:
        state = await call(gateway, payment.gateway_transaction_id, key)
    except GatewayUnavailable as exc:
        return Outcome(payment=await Payment.get(id=payment.id), error=gateway_unavailable(exc))
    except GatewayError as exc:
        payment = await apply(
            svc, payment.id, note_event("gateway.refused", reason=str(exc)), EventSource.GATEWAY
        )
        return Outcome(payment=payment, error=DomainError(ErrorCode.GATEWAY_ERROR, str(exc)))
    absorb = Absorb(state)
    payment = await apply(svc, payment.id, absorb, source)
    if absorb.verdict is Reported.IGNORE:
        # Something else moved the payment meanwhile (a cancel, a webhook).
        return Outcome(
            payment=payment,
            error=invalid_state(f"the payment became {payment.status.value} meanwhile"),
        )
    return Outcome(payment=payment)


async def find_charge(
    svc: PaymentService,
    payment: Payment,
    if_absent: Decide,
    source: EventSource = EventSource.SYSTEM,
) -> Payment:
    """A payment whose charge has no answer yet (in flight, timed out, crashed):
    ask the gateway for it by our reference. Absent, and older than any gateway
    call can take, it never arrived: `if_absent` decides what becomes of it."""
    gateway = svc.gateway_of(payment)
    state = await gateway.find(payment.id)
    if state is not None:
        payment = await apply(svc, payment.id, Absorb(state), EventSource.GATEWAY)
        completed = await complete_if_approved(svc, payment, state, EventSource.GATEWAY)
        if completed is not None and completed.payment is not None:
            payment = completed.payment
        return payment
    if svc.clock() - payment.created_at < svc.charge_timeout:
        raise invalid_state(
            "the gateway has not answered for this payment yet: try again in a moment"
        )
    return await apply(svc, payment.id, if_absent, source)


async def complete_if_approved(
    svc: PaymentService, payment: Payment, state: ChargeState, source: EventSource
) -> Outcome | None:
    """The customer approved the payment at the gateway (a PayPal order) and it
    waits for payql: capture it, or authorize it for a manual capture. Every attempt
    (webhook, sync, reconciliation, at once or not) sends one key, so the gateway
    completes it once. None when there is nothing to complete."""
    if not rules.needs_completion(payment.status, state.status.value):
        return None
    gateway = svc.gateway_of(payment)
    if not isinstance(gateway, Completes):
        log.error("the %s gateway reported an approval it cannot complete", gateway.name)
        return Outcome(
            payment=payment,
            error=DomainError(ErrorCode.GATEWAY_ERROR, "the gateway cannot complete it"),
        )
    manual = payment.capture_method is CaptureMethod.MANUAL
    try:
        return await gateway_step(
            svc,
            payment,
            source,
            intent=("payment.completion_requested", {"manualCapture": manual}),
            call=lambda _gateway, txn, key: gateway.complete(txn, manual, key),
            key=f"payql-{payment.id}-complete",
            only_if=PaymentStatus.PROCESSING,
        )
    except Moved as moved:  # cancelled (or completed) meanwhile: nothing to do
        return Outcome(payment=moved.payment)


async def visible_payment(actor: Actor, payment_id: str) -> Payment:
    payment = await one_payment(actor, payment_id).first()
    if payment is None:
        raise not_found("payment", "id")
    return payment


def gateway_unavailable(exc: Exception) -> DomainError:
    log.warning("gateway unavailable: %s", exc)
    return DomainError(
        ErrorCode.GATEWAY_UNAVAILABLE,
        "the payment gateway did not answer; try again or sync the payment",
    )
