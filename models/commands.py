"""The one write path. Every change to a payment's status or amounts goes through here.

Each command runs in phases, so that no lock or transaction is held across a
gateway call:

1. record the intent in a transaction (the payment row, or a refund row that
   reserves its amount), together with the caller's idempotency key;
2. call the gateway, with an idempotency key derived from our row id, so a retry
   can never charge twice;
3. apply the outcome in one transaction (`_apply`): the transition the table in
   models/rules.py allows, its audit event, the order's status; commit, then publish.

Webhooks and syncs enter at phase 3.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from gateways.base import (
    ChargeRequest,
    ChargeState,
    Completes,
    DisputeReport,
    Gateway,
    GatewayError,
    GatewayEvent,
    GatewayUnavailable,
    RefundOutcome,
    RefundReport,
    RefundState,
)
from models import money, rules
from models.access import Actor, one_order, one_payment, owns, visible_payments
from models.errors import DomainError, ErrorCode, invalid_state, not_found, validation
from models.ids import new_id
from models.outbox import Outbox
from models.rules import (
    CaptureMethod,
    EventSource,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    RefundStatus,
    Reported,
)
from models.spans import span
from models.tables import (
    Counter,
    Dispute,
    IdempotencyKey,
    Order,
    OrderLine,
    Payment,
    PaymentEvent,
    Product,
    Refund,
    WebhookEvent,
)

log = logging.getLogger("payql.payments")

MAX_LINES = 100
MAX_QUANTITY = 1000
MAX_TEXT = 200
OFFLINE_GATEWAY = "manual"
# The service itself, reconciling.
SYSTEM = Actor(customer_id="payql", role="admin")
ORDER_COUNTER = "order"
# How long a buyer has to approve a payment at the gateway (PayPal's orders: 3 hours).
APPROVAL_WINDOW = timedelta(hours=3)
EVENT_COUNTER = "event"


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- what the entry points hand in and get back -------------------------------------


@dataclass(frozen=True)
class CustomerData:
    name: str
    email: str
    id: str | None = None


@dataclass(frozen=True)
class PaymentRequest:
    order_id: str
    method: PaymentMethod
    gateway: str | None = None
    token: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC
    billing_address: Mapping[str, str | None] | None = None
    metadata: Any = None  # checked by _metadata: Stripe-like string keys and values
    idempotency_key: str | None = None
    client_ip: str | None = None  # for card-testing limits; not part of the request's identity

    def fingerprint(self) -> str:
        body = {
            "orderId": self.order_id,
            "method": self.method.value,
            "gateway": self.gateway,
            "token": self.token,
            "amount": None if self.amount is None else str(self.amount.normalize()),
            "currency": self.currency,
            "captureMethod": self.capture_method.value,
            "billingAddress": self.billing_address,
            "metadata": self.metadata,
        }
        return _digest(body)


@dataclass
class Outcome:
    """A command's result: what it produced, and the expected failure if there was one."""

    order: Order | None = None
    payment: Payment | None = None
    refund: Refund | None = None
    client_secret: str | None = None
    error: DomainError | None = None


@dataclass(frozen=True)
class StatusChange:
    """A committed status change, as broadcast to subscribers: small and flat."""

    cursor: int
    payment_id: str
    order_id: str
    customer_id: str
    previous: PaymentStatus | None
    status: PaymentStatus
    occurred_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "cursor": self.cursor,
                "paymentId": self.payment_id,
                "orderId": self.order_id,
                "customerId": self.customer_id,
                "previous": self.previous.value if self.previous else None,
                "status": self.status.value,
                "occurredAt": self.occurred_at.isoformat(),
            },
            separators=(",", ":"),
        )


class Publisher(Protocol):
    async def publish(self, change: StatusChange) -> None: ...


class NoPublisher:
    async def publish(self, change: StatusChange) -> None:
        return None


# -- phase 3: applying a change ------------------------------------------------------


class Busy(DomainError):
    """The payment kept changing under us: nothing was done; the same request may retry."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.INVALID_STATE, "the payment is changing too fast: try again")


class PaymentUnknown(Exception):
    """A webhook about a payment this service has not recorded (yet)."""


class _Conflict(Exception):
    """The row changed under us (optimistic check failed): read again and retry."""


@dataclass
class _Tx:
    """A payment being changed inside `_apply`'s transaction."""

    payment: Payment
    conn: Any
    now: datetime
    source: EventSource
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, type_: str, **data: Any) -> None:
        self.events.append({"type": type_, "from_status": None, "to_status": None, "data": data})

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
            {"type": type_, "from_status": current, "to_status": status, "data": data}
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
        if refund.status is not RefundStatus.PENDING or outcome is RefundOutcome.PENDING:
            if gateway_refund_id and not refund.gateway_refund_id:
                refund.gateway_refund_id = gateway_refund_id
                await refund.save(using_db=self.conn, update_fields=["gateway_refund_id"])
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
            refund.failure_reason = _text(failure_reason, "reason", 500) or "failed"
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
            await Dispute.create(
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


def _snapshot(payment: Payment) -> dict[str, Any]:
    return {name: getattr(payment, name) for name in _TRACKED}


Decide = Callable[[_Tx], Awaitable[None]]


# -- the service -----------------------------------------------------------------------


def attempt_source(ip: str | None) -> str | None:
    """The address card-testing limits count by: an IPv4 address, or an IPv6 /64 (one
    client usually holds a whole /64, and could rotate within it)."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:45]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # an IPv4 client on a dual-stack socket
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass(frozen=True)
class AttemptLimits:
    """Card-testing protection: how many failed payments a customer, and a client IP,
    may have within `window` before new attempts are refused (0: no limit)."""

    per_customer: int = 10
    per_ip: int = 20
    window: timedelta = timedelta(minutes=15)


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

    # -- orders ------------------------------------------------------------------

    async def create_order(
        self,
        actor: Actor,
        lines: Sequence[tuple[str, int]],
        customer: CustomerData | None = None,
        billing_address: Mapping[str, str | None] | None = None,
    ) -> Order:
        quantities = _merge_lines(lines)
        owner = _order_customer(actor, customer)
        address = _address(billing_address, "billingAddress")
        async with in_transaction() as conn:
            products = {
                p.sku: p for p in await Product.filter(sku__in=list(quantities)).using_db(conn)
            }
            for index, sku in enumerate(quantities):
                if sku not in products:
                    raise DomainError(
                        ErrorCode.NOT_FOUND, f"no product with sku {sku!r}", f"lines.{index}.sku"
                    )
            currencies = {p.currency for p in products.values()}
            if len(currencies) > 1:
                raise DomainError(
                    ErrorCode.CURRENCY_MISMATCH,
                    f"an order has one currency; these lines mix {', '.join(sorted(currencies))}",
                    "lines",
                )
            # Reserve in one order (by sku) so that two orders never wait on each other.
            positions = {sku: index for index, sku in enumerate(quantities)}
            for sku, quantity in sorted(quantities.items()):
                index = positions[sku]
                reserved = (
                    await Product.filter(sku=sku, stock__gte=quantity)
                    .using_db(conn)
                    .update(stock=F("stock") - quantity)
                )
                if reserved != 1:
                    raise DomainError(
                        ErrorCode.OUT_OF_STOCK,
                        f"not enough {products[sku].name} in stock for {quantity}",
                        f"lines.{index}.quantity",
                    )
            total = sum(products[sku].price * q for sku, q in quantities.items())
            if total >= money.MAX_MINOR:
                raise validation("the order total is too large", "lines")
            now = self.clock()
            order = await Order.create(
                using_db=conn,
                id=new_id("ord"),
                number=await _next_order_number(conn, now),
                customer_id=owner.id,
                customer_name=owner.name,
                customer_email=owner.email,
                currency=currencies.pop(),
                total=total,
                billing_address=address,
            )
            await OrderLine.bulk_create(
                [
                    OrderLine(
                        order_id=order.id,
                        position=index,
                        sku=sku,
                        name=products[sku].name,
                        quantity=quantity,
                        unit_price=products[sku].price,
                    )
                    for index, (sku, quantity) in enumerate(quantities.items())
                ],
                using_db=conn,
            )
        return order

    # -- payments ----------------------------------------------------------------

    def gateway_for(self, method: PaymentMethod, name: str | None) -> Gateway:
        if name is None:
            if method in rules.OFFLINE_METHODS:
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

    async def _check_attempts(self, actor: Actor, client_ip: str | None, conn: Any) -> None:
        """Card testing: refuse a new attempt from a customer or an address with too
        many failed, or still unresolved, attempts lately. Admins are not limited.

        Runs in phase 1's transaction, holding a lock row per customer and per address
        until it commits: concurrent attempts are counted one after another, each
        seeing the ones before it."""
        limits = self.attempt_limits
        if actor.admin:
            return
        since = self.clock() - limits.window
        minutes = max(1, int(limits.window.total_seconds() // 60))
        checks = [(limits.per_customer, "customer_id", actor.customer_id, "this customer")]
        if client_ip:
            checks.append((limits.per_ip, "client_ip", client_ip, "this address"))
        for limit, column, value, who in checks:
            if not limit:
                continue
            name = "try:" + hashlib.sha256(f"{column}:{value}".encode()).hexdigest()[:24]
            await Counter.bulk_create(
                [Counter(name=name, value=0)], ignore_conflicts=True, using_db=conn
            )
            await Counter.select_for_update().using_db(conn).get(name=name)
            # Failed ones within the window, and ones still unresolved that began within
            # the time a gateway call can take (a tester's attempts in flight; not a
            # customer's abandoned 3-D Secure page).
            recent = self.clock() - self.charge_timeout
            attempts = (
                await Payment.filter(
                    Q(status=PaymentStatus.FAILED, created_at__gte=since)
                    | Q(status__in=list(rules.UNRESOLVED), created_at__gte=recent),
                    **{column: value},
                )
                .using_db(conn)
                .count()
            )
            if attempts >= limit:
                log.warning(
                    "card testing? refused a payment attempt: %d failed or unresolved from "
                    "%s (customer %s, address %s) within %d minutes",
                    attempts,
                    who,
                    actor.customer_id,
                    client_ip,
                    minutes,
                )
                raise DomainError(
                    ErrorCode.RATE_LIMITED,
                    f"too many failed payment attempts from {who}: try again in {minutes} minutes",
                )

    async def process_payment(self, actor: Actor, request: PaymentRequest) -> Outcome:
        gateway = self.gateway_for(request.method, request.gateway)
        problem = gateway.accepts_token(request.method.value, request.token)
        if problem:
            raise validation(problem, "token")
        address = _address(request.billing_address, "billingAddress")
        metadata = _metadata(request.metadata)
        key = _key(request.idempotency_key)
        scope = f"{actor.scope}:processPayment"
        fingerprint = request.fingerprint()
        if key is not None:
            existing = await IdempotencyKey.get_or_none(scope=scope, key=key)
            if existing is not None:
                return await self._replay_payment(actor, existing, fingerprint)

        # Phase 1: record the intent.
        payment_id = new_id("pay")
        try:
            async with (
                span("payql.phase1 record", {"payql.payment.id": payment_id}),
                in_transaction() as conn,
            ):
                record = None
                if key is not None:
                    record = await IdempotencyKey.create(
                        using_db=conn,
                        scope=scope,
                        key=key,
                        fingerprint=fingerprint,
                        resource_id=payment_id,
                    )
                await self._check_attempts(actor, request.client_ip, conn)
                order = await _payable_order(actor, request.order_id, conn)
                amount = order.total
                if request.currency is not None:
                    currency = money.currency_code(request.currency)
                    if currency != order.currency:
                        raise DomainError(
                            ErrorCode.CURRENCY_MISMATCH,
                            f"the order is in {order.currency}, not {currency}",
                            "currency",
                        )
                if request.amount is not None:
                    offered = money.to_minor(request.amount, order.currency)
                    if offered != amount:
                        raise DomainError(
                            ErrorCode.AMOUNT_MISMATCH,
                            f"the amount due is {money.format_money(amount, order.currency)}",
                            "amount",
                        )
                claimed = (
                    await Order.filter(id=order.id, version=order.version)
                    .using_db(conn)
                    .update(version=order.version + 1)
                )
                if claimed != 1:
                    raise invalid_state("the order changed while paying it: try again")
                payment = await Payment.create(
                    using_db=conn,
                    id=payment_id,
                    order_id=order.id,
                    customer_id=order.customer_id,
                    amount=amount,
                    currency=order.currency,
                    payment_method=request.method,
                    capture_method=request.capture_method,
                    gateway=gateway.name,
                    billing_address=address or order.billing_address,
                    metadata=metadata,
                    client_ip=request.client_ip,
                )
                [created] = await _append_events(
                    conn,
                    payment.id,
                    EventSource.API,
                    self.clock(),
                    [
                        {
                            "type": "payment.created",
                            "from_status": None,
                            "to_status": PaymentStatus.PENDING,
                            "data": {
                                "amount": amount,
                                "currency": order.currency,
                                "gateway": gateway.name,
                            },
                        }
                    ],
                )
        except IntegrityError:
            if key is None:
                raise
            # A concurrent request with the same key recorded its intent first.
            existing = await IdempotencyKey.get(scope=scope, key=key)
            return await self._replay_payment(actor, existing, fingerprint)
        await self._publish([_change(payment, created)])

        # Phase 2: the gateway, outside any transaction.
        charge = ChargeRequest(
            reference=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            method=request.method.value,
            token=request.token,
            manual_capture=request.capture_method is CaptureMethod.MANUAL,
            idempotency_key=f"payql-{payment.id}",
            metadata={"payql_payment_id": payment.id, "payql_order_id": payment.order_id},
        )
        error: DomainError | None = None
        decide: Decide
        try:
            state = await gateway.charge(charge)
        except GatewayUnavailable as exc:
            log.warning("gateway %s unavailable for %s: %s", gateway.name, payment.id, exc)
            error = DomainError(
                ErrorCode.GATEWAY_UNAVAILABLE,
                "the payment gateway did not answer; the payment stays PENDING until synced",
            )
            decide = _note("gateway.unavailable", reason=str(exc))
        except GatewayError as exc:
            error = DomainError(ErrorCode.GATEWAY_ERROR, f"the gateway refused: {exc}")
            decide = _fail("gateway_error", str(exc))
        else:
            decide = _Absorb(state)

        # Phase 3: apply the outcome.
        payment = await self._apply(
            payment.id, decide, EventSource.GATEWAY, complete=record.id if record else None
        )
        if isinstance(decide, _Absorb) and decide.verdict is Reported.IGNORE:
            error = invalid_state(f"the payment became {payment.status.value} meanwhile")
        if isinstance(decide, _Absorb):
            completed = await self._complete_if_approved(payment, decide.state, EventSource.GATEWAY)
            if completed is not None:
                payment, error = completed.payment or payment, completed.error or error
        return Outcome(payment=payment, client_secret=_secret_for(payment), error=error)

    async def _replay_payment(
        self, actor: Actor, record: IdempotencyKey, fingerprint: str
    ) -> Outcome:
        await self._await_first(record, fingerprint)
        payment = await visible_payments(actor).get(id=record.resource_id)
        return Outcome(payment=payment, client_secret=_secret_for(payment))

    async def _await_first(self, record: IdempotencyKey, fingerprint: str) -> None:
        """Same key, same input: wait for the first request to finish, then answer as it did."""
        if record.fingerprint != fingerprint:
            raise DomainError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "this idempotency key was used with different input",
                "idempotencyKey",
            )
        waited = 0.0
        while not record.completed and waited < self.idempotency_wait:
            await asyncio.sleep(0.05)
            waited += 0.05
            await record.refresh_from_db(fields=["completed"])

    async def capture_payment(
        self, actor: Actor, payment_id: str, amount: Decimal | None = None
    ) -> Outcome:
        actor.require_admin("capture payments")
        payment = await _visible_payment(actor, payment_id)
        wanted = None if amount is None else money.to_minor(amount, payment.currency)
        to_capture = rules.check_capture(payment.status, payment.amount, wanted)
        return await self._gateway_step(
            payment,
            EventSource.ADMIN,
            intent=("payment.capture_requested", {"amount": to_capture}),
            call=lambda gw, txn, key: gw.capture(txn, to_capture, key),
        )

    async def cancel_payment(self, actor: Actor, payment_id: str) -> Outcome:
        payment = await _visible_payment(actor, payment_id)
        rules.check_cancel(payment.status, admin=actor.admin)
        source = EventSource.ADMIN if actor.admin else EventSource.API
        if payment.gateway_transaction_id is None:
            # The charge may still be in flight: cancelling here alone could let it
            # succeed at the gateway afterwards. Ask the gateway first.
            payment = await self._find_charge(payment, if_absent=_cancel_here, source=source)
            if payment.status is PaymentStatus.CANCELLED:
                return Outcome(payment=payment)
            rules.check_cancel(payment.status, admin=actor.admin)
        return await self._gateway_step(
            payment,
            source,
            intent=("payment.cancel_requested", {}),
            call=lambda gw, txn, key: gw.cancel(txn, key),
        )

    async def mark_payment_received(self, actor: Actor, payment_id: str) -> Outcome:
        actor.require_admin("mark payments received")
        payment = await _visible_payment(actor, payment_id)
        rules.check_mark_received(payment.status, payment.payment_method)
        return await self._gateway_step(
            payment,
            EventSource.ADMIN,
            intent=("payment.received", {"by": actor.customer_id}),
            call=lambda gw, txn, key: gw.capture(txn, payment.amount, key),
        )

    async def reconcile(self, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Payments that a lost answer (a timeout, a crash between the gateway call and
        the commit) left unresolved: each is synced, so the gateway's truth applies.
        `progress` is told (done, total) after each."""
        stale = self.clock() - self.charge_timeout
        unanswered = Payment.filter(
            status=PaymentStatus.PENDING, gateway_transaction_id=None
        ).values_list("id", flat=True)
        processing = Payment.filter(
            status=PaymentStatus.PROCESSING, updated_at__lt=stale
        ).values_list("id", flat=True)
        refunding = Refund.filter(status=RefundStatus.PENDING, created_at__lt=stale).values_list(
            "payment_id", flat=True
        )
        # Waiting for a buyer's approval at a gateway that payql then completes (PayPal),
        # while its approval can still come: an approval whose webhook was lost, and whose
        # buyer never came back to the shop, is found here.
        completing = [n for n, g in self.gateways.items() if isinstance(g, Completes)]
        approving = Payment.filter(
            status=PaymentStatus.REQUIRES_ACTION,
            gateway__in=completing,
            updated_at__lt=stale,
            created_at__gte=self.clock() - APPROVAL_WINDOW,
        ).values_list("id", flat=True)
        queries = (unanswered, processing, refunding, approving)
        ids = sorted({str(i) for q in queries for i in await q})
        summary = {"checked": len(ids), "changed": 0, "waiting": 0, "failed": 0, "unchanged": 0}
        for done, payment_id in enumerate(ids, 1):
            summary[await self._reconcile_one(payment_id)] += 1
            if progress is not None:
                progress(done, len(ids))
        return summary

    async def _reconcile_one(self, payment_id: str) -> str:
        before = await Payment.get(id=payment_id)
        try:
            outcome = await self.sync_payment(SYSTEM, payment_id)
        except DomainError:  # an answer may still be on its way: next round
            return "waiting"
        if outcome.error is not None:
            return "failed"
        if outcome.payment is not None and outcome.payment.version != before.version:
            return "changed"
        return "unchanged"

    async def sync_payment(self, actor: Actor, payment_id: str) -> Outcome:
        """Ask the gateway for the truth: the charge (found by our reference when its
        answer was lost), then any refund whose answer was lost."""
        payment = await _visible_payment(actor, payment_id)
        gateway = self._gateway_of(payment)
        try:
            if payment.gateway_transaction_id is None:
                never_arrived = _fail(
                    "gateway_unavailable", "The payment never reached the gateway."
                )
                payment = await self._find_charge(payment, if_absent=never_arrived)
            else:
                state = await gateway.retrieve(payment.gateway_transaction_id)
                if state is not None:
                    absorb = _Absorb(state, refunds=True)
                    payment = await self._apply(payment.id, absorb, EventSource.GATEWAY)
                    completed = await self._complete_if_approved(payment, state, EventSource.API)
                    if completed is not None:
                        if completed.error is not None:
                            return completed
                        payment = completed.payment or payment
            payment = await self._retry_lost_refunds(payment, gateway)
        except GatewayUnavailable as exc:
            return Outcome(payment=payment, error=_unavailable(exc))
        except GatewayError as exc:
            return Outcome(payment=payment, error=DomainError(ErrorCode.GATEWAY_ERROR, str(exc)))
        return Outcome(payment=payment)

    async def _find_charge(
        self, payment: Payment, if_absent: Decide, source: EventSource = EventSource.SYSTEM
    ) -> Payment:
        """A payment whose charge has no answer yet (in flight, timed out, crashed):
        ask the gateway for it by our reference. Absent, and older than any gateway
        call can take, it never arrived: `if_absent` decides what becomes of it."""
        gateway = self._gateway_of(payment)
        state = await gateway.find(payment.id)
        if state is not None:
            payment = await self._apply(payment.id, _Absorb(state), EventSource.GATEWAY)
            completed = await self._complete_if_approved(payment, state, EventSource.GATEWAY)
            if completed is not None and completed.payment is not None:
                payment = completed.payment
            return payment
        if self.clock() - payment.created_at < self.charge_timeout:
            raise invalid_state(
                "the gateway has not answered for this payment yet: try again in a moment"
            )
        return await self._apply(payment.id, if_absent, source)

    async def _retry_lost_refunds(self, payment: Payment, gateway: Gateway) -> Payment:
        """Refunds left PENDING without a gateway answer are asked again with their own
        idempotency key: the gateway answers with the first refund, or makes it now."""
        lost = await Refund.filter(
            payment_id=payment.id,
            status=RefundStatus.PENDING,
            gateway_refund_id=None,
            created_at__lt=self.clock() - self.charge_timeout,  # not one still in flight
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
            payment = await self.apply_refund_state(refund.id, result, EventSource.GATEWAY)
        return payment

    async def apply_webhook(self, gateway: str, event: GatewayEvent) -> str:
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
                fresh = await self._gateway_of(payment).retrieve(payment.gateway_transaction_id)
                refunds = fresh.refunds if fresh is not None else ()
            outcome = "applied"

            async def decide(tx: _Tx) -> None:
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
                payment = await self._apply(payment.id, decide, EventSource.WEBHOOK)
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
                    await self._complete_if_approved(payment, charge, EventSource.GATEWAY)
                except DomainError as exc:
                    log.warning("could not complete %s after %s: %s", payment.id, event.id, exc)
            return outcome
        except IntegrityError:
            return "duplicate"  # a concurrent copy of the same event won the race

    async def _complete_if_approved(
        self, payment: Payment, state: ChargeState, source: EventSource
    ) -> Outcome | None:
        """The customer approved the payment at the gateway (a PayPal order) and it
        waits for payql: capture it, or authorize it for a manual capture. Every attempt
        (webhook, sync, reconciliation, at once or not) sends one key, so the gateway
        completes it once. None when there is nothing to complete."""
        if not rules.needs_completion(payment.status, state.status.value):
            return None
        gateway = self._gateway_of(payment)
        if not isinstance(gateway, Completes):
            log.error("the %s gateway reported an approval it cannot complete", gateway.name)
            return Outcome(
                payment=payment,
                error=DomainError(ErrorCode.GATEWAY_ERROR, "the gateway cannot complete it"),
            )
        manual = payment.capture_method is CaptureMethod.MANUAL
        try:
            return await self._gateway_step(
                payment,
                source,
                intent=("payment.completion_requested", {"manualCapture": manual}),
                call=lambda _gateway, txn, key: gateway.complete(txn, manual, key),
                key=f"payql-{payment.id}-complete",
                only_if=PaymentStatus.PROCESSING,
            )
        except _Moved as moved:  # cancelled (or completed) meanwhile: nothing to do
            return Outcome(payment=moved.payment)

    async def _gateway_step(
        self,
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
        gateway = self._gateway_of(payment)
        event_type, data = intent
        note = (  # only_if is decided under the row's lock
            _note(event_type, **data) if only_if is None else _note_if(only_if, event_type, **data)
        )
        noted = await self._apply(payment.id, note, source)
        assert payment.gateway_transaction_id is not None
        if key is None:
            key = f"payql-{payment.id}-{event_type.rsplit('.', 1)[-1]}-{noted.version}"
        try:
            state = await call(gateway, payment.gateway_transaction_id, key)
        except GatewayUnavailable as exc:
            return Outcome(payment=await Payment.get(id=payment.id), error=_unavailable(exc))
        except GatewayError as exc:
            payment = await self._apply(
                payment.id, _note("gateway.refused", reason=str(exc)), EventSource.GATEWAY
            )
            return Outcome(payment=payment, error=DomainError(ErrorCode.GATEWAY_ERROR, str(exc)))
        absorb = _Absorb(state)
        payment = await self._apply(payment.id, absorb, source)
        if absorb.verdict is Reported.IGNORE:
            # Something else moved the payment meanwhile (a cancel, a webhook).
            return Outcome(
                payment=payment,
                error=invalid_state(f"the payment became {payment.status.value} meanwhile"),
            )
        return Outcome(payment=payment)

    # -- refunds -----------------------------------------------------------------

    async def refund_payment(
        self,
        actor: Actor,
        payment_id: str,
        amount: Decimal | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        actor.require_admin("refund payments")
        reason = _text(reason, "reason", 500)
        key = _key(idempotency_key)
        scope = f"{actor.scope}:refundPayment"
        fingerprint = _digest(
            {
                "paymentId": payment_id,
                "amount": None if amount is None else str(amount.normalize()),
                "reason": reason,
            }
        )
        if key is not None:
            existing = await IdempotencyKey.get_or_none(scope=scope, key=key)
            if existing is not None:
                return await self._replay_refund(existing, fingerprint)
        payment = await _visible_payment(actor, payment_id)
        # Before anything is reserved: a gateway that is not working refunds nothing,
        # and leaves no pending refund behind to be sent later.
        gateway = self._gateway_of(payment)
        wanted = None if amount is None else money.to_minor(amount, payment.currency)
        refund_id = new_id("re")
        record_id: int | None = None

        # Phase 1: reserve the amount, in the payment's own transaction.
        async def reserve(tx: _Tx) -> None:
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
                window=self.refund_window,
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
            await Refund.create(
                using_db=tx.conn,
                id=refund_id,
                payment_id=p.id,
                amount=to_refund,
                currency=p.currency,
                reason=reason,
            )
            tx.event("refund.created", refundId=refund_id, amount=to_refund)

        try:
            payment = await self._apply(payment.id, reserve, EventSource.ADMIN)
        except IntegrityError:
            if key is None:
                raise
            existing = await IdempotencyKey.get(scope=scope, key=key)
            return await self._replay_refund(existing, fingerprint)
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
            return Outcome(refund=refund, payment=payment, error=_unavailable(exc))
        except GatewayError as exc:
            result = RefundState("", RefundOutcome.FAILED, str(exc))

        # Phase 3: apply the outcome.
        payment = await self.apply_refund_state(
            refund.id, result, EventSource.GATEWAY, complete=record_id
        )
        refund = await Refund.get(id=refund.id)
        error = None
        if refund.status is RefundStatus.FAILED:
            error = DomainError(
                ErrorCode.GATEWAY_ERROR, f"the gateway refused the refund: {refund.failure_reason}"
            )
        return Outcome(refund=refund, payment=payment, error=error)

    async def apply_refund_state(
        self,
        refund_id: str,
        result: RefundState,
        source: EventSource,
        complete: int | None = None,
    ) -> Payment:
        refund = await Refund.get(id=refund_id)

        async def settle(tx: _Tx) -> None:
            current = await Refund.select_for_update().using_db(tx.conn).get(id=refund_id)
            await tx.settle_refund(
                current, result.status, result.refund_id or None, result.failure_reason
            )

        return await self._apply(refund.payment_id, settle, source, complete=complete)

    async def _replay_refund(self, record: IdempotencyKey, fingerprint: str) -> Outcome:
        await self._await_first(record, fingerprint)
        refund = await Refund.get(id=record.resource_id)
        payment = await Payment.get(id=refund.payment_id)
        return Outcome(refund=refund, payment=payment)

    # -- the transaction of phase 3 ------------------------------------------------

    async def _apply(
        self,
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
                    payment = await Payment.select_for_update().using_db(conn).get(id=payment_id)
                    before = _snapshot(payment)
                    version = payment.version
                    tx = _Tx(payment=payment, conn=conn, now=self.clock(), source=source)
                    await decide(tx)
                    changed = {k: v for k, v in _snapshot(payment).items() if before[k] != v}
                    if changed or tx.events:
                        updated = (
                            await Payment.filter(id=payment_id, version=version)
                            .using_db(conn)
                            .update(**changed, version=version + 1, updated_at=tx.now)
                        )
                        if updated != 1:
                            raise _Conflict
                        payment.version = version + 1
                        payment.updated_at = tx.now
                    if "status" in changed:
                        await _follow_payments(payment.order_id, conn)
                    if complete is not None:
                        await (
                            IdempotencyKey.filter(id=complete).using_db(conn).update(completed=True)
                        )
                    # What the changes' notifications need, read before the events
                    # take positions, so that only their one insert is made while the
                    # event counter's lock is held.
                    telling = await self.outbox.prepare(conn, payment, tx.events)
                    events = await _append_events(conn, payment_id, source, tx.now, tx.events)
                    changes = [_change(payment, e) for e in events if e.to_status is not None]
                    # The outbox, in this transaction: sent only if this commits.
                    told = 0
                    if telling is not None:
                        told = await self.outbox.write(conn, payment, telling, events, tx.now)
            except _Conflict:
                continue
            if told and self.outbox.wake is not None:
                self.outbox.wake()
            await self._publish(changes)
            return payment
        raise Busy()

    async def _publish(self, changes: list[StatusChange]) -> None:
        for change in changes:
            try:
                await self.publisher.publish(change)
            except Exception:  # the change is committed; subscribers resume with `after`
                log.exception("could not publish %s of %s", change.cursor, change.payment_id)

    def _gateway_of(self, payment: Payment) -> Gateway:
        gateway = self.gateways.get(payment.gateway)
        if gateway is None and payment.gateway in self.unavailable:
            raise DomainError(ErrorCode.GATEWAY_UNAVAILABLE, self.unavailable[payment.gateway])
        if gateway is None:
            raise DomainError(
                ErrorCode.GATEWAY_ERROR, f"the {payment.gateway} gateway is not configured"
            )
        return gateway


# -- decisions ---------------------------------------------------------------------------


class _Absorb:
    """Decide: take the gateway's word (see _Tx.absorb); remembers the verdict.
    With `refunds`, the refunds the gateway lists are reconciled too (a sync)."""

    def __init__(self, state: ChargeState, refunds: bool = False) -> None:
        self.state = state
        self.refunds = refunds
        self.verdict: Reported | None = None

    async def __call__(self, tx: _Tx) -> None:
        self.verdict = tx.absorb(self.state)
        if self.refunds:
            await tx.reconcile_refunds(self.state.refunds)


def _note(event_type: str, **data: Any) -> Decide:
    async def decide(tx: _Tx) -> None:
        tx.event(event_type, **data)

    return decide


class _Moved(Exception):
    """The payment is no longer in the status a step needs (checked under its lock)."""

    def __init__(self, payment: Payment) -> None:
        self.payment = payment


def _note_if(status: PaymentStatus, event_type: str, **data: Any) -> Decide:
    async def decide(tx: _Tx) -> None:
        if tx.payment.status is not status:
            raise _Moved(tx.payment)
        tx.event(event_type, **data)

    return decide


def _fail(code: str, message: str) -> Decide:
    async def decide(tx: _Tx) -> None:
        tx.payment.failure_code = code
        tx.payment.failure_message = message[:500]
        tx.move(PaymentStatus.FAILED)

    return decide


async def _cancel_here(tx: _Tx) -> None:
    tx.move(PaymentStatus.CANCELLED)


# -- helpers -----------------------------------------------------------------------------


async def _append_events(
    conn: Any,
    payment_id: str,
    source: EventSource,
    now: datetime,
    specs: Sequence[Mapping[str, Any]],
) -> list[PaymentEvent]:
    """Append audit events with commit-ordered positions (their ids, the cursors).

    The counter row stays locked until commit, so no position ever commits after a
    higher one: a reader that has seen position N has seen every position below it.
    """
    if not specs:
        return []
    taken = (
        await Counter.filter(name=EVENT_COUNTER)
        .using_db(conn)
        .update(value=F("value") + len(specs))
    )
    if taken != 1:
        raise RuntimeError("the event counter is missing: start the service once to create it")
    last = (await Counter.filter(name=EVENT_COUNTER).using_db(conn).get()).value
    events = [
        PaymentEvent(
            id=last - len(specs) + 1 + offset,
            payment_id=payment_id,
            source=source,
            created_at=now,
            **spec,
        )
        for offset, spec in enumerate(specs)
    ]
    await PaymentEvent.bulk_create(events, using_db=conn)
    return events


async def ensure_counters() -> None:
    """The counters the write path takes numbers from (order numbers, event positions)."""
    for name in (ORDER_COUNTER, EVENT_COUNTER):
        try:
            await Counter.get_or_create(name=name, defaults={"value": 0})
        except IntegrityError:  # another worker created it first
            pass


def _change(payment: Payment, event: PaymentEvent) -> StatusChange:
    assert event.to_status is not None
    return StatusChange(
        cursor=event.id,
        payment_id=payment.id,
        order_id=payment.order_id,
        customer_id=payment.customer_id,
        previous=event.from_status,
        status=event.to_status,
        occurred_at=event.created_at,
    )


async def _follow_payments(order_id: str, conn: Any) -> None:
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


async def _payable_order(actor: Actor, order_id: str, conn: Any) -> Order:
    order = await one_order(actor, order_id).select_for_update().using_db(conn).first()
    if order is None:
        raise not_found("order", "orderId")
    if order.status is not OrderStatus.PENDING:
        raise invalid_state(f"order {order.number} is {order.status.value}, not payable")
    open_payment = (
        await Payment.filter(order_id=order.id, status__in=list(rules.OPEN)).using_db(conn).first()
    )
    if open_payment is not None:
        raise invalid_state(
            f"payment {open_payment.id} on this order is still {open_payment.status.value}: "
            "finish or cancel it first"
        )
    return order


async def _visible_payment(actor: Actor, payment_id: str) -> Payment:
    payment = await one_payment(actor, payment_id).first()
    if payment is None:
        raise not_found("payment", "id")
    return payment


async def _next_order_number(conn: Any, now: datetime) -> str:
    bumped = await Counter.filter(name=ORDER_COUNTER).using_db(conn).update(value=F("value") + 1)
    if bumped != 1:
        raise RuntimeError("the order counter is missing: start the service once to create it")
    counter = await Counter.filter(name=ORDER_COUNTER).using_db(conn).get()
    return f"ORD-{now.year}-{counter.value:06d}"


def _secret_for(payment: Payment) -> str | None:
    return payment.client_secret if payment.status in rules.AWAITING_CUSTOMER else None


def _unavailable(exc: Exception) -> DomainError:
    log.warning("gateway unavailable: %s", exc)
    return DomainError(
        ErrorCode.GATEWAY_UNAVAILABLE,
        "the payment gateway did not answer; try again or sync the payment",
    )


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def _key(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not 1 <= len(value) <= 255:
        raise validation("an idempotency key has 1 to 255 characters", "idempotencyKey")
    return value


def _text(value: str | None, field_name: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise validation(f"{field_name} is longer than {limit} characters", field_name)
    return value or None


def _merge_lines(lines: Sequence[tuple[str, int]]) -> dict[str, int]:
    if not lines:
        raise validation("an order needs at least one line", "lines")
    if len(lines) > MAX_LINES:
        raise validation(f"an order has at most {MAX_LINES} lines", "lines")
    merged: dict[str, int] = {}
    for index, (sku, quantity) in enumerate(lines):
        if not 1 <= quantity <= MAX_QUANTITY:
            raise validation(
                f"a quantity is between 1 and {MAX_QUANTITY}", f"lines.{index}.quantity"
            )
        sku = sku.strip()
        merged[sku] = merged.get(sku, 0) + quantity
        if merged[sku] > MAX_QUANTITY:
            raise validation(f"at most {MAX_QUANTITY} of one product", f"lines.{index}.quantity")
    return merged


def _order_customer(actor: Actor, given: CustomerData | None) -> CustomerData:
    if actor.admin and given is not None:
        email = _email(given.email)
        customer_id = given.id or "cus_" + hashlib.sha256(email.lower().encode()).hexdigest()[:20]
        return CustomerData(id=customer_id, name=_name(given.name), email=email)
    email_value = (given.email if given else None) or actor.email
    if not email_value:
        raise validation("customer.email is required (the token has none)", "customer.email")
    email = _email(email_value)
    name = (given.name if given else None) or actor.name or email.split("@")[0]
    return CustomerData(id=actor.customer_id, name=_name(name), email=email)


def _email(value: str) -> str:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or len(value) > 254 or " " in value:
        raise validation(f"{value!r} is not an email address", "customer.email")
    return value


def _name(value: str) -> str:
    name = _text(value, "customer.name")
    if not name:
        raise validation("customer.name is required", "customer.name")
    return name


_ADDRESS_FIELDS = {"street": True, "city": True, "state": False, "zip": True, "country": True}


def _address(
    value: Mapping[str, str | None] | None, field_name: str
) -> dict[str, str | None] | None:
    if value is None:
        return None
    address: dict[str, str | None] = {}
    for name, required in _ADDRESS_FIELDS.items():
        text = _text(value.get(name), f"{field_name}.{name}")
        if required and not text:
            raise validation(f"{field_name}.{name} is required", f"{field_name}.{name}")
        address[name] = text
    return address


def _metadata(value: Any) -> dict[str, str]:
    """Stripe's rules: at most 50 keys of 40 characters, values of 500, all strings."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise validation("metadata is an object of string keys and values", "metadata")
    if len(value) > 50:
        raise validation("metadata has at most 50 keys", "metadata")
    result: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not 1 <= len(k) <= 40:
            raise validation("metadata keys have 1 to 40 characters", "metadata")
        if isinstance(v, bool) or not isinstance(v, str | int | Decimal | float):
            raise validation(f"metadata value {k!r} must be a string or number", "metadata")
        text = str(v)
        if len(text) > 500:
            raise validation(f"metadata value {k!r} is longer than 500 characters", "metadata")
        result[k] = text
    return result


__all__ = [
    "CustomerData",
    "Outcome",
    "PaymentRequest",
    "PaymentService",
    "Publisher",
    "StatusChange",
    "owns",
]
