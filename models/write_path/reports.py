"""What gateways report: webhooks (deduplicated on their event id), syncs that ask the
gateway for the truth, and reconciliation of what a lost answer left unresolved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tortoise.exceptions import IntegrityError

from gateways.base import Completes, GatewayError, GatewayEvent, GatewayUnavailable
from models.access import Actor
from models.errors import DomainError, ErrorCode
from models.rules import EventSource, PaymentStatus, RefundStatus, Reported
from models.tables import IdempotencyKey, Payment, Refund, WebhookEvent
from models.write_path.core import Busy, Outcome, PaymentUnknown, Tx, apply
from models.write_path.decisions import Absorb, fail_with
from models.write_path.refunds import retry_lost_refunds
from models.write_path.steps import (
    complete_if_approved,
    find_charge,
    gateway_unavailable,
    visible_payment,
)

if TYPE_CHECKING:
    from models.write_path.service import PaymentService

log = logging.getLogger("payql.payments")


# The service itself, reconciling.
SYSTEM = Actor(customer_id="payql", role="admin")
# How long a buyer has to approve a payment at the gateway (PayPal's orders: 3 hours).
APPROVAL_WINDOW = timedelta(hours=3)


async def apply_webhook(svc: PaymentService, gateway: str, event: GatewayEvent) -> str:
    """A verified webhook: applied once ("applied"/"ignored"), or "duplicate".

    Raises PaymentUnknown when it is about a payment not (yet) recorded, so that
    the route answers 5xx and the gateway retries.
    """
    if await WebhookEvent.filter(gateway=gateway, event_id=event.id).exists():
        return "duplicate"
    payment = None
    if event.reference:
        payment = await Payment.get_or_none(id=event.reference, gateway=gateway)
    if payment is None and event.transaction_id:
        payment = await Payment.get_or_none(
            gateway=gateway, gateway_transaction_id=event.transaction_id
        )
    record: dict[str, Any] = {
        "gateway": gateway,
        "event_id": event.id,
        "type": event.type,
        "payment_id": payment.id if payment else None,
        "payload": dict(event.payload),
    }
    charge = event.charge
    refunds = event.refunds
    try:
        news = charge is not None or refunds or event.dispute is not None or event.refresh
        if not news or (payment is None and event.reference is None):
            # Nothing in it for a payment, or about an object that is not ours
            # (another integration on the same account): kept and acknowledged.
            await WebhookEvent.create(outcome="ignored", **record)
            return "ignored"
        if payment is None:
            raise PaymentUnknown(f"no payment for {event.type} {event.id}")
        if event.refresh and payment.gateway_transaction_id:
            fresh = await svc.gateway_of(payment).retrieve(payment.gateway_transaction_id)
            refunds = fresh.refunds if fresh is not None else ()
        outcome = "applied"

        async def decide(tx: Tx) -> None:
            nonlocal outcome
            if charge is not None:
                verdict = tx.absorb(charge, eventId=event.id, eventType=event.type)
                if verdict is Reported.IGNORE:
                    outcome = "ignored"
                elif verdict is Reported.SAME:  # news of nothing new: noted in the trail
                    tx.event("webhook.applied", eventId=event.id, eventType=event.type)
            await tx.reconcile_refunds(refunds)
            if event.dispute is not None:
                await tx.record_dispute(event.dispute, event.type)
            await WebhookEvent.create(using_db=tx.conn, outcome=outcome, **record)

        try:
            payment = await apply(svc, payment.id, decide, EventSource.WEBHOOK)
        except Busy:
            raise  # retryable: the route answers 503
        except DomainError as exc:
            # It can never apply: kept as rejected, acknowledged, not retried forever.
            log.error("ALERT: webhook %s %s rejected: %s", gateway, event.id, exc.message)
            await WebhookEvent.create(outcome="rejected", **record)
            return "rejected"
        if charge is not None:
            # The customer approved (PayPal): the event is recorded; completing it
            # is payql's own step, which sync and reconciliation retry if it fails.
            try:
                await complete_if_approved(svc, payment, charge, EventSource.GATEWAY)
            except DomainError as exc:
                log.warning("could not complete %s after %s: %s", payment.id, event.id, exc)
        return outcome
    except IntegrityError:
        return "duplicate"  # a concurrent copy of the same event won the race


async def sync_payment(svc: PaymentService, actor: Actor, payment_id: str) -> Outcome:
    """Ask the gateway for the truth: the charge (found by our reference when its
    answer was lost), then any refund whose answer was lost."""
    payment = await visible_payment(actor, payment_id)
    gateway = svc.gateway_of(payment)
    try:
        if payment.gateway_transaction_id is None:
            never_arrived = fail_with(
                "gateway_unavailable", "The payment never reached the gateway."
            )
            payment = await find_charge(svc, payment, if_absent=never_arrived)
        else:
            state = await gateway.retrieve(payment.gateway_transaction_id)
            if state is not None:
                absorb = Absorb(state, refunds=True)
                payment = await apply(svc, payment.id, absorb, EventSource.GATEWAY)
                completed = await complete_if_approved(svc, payment, state, EventSource.API)
                if completed is not None:
                    if completed.error is not None:
                        return completed
                    payment = completed.payment or payment
        payment = await retry_lost_refunds(svc, payment, gateway)
    except GatewayUnavailable as exc:
        return Outcome(payment=payment, error=gateway_unavailable(exc))
    except GatewayError as exc:
        return Outcome(payment=payment, error=DomainError(ErrorCode.GATEWAY_ERROR, str(exc)))
    return Outcome(payment=payment)


async def reconcile(
    svc: PaymentService, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Payments that a lost answer (a timeout, a crash between the gateway call and
    the commit) left unresolved: each is synced, so the gateway's truth applies.
    `progress` is told (done, total) after each."""
    stale = svc.clock() - svc.charge_timeout
    unanswered = Payment.filter(
        status=PaymentStatus.PENDING, gateway_transaction_id=None
    ).values_list("id", flat=True)
    processing = Payment.filter(status=PaymentStatus.PROCESSING, updated_at__lt=stale).values_list(
        "id", flat=True
    )
    refunding = Refund.filter(status=RefundStatus.PENDING, created_at__lt=stale).values_list(
        "payment_id", flat=True
    )
    # Waiting for a buyer's approval at a gateway that payql then completes (PayPal),
    # while its approval can still come: an approval whose webhook was lost, and whose
    # buyer never came back to the shop, is found here.
    completing = [n for n, g in svc.gateways.items() if isinstance(g, Completes)]
    approving = Payment.filter(
        status=PaymentStatus.REQUIRES_ACTION,
        gateway__in=completing,
        updated_at__lt=stale,
        created_at__gte=svc.clock() - APPROVAL_WINDOW,
    ).values_list("id", flat=True)
    queries = (unanswered, processing, refunding, approving)
    ids = sorted({str(i) for q in queries for i in await q})
    summary = {"checked": len(ids), "changed": 0, "waiting": 0, "failed": 0, "unchanged": 0}
    for done, payment_id in enumerate(ids, 1):
        result = await _reconcile_one(svc, payment_id)
        summary[result] += 1
        if result in ("changed", "unchanged"):
            await _complete_keys(payment_id)
        if progress is not None:
            progress(done, len(ids))
    return summary


async def _complete_keys(payment_id: str) -> None:
    """The idempotency keys of requests that died before they answered (a crash
    between their gateway call and their commit): what they started is settled now,
    so a retry with the key answers at once, with the payment or refund as it stands,
    instead of waiting for a first request that will never finish."""
    settled = await (
        Refund.filter(payment_id=payment_id)
        .exclude(status=RefundStatus.PENDING)
        .values_list("id", flat=True)
    )
    ids = [str(refund_id) for refund_id in settled]
    payment = await Payment.get(id=payment_id)
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.PROCESSING):
        ids.append(payment_id)
    if ids:
        await IdempotencyKey.filter(resource_id__in=ids, completed=False).update(completed=True)


async def _reconcile_one(svc: PaymentService, payment_id: str) -> str:
    before = await Payment.get(id=payment_id)
    try:
        outcome = await sync_payment(svc, SYSTEM, payment_id)
    except DomainError:  # an answer may still be on its way: next round
        return "waiting"
    if outcome.error is not None:
        return "failed"
    if outcome.payment is not None and outcome.payment.version != before.version:
        return "changed"
    return "unchanged"
