"""The phase-3 transaction: the one place where a payment's status or amounts change.

`apply` locks the payment (and checks its version, so it is correct on SQLite too),
lets a decision change it through `Tx` (moves the table in models/rules.py allows,
refunds settled, disputes recorded), appends the audit events, writes the outbox, and
commits; only then are the status changes published (events.py keeps the log and
the broadcast; decisions.py the decisions the use cases hand to `apply`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from gateways.base import ChargeState, DisputeReport, RefundOutcome, RefundReport
from models import event_log, rules, snapshots
from models.errors import DomainError, ErrorCode
from models.ids import new_id
from models.rules import EventSource, OrderStatus, PaymentStatus, RefundStatus, Reported
from models.spans import span
from models.tables import Dispute, IdempotencyKey, Order, OrderLine, Payment, Product, Refund
from models.write_path.events import Committed, append_events, committed
from models.write_path.inputs import checked_text

if TYPE_CHECKING:
    from models.write_path.service import PaymentService


log = logging.getLogger("payql.payments")


@dataclass
class Outcome:
    """A command's result: what it produced, and the expected failure if there was one."""

    order: Order | None = None
    payment: Payment | None = None
    refund: Refund | None = None
    client_secret: str | None = None
    error: DomainError | None = None


class Busy(DomainError):
    """The payment kept changing under us: nothing was done; the same request may retry."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.INVALID_STATE, "the payment is changing too fast: try again")


class PaymentUnknown(Exception):
    """A webhook about a payment this service has not recorded (yet)."""


class _Conflict(Exception):
    """The row changed under us (optimistic check failed): read again and retry."""


@dataclass
class Tx:
    """A payment being changed inside `apply`'s transaction."""

    payment: Payment
    conn: Any
    now: datetime
    source: EventSource
    events: list[dict[str, Any]] = field(default_factory=list)
    # The payment's refunds and disputes, kept current as the change makes them, so
    # that each event's snapshot has the lists as they stood at that event.
    refunds: dict[str, Refund] = field(default_factory=dict)
    disputes: dict[str, Dispute] = field(default_factory=dict)

    def track(self, row: Refund | Dispute) -> None:
        """A refund or dispute this change made or changed: in the lists from now."""
        if isinstance(row, Refund):
            self.refunds[row.id] = row
        else:
            self.disputes[row.id] = row

    def _state(self) -> dict[str, Any]:
        return snapshots.encode(
            snapshots.payment_state(self.payment),
            sorted(self.refunds.values(), key=lambda r: (r.created_at, r.id)),
            sorted(self.disputes.values(), key=lambda d: d.created_at),
        )

    def event(self, type_: str, **data: Any) -> None:
        """An audit event that leaves the status where it is; it carries the payment as
        it stands at this point of the change."""
        self.events.append(
            {
                "type": type_,
                "from_status": None,
                "to_status": None,
                "data": data,
                "state": self._state(),
            }
        )

    def move(
        self, status: PaymentStatus, type_: str = "payment.status_changed", **data: Any
    ) -> None:
        current = self.payment.status
        if status is current:
            return
        rules.require_transition(current, status)
        self.payment.status = status
        if status not in rules.AWAITING_CUSTOMER:
            self.payment.client_secret = None
            self.payment.redirect_url = None
        if status is not PaymentStatus.PENDING and self.payment.processed_at is None:
            self.payment.processed_at = self.now
        if status is PaymentStatus.COMPLETED and self.payment.completed_at is None:
            self.payment.completed_at = self.now
        self.events.append(
            {
                "type": type_,
                "from_status": current,
                "to_status": status,
                "data": data,
                "state": self._state(),
            }
        )

    def absorb(self, state: ChargeState, **data: Any) -> Reported:
        """Take the gateway's word for the payment, where the table allows it."""
        p = self.payment
        verdict, status = rules.on_report(p.status, state.status.value)
        if verdict is Reported.IGNORE:
            orphaned = status in (PaymentStatus.COMPLETED, PaymentStatus.AUTHORIZED) and (
                p.status in (PaymentStatus.CANCELLED, PaymentStatus.FAILED)
            )
            if orphaned:
                log.error(
                    "ALERT: the gateway took money for %s payment %s: refund or void it at %s",
                    p.status.value,
                    p.id,
                    p.gateway,
                )
            self.event(
                "payment.orphaned_charge" if orphaned else "payment.transition_ignored",
                reported=status.value,
                current=p.status.value,
                gatewayStatus=state.status.value,
                **data,
            )
            return verdict
        if state.transaction_id:
            p.gateway_transaction_id = state.transaction_id
        if state.card is not None:
            p.card_brand = state.card.brand
            p.card_last4 = state.card.last4
            p.card_exp_month = state.card.exp_month
            p.card_exp_year = state.card.exp_year
        if status in rules.AWAITING_CUSTOMER and state.client_secret:
            p.client_secret = state.client_secret
        if status in rules.AWAITING_CUSTOMER and state.redirect_url:
            p.redirect_url = state.redirect_url[:2048]
        if status is PaymentStatus.FAILED:
            p.failure_code = state.failure_code or "payment_failed"
            p.failure_message = state.failure_message or "The payment failed."
        if status is PaymentStatus.COMPLETED and verdict is Reported.MOVE:
            p.captured = state.amount_captured or p.amount
        self.move(status, gatewayStatus=state.status.value, **data)
        if status is PaymentStatus.COMPLETED and verdict is Reported.MOVE and p.refunded:
            # A refund was reported before the charge itself (events out of order).
            self.move(rules.status_after_refunds(p.captured, p.refunded), **data)
        return verdict

    async def settle_refund(
        self,
        refund: Refund,
        outcome: RefundOutcome,
        gateway_refund_id: str | None,
        failure_reason: str | None = None,
    ) -> None:
        """A refund of this payment reached its end at the gateway (or has its id there)."""
        self.track(refund)
        if refund.status is not RefundStatus.PENDING or outcome is RefundOutcome.PENDING:
            if gateway_refund_id and not refund.gateway_refund_id:
                refund.gateway_refund_id = gateway_refund_id
                await refund.save(using_db=self.conn, update_fields=["gateway_refund_id"])
                self.event("refund.updated", refundId=refund.id, gatewayRefundId=gateway_refund_id)
            return
        p = self.payment
        p.refund_pending -= refund.amount
        refund.gateway_refund_id = gateway_refund_id or refund.gateway_refund_id
        refund.completed_at = self.now
        if outcome is RefundOutcome.SUCCEEDED:
            refund.status = RefundStatus.SUCCEEDED
            p.refunded += refund.amount
            self.event("refund.succeeded", refundId=refund.id, amount=refund.amount)
            target = rules.status_after_refunds(p.captured, p.refunded)
            if target is p.status or rules.can_transition(p.status, target):
                self.move(target, refundId=refund.id)
            else:  # money went back on a payment we never saw captured: keep it, say so
                log.error("ALERT: refund %s on %s payment %s", refund.id, p.status.value, p.id)
                self.event(
                    "payment.transition_ignored",
                    reported=target.value,
                    current=p.status.value,
                    refundId=refund.id,
                )
        else:
            refund.status = RefundStatus.FAILED
            refund.failure_reason = checked_text(failure_reason, "reason", 500) or "failed"
            self.event("refund.failed", refundId=refund.id, reason=refund.failure_reason)
        await refund.save(
            using_db=self.conn,
            update_fields=["status", "gateway_refund_id", "completed_at", "failure_reason"],
        )

    async def reconcile_refunds(self, reports: Sequence[RefundReport]) -> None:
        """Refunds as the gateway knows them: ours settle, others (made in the gateway's
        dashboard) become refunds here too."""
        p = self.payment
        for report in reports:
            match = Q(gateway_refund_id=report.refund_id)
            if report.reference:
                match |= Q(id=report.reference)
            refund = await Refund.filter(match, payment_id=p.id).using_db(self.conn).first()
            if refund is None:
                if report.status is RefundOutcome.FAILED:
                    continue
                refund = await Refund.create(
                    using_db=self.conn,
                    id=new_id("re"),
                    payment_id=p.id,
                    amount=report.amount,
                    currency=p.currency,
                    reason="made at the gateway",
                    gateway_refund_id=report.refund_id,
                )
                self.track(refund)
                p.refund_pending += report.amount
                self.event(
                    "refund.created", refundId=refund.id, amount=refund.amount, origin="gateway"
                )
            elif refund.status is RefundStatus.FAILED and report.status is RefundOutcome.SUCCEEDED:
                # We took it for failed (an ambiguous answer); the gateway made it.
                log.error(
                    "ALERT: refund %s of %s recorded failed was made at the gateway",
                    refund.id,
                    p.id,
                )
                self.track(refund)
                refund.status = RefundStatus.SUCCEEDED
                refund.gateway_refund_id = report.refund_id
                refund.failure_reason = None
                await refund.save(
                    using_db=self.conn,
                    update_fields=["status", "gateway_refund_id", "failure_reason"],
                )
                p.refunded += refund.amount
                self.event("refund.corrected", refundId=refund.id, amount=refund.amount)
                target = rules.status_after_refunds(p.captured, p.refunded)
                if target is p.status or rules.can_transition(p.status, target):
                    self.move(target, refundId=refund.id)
                continue
            elif refund.status is RefundStatus.SUCCEEDED and report.status is RefundOutcome.FAILED:
                log.error(
                    "ALERT: refund %s of %s failed at the gateway after succeeding", refund.id, p.id
                )
                self.event("refund.reversed", refundId=refund.id, reason=report.failure_reason)
                continue
            await self.settle_refund(refund, report.status, report.refund_id, report.failure_reason)

    async def record_dispute(self, report: DisputeReport, event_type: str) -> None:
        p = self.payment
        dispute = await Dispute.filter(id=report.dispute_id).using_db(self.conn).first()
        if dispute is None:
            dispute = await Dispute.create(
                using_db=self.conn,
                id=report.dispute_id,
                payment_id=p.id,
                amount=report.amount,
                currency=p.currency,  # a dispute is in its charge's currency
                status=report.status,
                reason=report.reason,
            )
        else:
            dispute.status = report.status
            dispute.amount = report.amount
            await dispute.save(using_db=self.conn, update_fields=["status", "amount", "updated_at"])
        self.track(dispute)
        kind = event_type.rsplit(".", 1)[-1]  # created, updated, closed, funds_withdrawn, …
        self.event(
            f"dispute.{kind}",
            disputeId=report.dispute_id,
            status=report.status,
            amount=report.amount,
            reason=report.reason,
        )


_TRACKED = (
    "status",
    "gateway_transaction_id",
    "client_secret",
    "redirect_url",
    "failure_code",
    "failure_message",
    "card_brand",
    "card_last4",
    "card_exp_month",
    "card_exp_year",
    "captured",
    "refunded",
    "refund_pending",
    "processed_at",
    "completed_at",
)


def snapshot(payment: Payment) -> dict[str, Any]:
    return {name: getattr(payment, name) for name in _TRACKED}


Decide = Callable[[Tx], Awaitable[None]]


async def apply(
    svc: PaymentService,
    payment_id: str,
    decide: Decide,
    source: EventSource,
    complete: int | None = None,
) -> Payment:
    """Change one payment in one transaction; commit, then publish.

    The row is locked (PostgreSQL) and also checked by version, so the change is
    correct on any database. `decide` may raise a DomainError: nothing is written.
    """
    for _attempt in range(5):
        try:
            async with (
                span(
                    "payql.apply",
                    {"payql.payment.id": payment_id, "payql.source": source.value},
                ),
                in_transaction() as conn,
            ):
                # Before any write: this payment's changes are ordered by the xids
                # their transactions get at their first write (models/event_log.py).
                await event_log.serialize(conn, payment_id)
                payment = await Payment.select_for_update().using_db(conn).get(id=payment_id)
                before = snapshot(payment)
                version = payment.version
                tx = Tx(payment=payment, conn=conn, now=svc.clock(), source=source)
                for refund in await Refund.filter(payment_id=payment_id).using_db(conn):
                    tx.track(refund)
                for dispute in await Dispute.filter(payment_id=payment_id).using_db(conn):
                    tx.track(dispute)
                await decide(tx)
                changed = {k: v for k, v in snapshot(payment).items() if before[k] != v}
                if changed and not tx.events:  # every change is an event
                    tx.event("payment.updated", fields=sorted(changed))
                if tx.events:
                    updated = (
                        await Payment.filter(id=payment_id, version=version)
                        .using_db(conn)
                        .update(**changed, version=version + 1, updated_at=tx.now)
                    )
                    if updated != 1:
                        raise _Conflict
                    payment.version = version + 1
                    payment.updated_at = tx.now
                    for spec in tx.events:
                        spec["state"]["payment"]["updated_at"] = tx.now.isoformat()
                if "status" in changed:
                    await follow_payments(payment.order_id, conn)
                if complete is not None:
                    await IdempotencyKey.filter(id=complete).using_db(conn).update(completed=True)
                telling = await svc.outbox.prepare(conn, payment, tx.events)
                events = await append_events(conn, payment, source, tx.now, tx.events)
                # The outbox, in this transaction: sent only if this commits.
                told = 0
                if telling is not None:
                    told = await svc.outbox.write(
                        conn, payment, telling, events, tx.now, svc.installation
                    )
        except _Conflict:
            continue
        if told and svc.outbox.wake is not None:
            svc.outbox.wake()
        await publish(svc, committed(events))
        return payment
    raise Busy()


async def publish(svc: PaymentService, change: Committed | None) -> None:
    """Say, after the commit, that the log grew (live status reads it from there)."""
    if change is None:
        return
    try:
        await svc.publisher.publish(change)
    except Exception:  # the change is committed; live status finds it in the log anyway
        log.exception("could not publish %s of %s", change.event_id, change.payment_id)


async def follow_payments(order_id: str, conn: Any) -> None:
    """The order's status follows its payments; a full refund puts the stock back."""
    order = await Order.select_for_update().using_db(conn).get(id=order_id)
    rows = (
        await Payment.filter(order_id=order_id)
        .using_db(conn)
        .values_list("status", "captured", "refunded")
    )
    status = rules.order_status((PaymentStatus(s), c, r) for s, c, r in rows)
    if status is order.status:
        return
    order.status = status
    fields = ["status", "version", "updated_at"]
    if status is OrderStatus.REFUNDED and not order.stock_restored:
        # In sku order, as createOrder reserves, so two restores never wait on each other.
        for line in await OrderLine.filter(order_id=order_id).order_by("sku").using_db(conn):
            await (
                Product.filter(sku=line.sku).using_db(conn).update(stock=F("stock") + line.quantity)
            )
        order.stock_restored = True
        fields.append("stock_restored")
    order.version += 1
    await order.save(using_db=conn, update_fields=fields)
