"""The outbox: the notifications a change makes, written in the change's own
transaction (models/write_path/core.apply writes it), so that a change that
rolls back sends nothing and one that commits loses nothing. The dispatcher
(models/dispatcher.py) delivers them.

Also the merchants' webhook endpoints (admins register them) and redelivery.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import event_log, money
from models.access import Actor
from models.errors import DomainError, ErrorCode, not_found, validation
from models.ids import new_id
from models.notifications import CUSTOMER_EMAILS, check_event_types, notifiable, wants
from models.tables import (
    Notification,
    Order,
    OrderLine,
    Payment,
    PaymentEvent,
    Refund,
    WebhookEndpoint,
)
from models.targets import TargetRefused, TargetUnresolved, check_target

MAX_ENDPOINTS = 50
# After a roll, the old secret signs beside the new one this long.
SECRET_OVERLAP = timedelta(hours=24)
STATUSES = ("pending", "delivered", "failed")


def payment_snapshot(payment: Payment, order_number: str | None = None) -> dict[str, Any]:
    """A payment as a merchant's system is told of it: never a client secret, a
    token or a card number (the brand and last four digits only)."""
    currency = payment.currency

    def major(minor: int) -> str:
        return str(money.to_major(minor, currency))

    card = None
    if payment.card_brand and payment.card_last4:
        card = {"brand": payment.card_brand, "last4": payment.card_last4}
    return {
        "object": "payment",
        "id": payment.id,
        "orderId": payment.order_id,
        "orderNumber": order_number,
        "customerId": payment.customer_id,
        "status": payment.status.value,
        "amount": major(payment.amount),
        "currency": currency,
        "paymentMethod": payment.payment_method.value,
        "captureMethod": payment.capture_method.value,
        "gateway": payment.gateway,
        "capturedAmount": major(payment.captured),
        "refundedAmount": major(payment.refunded),
        "failureCode": payment.failure_code,
        "failureMessage": payment.failure_message,
        "card": card,
        "metadata": dict(payment.metadata or {}),
    }


@dataclass(frozen=True)
class Prepared:
    """What `Outbox.write` needs, read by `Outbox.prepare`."""

    kinds: list[str | None]  # the notification each audit event makes, if any
    endpoints: list[WebhookEndpoint]
    order: Order
    lines: list[OrderLine]
    refunds: dict[str, Refund]


@dataclass
class Outbox:
    # Customers get emails (a receipt, a decline, a refund).
    emails: bool = False
    shop: str = "payql"
    # How long a delivery is tried before it is given up.
    give_up_after: timedelta = timedelta(days=3)
    # Webhook endpoints may be on private addresses (development only).
    allow_private: bool = True
    # Told after a commit that wrote notifications (the in-process dispatcher wakes).
    wake: Callable[[], None] | None = None

    async def prepare(
        self, conn: Any, payment: Payment, specs: Sequence[Mapping[str, Any]]
    ) -> Prepared | None:
        """Read what the notifications of these audit events need (endpoints, the order
        and its lines, refunds). None: nothing to tell."""
        kinds = [notifiable(spec["type"], spec["to_status"]) for spec in specs]
        if not any(kinds):
            return None
        refund_ids = [
            spec["data"]["refundId"]
            for spec, kind in zip(specs, kinds, strict=True)
            if kind and kind.startswith("refund.") and spec["data"].get("refundId")
        ]
        order = await Order.filter(id=payment.order_id).using_db(conn).get()
        return Prepared(
            kinds=kinds,
            endpoints=await WebhookEndpoint.filter(active=True).using_db(conn),
            order=order,
            lines=await OrderLine.filter(order_id=order.id).order_by("position").using_db(conn),
            refunds={r.id: r for r in await Refund.filter(id__in=refund_ids).using_db(conn)},
        )

    async def write(
        self,
        conn: Any,
        payment: Payment,
        prepared: Prepared,
        events: Sequence[PaymentEvent],
        now: datetime,
        installation: str = "",
    ) -> int:
        """Write the notifications of these audit events, in the caller's transaction."""
        order = prepared.order
        rows: list[Notification] = []

        def row(channel: str, kind: str, public_id: str, **values: Any) -> Notification:
            return Notification(
                id=new_id("ntf"),
                channel=channel,
                event_id=public_id,
                event_type=kind,
                payment_id=payment.id,
                next_attempt_at=now,
                give_up_at=now + self.give_up_after,
                **values,
            )

        for event, kind in zip(events, prepared.kinds, strict=True):
            if kind is None:
                continue
            public_id = event_log.public_id(installation, event.id)
            data: dict[str, Any] = {"object": payment_snapshot(payment, order.number)}
            refund = prepared.refunds.get(str(event.data.get("refundId")))
            if kind.startswith("refund.") and refund is not None:
                data["refund"] = {
                    "object": "refund",
                    "id": refund.id,
                    "amount": str(money.to_major(refund.amount, refund.currency)),
                    "currency": refund.currency,
                    "status": refund.status.value,
                    "reason": refund.reason,
                    "failureReason": refund.failure_reason,
                }
            if kind == "dispute.created":
                amount = int(event.data.get("amount") or 0)
                data["dispute"] = {
                    "object": "dispute",
                    "id": event.data.get("disputeId"),
                    "amount": str(money.to_major(amount, order.currency)),
                    "status": event.data.get("status"),
                    "reason": event.data.get("reason"),
                }
            body = {"id": public_id, "type": kind, "created": int(now.timestamp()), "data": data}
            for endpoint in prepared.endpoints:
                if wants(endpoint.event_types, kind):
                    rows.append(
                        row(
                            "webhook",
                            kind,
                            public_id,
                            endpoint_id=endpoint.id,
                            recipient=endpoint.url,
                            payload={"body": body},
                        )
                    )
            if self.emails and kind in CUSTOMER_EMAILS:
                context = self._email_context(payment, prepared, refund)
                rows.append(
                    row("email", kind, public_id, recipient=order.customer_email, payload=context)
                )
        if rows:
            await Notification.bulk_create(rows, using_db=conn)
        return len(rows)

    def _email_context(
        self, payment: Payment, prepared: Prepared, refund: Refund | None
    ) -> dict[str, Any]:
        """What the customer's email says, as it stands now (models/notifications.py
        renders it). Amounts in minor units."""
        order, lines = prepared.order, prepared.lines
        context: dict[str, Any] = {
            "to": order.customer_email,
            "customerName": order.customer_name,
            "shop": self.shop,
            "orderNumber": order.number,
            "paymentId": payment.id,
            "amount": payment.amount,
            "currency": payment.currency,
            "captured": payment.captured,
            "refundedTotal": payment.refunded,
            "paymentMethod": payment.payment_method.value,
            "failureCode": payment.failure_code,
            "failureMessage": payment.failure_message,
            "lines": [
                {
                    "name": line.name,
                    "quantity": line.quantity,
                    "total": line.unit_price * line.quantity,
                }
                for line in lines
            ],
            "card": (
                {"brand": payment.card_brand, "last4": payment.card_last4}
                if payment.card_brand and payment.card_last4
                else None
            ),
        }
        if refund is not None:
            context["refundAmount"] = refund.amount
        return context

    # -- merchants' endpoints ------------------------------------------------------------

    async def create_endpoint(
        self, actor: Actor, url: str, event_types: Sequence[str], description: str | None
    ) -> tuple[WebhookEndpoint, str]:
        """A new endpoint and its signing secret (shown this once)."""
        actor.require_admin("register webhook endpoints")
        url = url.strip()
        try:
            await check_target(url, self.allow_private)
        except (TargetRefused, TargetUnresolved) as exc:
            raise validation(str(exc), "url") from None
        try:
            chosen = check_event_types(event_types)
        except ValueError as exc:
            raise validation(str(exc), "eventTypes") from None
        if description is not None and len(description.strip()) > 200:
            raise validation("description is longer than 200 characters", "description")
        secret = f"whsec_{secrets.token_urlsafe(32)}"
        # Counted and made in one transaction, one creation at a time: two made at
        # once would each count 49 and make the 51st.
        async with in_transaction() as conn:
            await event_log.hold(conn, "webhook-endpoints")
            if await WebhookEndpoint.filter(active=True).using_db(conn).count() >= MAX_ENDPOINTS:
                raise DomainError(
                    ErrorCode.INVALID_STATE, f"at most {MAX_ENDPOINTS} endpoints: delete one first"
                )
            endpoint = await WebhookEndpoint.create(
                using_db=conn,
                id=new_id("whe"),
                url=url,
                event_types=chosen,
                secret=secret,
                description=(description or "").strip() or None,
            )
        return endpoint, secret

    async def roll_secret(
        self, actor: Actor, endpoint_id: str, now: datetime
    ) -> tuple[WebhookEndpoint, str]:
        """A new signing secret for an endpoint (shown this once). The one before it
        signs beside it for SECRET_OVERLAP, as Stripe rolls its endpoints' secrets, so
        the receiver can move to the new one without refusing a delivery meanwhile."""
        actor.require_admin("roll webhook endpoints' secrets")
        secret = f"whsec_{secrets.token_urlsafe(32)}"
        async with in_transaction() as conn:
            endpoint = (
                await WebhookEndpoint.filter(id=endpoint_id[:40], active=True)
                .using_db(conn)
                .select_for_update()
                .first()
            )
            if endpoint is None:
                raise not_found("webhook endpoint", "id")
            endpoint.previous_secret = endpoint.secret
            endpoint.previous_secret_expires_at = now + SECRET_OVERLAP
            endpoint.secret = secret
            await endpoint.save(
                using_db=conn,
                update_fields=["secret", "previous_secret", "previous_secret_expires_at"],
            )
        return endpoint, secret

    async def delete_endpoint(self, actor: Actor, endpoint_id: str, now: datetime) -> str:
        """Turn an endpoint off; its deliveries under way are given up."""
        actor.require_admin("delete webhook endpoints")
        changed = await WebhookEndpoint.filter(id=endpoint_id[:40], active=True).update(
            active=False, deleted_at=now
        )
        if changed != 1:
            raise not_found("webhook endpoint", "id")
        await Notification.filter(endpoint_id=endpoint_id, status="pending").update(
            status="failed", last_error="the endpoint was deleted"
        )
        return endpoint_id

    async def redeliver(self, actor: Actor, notification_id: str, now: datetime) -> Notification:
        """Send a webhook delivery again, as a new delivery of the same event."""
        actor.require_admin("redeliver webhooks")
        original = await Notification.get_or_none(id=notification_id[:40], channel="webhook")
        if original is None:
            raise not_found("webhook delivery", "id")
        endpoint = await WebhookEndpoint.get_or_none(id=original.endpoint_id, active=True)
        if endpoint is None:
            raise DomainError(ErrorCode.INVALID_STATE, "its endpoint was deleted")
        return await Notification.create(
            id=new_id("ntf"),
            channel="webhook",
            event_id=original.event_id,
            event_type=original.event_type,
            payment_id=original.payment_id,
            endpoint_id=endpoint.id,
            recipient=endpoint.url,
            payload=original.payload,
            next_attempt_at=now,
            give_up_at=now + self.give_up_after,
            redelivery_of=original.id,
        )

    async def endpoints(self, actor: Actor) -> list[WebhookEndpoint]:
        actor.require_admin("see webhook endpoints")
        return await WebhookEndpoint.filter(active=True).order_by("created_at")

    async def deliveries(
        self,
        actor: Actor,
        endpoint_id: str | None = None,
        payment_id: str | None = None,
        status: str | None = None,
        first: int = 50,
    ) -> list[Notification]:
        actor.require_admin("see webhook deliveries")
        if not 1 <= first <= 200:
            raise validation("first is between 1 and 200", "first")
        if status is not None and status not in STATUSES:
            raise validation(f"status is one of {', '.join(STATUSES)}", "status")
        query = Notification.filter(channel="webhook")
        if endpoint_id is not None:
            query = query.filter(endpoint_id=endpoint_id[:40])
        if payment_id is not None:
            query = query.filter(payment_id=payment_id[:40])
        if status is not None:
            query = query.filter(status=status)
        return await query.order_by("-created_at", "-id").limit(first)

    async def of_payment(self, actor: Actor, payment_id: str) -> list[Notification]:
        """Every notification a payment made (admins only; others see none)."""
        if not actor.admin:
            return []
        return await Notification.filter(Q(payment_id=payment_id)).order_by("created_at", "id")
