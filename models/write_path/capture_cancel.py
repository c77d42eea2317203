"""capturePayment, cancelPayment and markPaymentReceived: steps on a payment that
exists, each through steps.gateway_step.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from models import money, rules
from models.access import Actor
from models.rules import EventSource, PaymentStatus
from models.write_path.core import Outcome
from models.write_path.decisions import cancel_here
from models.write_path.steps import find_charge, gateway_step, visible_payment

if TYPE_CHECKING:
    from models.write_path.service import PaymentService


async def capture_payment(
    svc: PaymentService, actor: Actor, payment_id: str, amount: Decimal | None = None
) -> Outcome:
    actor.require_admin("capture payments")
    payment = await visible_payment(actor, payment_id)
    wanted = None if amount is None else money.to_minor(amount, payment.currency)
    to_capture = rules.check_capture(payment.status, payment.amount, wanted)
    return await gateway_step(
        svc,
        payment,
        EventSource.ADMIN,
        intent=("payment.capture_requested", {"amount": to_capture}),
        call=lambda gw, txn, key: gw.capture(txn, to_capture, key),
    )


async def cancel_payment(svc: PaymentService, actor: Actor, payment_id: str) -> Outcome:
    payment = await visible_payment(actor, payment_id)
    rules.check_cancel(payment.status, admin=actor.admin)
    source = EventSource.ADMIN if actor.admin else EventSource.API
    if payment.gateway_transaction_id is None:
        # The charge may still be in flight: cancelling here alone could let it
        # succeed at the gateway afterwards. Ask the gateway first.
        payment = await find_charge(svc, payment, if_absent=cancel_here, source=source)
        if payment.status is PaymentStatus.CANCELLED:
            return Outcome(payment=payment)
        rules.check_cancel(payment.status, admin=actor.admin)
    return await gateway_step(
        svc,
        payment,
        source,
        intent=("payment.cancel_requested", {}),
        call=lambda gw, txn, key: gw.cancel(txn, key),
    )


async def mark_payment_received(svc: PaymentService, actor: Actor, payment_id: str) -> Outcome:
    actor.require_admin("mark payments received")
    payment = await visible_payment(actor, payment_id)
    rules.check_mark_received(payment.status, payment.payment_method)
    return await gateway_step(
        svc,
        payment,
        EventSource.ADMIN,
        intent=("payment.received", {"by": actor.customer_id}),
        call=lambda gw, txn, key: gw.capture(txn, payment.amount, key),
    )
