"""refundPayment: phase 1 reserves the amount on the payment (never above what is
still refundable), phase 2 asks the gateway, phase 3 settles the refund; and refunds
whose answer was lost, asked again with their own key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tortoise.exceptions import IntegrityError

from gateways.base import Gateway, GatewayError, GatewayUnavailable, RefundOutcome, RefundState
from models import money, rules
from models.access import Actor
from models.errors import DomainError, ErrorCode
from models.ids import new_id
from models.rules import EventSource, RefundStatus
from models.tables import IdempotencyKey, Payment, Refund
from models.write_path.core import Outcome, Tx, apply
from models.write_path.idempotency import await_first
from models.write_path.inputs import checked_key, checked_text, digest
from models.write_path.steps import gateway_unavailable, visible_payment

if TYPE_CHECKING:
    from models.write_path.service import PaymentService


async def refund_payment(
    svc: PaymentService,
    actor: Actor,
    payment_id: str,
    amount: Decimal | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> Outcome:
    actor.require_admin("refund payments")
    reason = checked_text(reason, "reason", 500)
    key = checked_key(idempotency_key)
    scope = f"{actor.scope}:refundPayment"
    fingerprint = digest(
        {
            "paymentId": payment_id,
            "amount": None if amount is None else str(amount.normalize()),
            "reason": reason,
        }
    )
    if key is not None:
        existing = await IdempotencyKey.get_or_none(scope=scope, key=key)
        if existing is not None:
            return await _replay_refund(svc, existing, fingerprint)
    payment = await visible_payment(actor, payment_id)
    # Before anything is reserved: a gateway that is not working refunds nothing,
    # and leaves no pending refund behind to be sent later.
    gateway = svc.gateway_of(payment)
    wanted = None if amount is None else money.to_minor(amount, payment.currency)
    refund_id = new_id("re")
    record_id: int | None = None

    # Phase 1: reserve the amount, in the payment's own transaction.
    async def reserve(tx: Tx) -> None:
        nonlocal record_id
        p = tx.payment
        to_refund = rules.check_refund(
            status=p.status,
            captured=p.captured,
            refunded=p.refunded,
            refund_pending=p.refund_pending,
            amount=wanted,
            completed_at=p.completed_at,
            now=tx.now,
            window=svc.refund_window,
        )
        if key is not None:
            record = await IdempotencyKey.create(
                using_db=tx.conn,
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                resource_id=refund_id,
            )
            record_id = record.id
        p.refund_pending += to_refund
        reserved = await Refund.create(
            using_db=tx.conn,
            id=refund_id,
            payment_id=p.id,
            amount=to_refund,
            currency=p.currency,
            reason=reason,
        )
        tx.track(reserved)
        tx.event("refund.created", refundId=refund_id, amount=to_refund)

    try:
        payment = await apply(svc, payment.id, reserve, EventSource.ADMIN)
    except IntegrityError:
        if key is None:
            raise
        existing = await IdempotencyKey.get(scope=scope, key=key)
        return await _replay_refund(svc, existing, fingerprint)
    refund = await Refund.get(id=refund_id)

    # Phase 2: the gateway.
    assert payment.gateway_transaction_id is not None
    try:
        result = await gateway.refund(
            payment.gateway_transaction_id, refund.amount, f"payql-{refund.id}"
        )
    except GatewayUnavailable as exc:
        # Unknown outcome: the refund stays PENDING (its amount reserved) until
        # syncPayment asks again with the same key. A replay answers at once.
        if record_id is not None:
            await IdempotencyKey.filter(id=record_id).update(completed=True)
        return Outcome(refund=refund, payment=payment, error=gateway_unavailable(exc))
    except GatewayError as exc:
        result = RefundState("", RefundOutcome.FAILED, str(exc))

    # Phase 3: apply the outcome.
    payment = await apply_refund_state(
        svc, refund.id, result, EventSource.GATEWAY, complete=record_id
    )
    refund = await Refund.get(id=refund.id)
    error = None
    if refund.status is RefundStatus.FAILED:
        error = DomainError(
            ErrorCode.GATEWAY_ERROR, f"the gateway refused the refund: {refund.failure_reason}"
        )
    return Outcome(refund=refund, payment=payment, error=error)


async def apply_refund_state(
    svc: PaymentService,
    refund_id: str,
    result: RefundState,
    source: EventSource,
    complete: int | None = None,
) -> Payment:
    refund = await Refund.get(id=refund_id)

    async def settle(tx: Tx) -> None:
        current = await Refund.select_for_update().using_db(tx.conn).get(id=refund_id)
        await tx.settle_refund(
            current, result.status, result.refund_id or None, result.failure_reason
        )

    return await apply(svc, refund.payment_id, settle, source, complete=complete)


async def _replay_refund(svc: PaymentService, record: IdempotencyKey, fingerprint: str) -> Outcome:
    await await_first(svc, record, fingerprint)
    refund = await Refund.get(id=record.resource_id)
    payment = await Payment.get(id=refund.payment_id)
    return Outcome(refund=refund, payment=payment)


async def retry_lost_refunds(svc: PaymentService, payment: Payment, gateway: Gateway) -> Payment:
    """Refunds left PENDING without a gateway answer are asked again with their own
    idempotency key: the gateway answers with the first refund, or makes it now."""
    lost = await Refund.filter(
        payment_id=payment.id,
        status=RefundStatus.PENDING,
        gateway_refund_id=None,
        created_at__lt=svc.clock() - svc.charge_timeout,  # not one still in flight
    ).order_by("created_at")
    for refund in lost:
        assert payment.gateway_transaction_id is not None
        try:
            result = await gateway.refund(
                payment.gateway_transaction_id, refund.amount, f"payql-{refund.id}"
            )
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            result = RefundState("", RefundOutcome.FAILED, str(exc))
        payment = await apply_refund_state(svc, refund.id, result, EventSource.GATEWAY)
    return payment
