"""The payment service: its settings and gateways, and the use cases as its methods.

Each use case is a function of its own module (orders, pay, capture_cancel, refunds,
reports) taking the service first, so it is bound here as a method; every change they
make goes through core.apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateways.base import Gateway
from models.errors import DomainError, ErrorCode, validation
from models.outbox import Outbox
from models.rules import OFFLINE_METHODS, PaymentMethod
from models.tables import Payment
from models.write_path import capture_cancel, orders, pay, refunds, reports
from models.write_path.events import NoPublisher, Publisher, utcnow
from models.write_path.pay import AttemptLimits

OFFLINE_GATEWAY = "manual"


@dataclass
class PaymentService:
    gateways: Mapping[str, Gateway]
    publisher: Publisher = field(default_factory=NoPublisher)
    # Gateways configured but not working (a plug-in that failed to load): name -> why.
    unavailable: Mapping[str, str] = field(default_factory=dict)
    refund_window: timedelta = timedelta(days=180)
    card_gateway: str = "simulated"
    paypal_gateway: str = "simulated"
    clock: Callable[[], datetime] = utcnow
    # How long a request waits for a concurrent one with the same idempotency key.
    idempotency_wait: float = 30.0
    # No gateway call outlasts this: a charge not found at the gateway after it never
    # arrived there.
    charge_timeout: timedelta = timedelta(minutes=2)
    attempt_limits: AttemptLimits = field(default_factory=lambda: AttemptLimits())
    # Customers' emails and merchants' webhooks, written with each change.
    outbox: Outbox = field(default_factory=Outbox)
    # In every public event id (models/event_log.installation); set at start-up.
    installation: str = ""

    # -- which gateway ----------------------------------------------------------

    def gateway_for(self, method: PaymentMethod, name: str | None) -> Gateway:
        if name is None:
            if method in OFFLINE_METHODS:
                name = OFFLINE_GATEWAY
            elif method is PaymentMethod.PAYPAL:
                name = self.paypal_gateway
            else:
                name = self.card_gateway
            if name not in self.gateways and name not in self.unavailable:
                raise validation(f"this service takes no {method.value} payments", "paymentMethod")
        gateway = self.gateways.get(name)
        if gateway is None and name in self.unavailable:
            raise DomainError(ErrorCode.GATEWAY_UNAVAILABLE, self.unavailable[name], "gateway")
        if gateway is None:
            raise validation(
                f"unknown gateway {name!r}; this service has {', '.join(sorted(self.gateways))}",
                "gateway",
            )
        if method.value not in gateway.methods:
            raise validation(f"the {name} gateway does not take {method.value}", "paymentMethod")
        return gateway

    def gateway_of(self, payment: Payment) -> Gateway:
        gateway = self.gateways.get(payment.gateway)
        if gateway is None and payment.gateway in self.unavailable:
            raise DomainError(ErrorCode.GATEWAY_UNAVAILABLE, self.unavailable[payment.gateway])
        if gateway is None:
            raise DomainError(
                ErrorCode.GATEWAY_ERROR, f"the {payment.gateway} gateway is not configured"
            )
        return gateway

    # -- the use cases: each module's function, as a method --------------------

    create_order = orders.create_order
    process_payment = pay.process_payment
    capture_payment = capture_cancel.capture_payment
    cancel_payment = capture_cancel.cancel_payment
    mark_payment_received = capture_cancel.mark_payment_received
    refund_payment = refunds.refund_payment
    apply_webhook = reports.apply_webhook
    sync_payment = reports.sync_payment
    reconcile = reports.reconcile
