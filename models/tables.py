"""The Tortoise models. Amounts are integers in minor units.

Only models/write_path/ writes payments, refunds and their events.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.rules import (
    CaptureMethod,
    EventSource,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    RefundStatus,
)


class Product(Model):
    sku = fields.CharField(max_length=64, primary_key=True)
    name = fields.CharField(max_length=200)
    price = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    stock = fields.IntField()

    class Meta:
        table = "product"


class Counter(Model):
    """Named numbers: the order number sequence, this installation's id."""

    name = fields.CharField(max_length=32, primary_key=True)
    value = fields.BigIntField(default=0)

    class Meta:
        table = "counter"


class Order(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    number = fields.CharField(max_length=32, unique=True)
    customer_id = fields.CharField(max_length=64, db_index=True)
    customer_name = fields.CharField(max_length=200)
    customer_email = fields.CharField(max_length=254, db_index=True)
    currency = fields.CharField(max_length=3)
    total = fields.BigIntField()
    status = fields.CharEnumField(OrderStatus, max_length=24, default=OrderStatus.PENDING)
    billing_address: Any = fields.JSONField(null=True)
    stock_restored = fields.BooleanField(default=False)
    version = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    updated_at = fields.DatetimeField(auto_now=True)

    lines: fields.ReverseRelation[OrderLine]
    payments: fields.ReverseRelation[Payment]

    class Meta:
        table = "customer_order"


class OrderLine(Model):
    id = fields.IntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="lines", on_delete=fields.RESTRICT
    )
    position = fields.IntField()
    sku = fields.CharField(max_length=64)
    name = fields.CharField(max_length=200)
    quantity = fields.IntField()
    unit_price = fields.BigIntField()

    order_id: str

    class Meta:
        table = "order_line"
        unique_together = (("order", "position"),)


class Payment(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="payments", on_delete=fields.RESTRICT
    )
    customer_id = fields.CharField(max_length=64, db_index=True)
    amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    status = fields.CharEnumField(PaymentStatus, max_length=24, default=PaymentStatus.PENDING)
    payment_method = fields.CharEnumField(PaymentMethod, max_length=24)
    capture_method = fields.CharEnumField(CaptureMethod, max_length=12)
    gateway = fields.CharField(max_length=32)
    gateway_transaction_id = fields.CharField(max_length=255, null=True, db_index=True)
    client_secret = fields.CharField(max_length=255, null=True)
    # Where the customer goes to act (PayPal's approval page), while they must.
    redirect_url = fields.CharField(max_length=2048, null=True)
    failure_code = fields.CharField(max_length=64, null=True)
    failure_message = fields.CharField(max_length=500, null=True)
    billing_address: Any = fields.JSONField(null=True)
    card_brand = fields.CharField(max_length=32, null=True)
    card_last4 = fields.CharField(max_length=4, null=True)
    card_exp_month = fields.IntField(null=True)
    card_exp_year = fields.IntField(null=True)
    metadata: Any = fields.JSONField(default=dict)
    # Where the attempt came from, for card-testing limits (never shown to clients).
    client_ip = fields.CharField(max_length=45, null=True, db_index=True)
    captured = fields.BigIntField(default=0)
    refunded = fields.BigIntField(default=0)
    refund_pending = fields.BigIntField(default=0)
    version = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    processed_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    order_id: str
    refunds: fields.ReverseRelation[Refund]
    events: fields.ReverseRelation[PaymentEvent]

    class Meta:
        table = "payment"


class Refund(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    payment: fields.ForeignKeyRelation[Payment] = fields.ForeignKeyField(
        "models.Payment", related_name="refunds", on_delete=fields.RESTRICT
    )
    amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    reason = fields.CharField(max_length=500, null=True)
    status = fields.CharEnumField(RefundStatus, max_length=12, default=RefundStatus.PENDING)
    gateway_refund_id = fields.CharField(max_length=255, null=True)
    failure_reason = fields.CharField(max_length=500, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    completed_at = fields.DatetimeField(null=True)

    payment_id: str

    class Meta:
        table = "refund"


class PaymentEvent(Model):
    """The audit trail: appended in the transaction of the change, never updated.

    Its position in the log is (xid, id): see models/event_log.py. `snapshot` is the
    payment as this change left it (models/snapshots.py); events from before snapshots
    have none."""

    id = fields.BigIntField(primary_key=True)
    payment: fields.ForeignKeyRelation[Payment] = fields.ForeignKeyField(
        "models.Payment", related_name="events", on_delete=fields.RESTRICT
    )
    type = fields.CharField(max_length=64)
    from_status = fields.CharEnumField(PaymentStatus, max_length=24, null=True)
    to_status = fields.CharEnumField(PaymentStatus, max_length=24, null=True)
    source = fields.CharEnumField(EventSource, max_length=12)
    data: Any = fields.JSONField(default=dict)
    # The writing transaction's id on PostgreSQL; 0 on SQLite and for older events.
    xid = fields.BigIntField(default=0)
    snapshot: Any = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    payment_id: str

    class Meta:
        table = "payment_event"
        indexes = (("xid", "id"),)


class IdempotencyKey(Model):
    """A caller's key for one operation: the first request's fingerprint and result."""

    id = fields.BigIntField(primary_key=True)
    scope = fields.CharField(max_length=160)
    key = fields.CharField(max_length=255)
    fingerprint = fields.CharField(max_length=64)
    # The payment or refund it made (reconciliation completes the keys of what it
    # settles: by this).
    resource_id = fields.CharField(max_length=40, db_index=True)
    completed = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "idempotency_key"
        unique_together = (("scope", "key"),)


class WebhookEvent(Model):
    """Every accepted webhook, once: the unique (gateway, event_id) dedupes retries."""

    id = fields.BigIntField(primary_key=True)
    gateway = fields.CharField(max_length=32)
    event_id = fields.CharField(max_length=255)
    type = fields.CharField(max_length=100)
    payment_id = fields.CharField(max_length=40, null=True, db_index=True)
    outcome = fields.CharField(max_length=16)  # applied, ignored
    payload: Any = fields.JSONField(default=dict)
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_event"
        unique_together = (("gateway", "event_id"),)


class Dispute(Model):
    """A chargeback the gateway reported, kept as its latest state."""

    id = fields.CharField(max_length=255, primary_key=True)  # the gateway's dispute id
    payment: fields.ForeignKeyRelation[Payment] = fields.ForeignKeyField(
        "models.Payment", related_name="disputes", on_delete=fields.RESTRICT
    )
    amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    status = fields.CharField(max_length=32)
    reason = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    payment_id: str

    class Meta:
        table = "dispute"


class WebhookEndpoint(Model):
    """A merchant's system that wants signed events (createWebhookEndpoint). Deleting
    one turns it off and keeps its deliveries' history."""

    id = fields.CharField(max_length=40, primary_key=True)  # whe_…
    url = fields.CharField(max_length=2048)
    event_types: Any = fields.JSONField(default=list)  # event type names, or ["*"]
    # Signs its deliveries; shown once, when the endpoint is made or its secret rolled.
    secret = fields.CharField(max_length=100)
    # After a roll, the secret before it signs beside the new one until this time
    # (24 h), so the receiver can switch without refusing a delivery.
    previous_secret = fields.CharField(max_length=100, null=True)
    previous_secret_expires_at = fields.DatetimeField(null=True)
    description = fields.CharField(max_length=200, null=True)
    active = fields.BooleanField(default=True, db_index=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_endpoint"


class Notification(Model):
    """The outbox: one delivery to make (a customer's email, a merchant's webhook),
    written in the transaction of the change it tells of, and delivered at least once
    by the dispatcher (models/dispatcher.py), which records every attempt here."""

    id = fields.CharField(max_length=40, primary_key=True)  # ntf_…
    channel = fields.CharField(max_length=16)  # email, webhook
    # The event it tells of (evt_<position>): the same for every delivery of it, so
    # that receivers can drop repeats.
    event_id = fields.CharField(max_length=40, db_index=True)
    event_type = fields.CharField(max_length=64)
    payment_id = fields.CharField(max_length=40, db_index=True)
    endpoint_id = fields.CharField(max_length=40, null=True, db_index=True)
    recipient = fields.CharField(max_length=2048)  # an email address, or the endpoint's URL
    payload: Any = fields.JSONField(default=dict)
    status = fields.CharField(max_length=16, default="pending", db_index=True)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    give_up_at = fields.DatetimeField()
    # Held by one dispatcher while it delivers: claimed by a conditional update.
    claim = fields.CharField(max_length=32, null=True)
    claimed_until = fields.DatetimeField(null=True)
    last_error = fields.CharField(max_length=500, null=True)
    # A redelivery names the delivery it repeats.
    redelivery_of = fields.CharField(max_length=40, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notification"
