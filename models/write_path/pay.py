"""processPayment: phase 1 records the payment (after the card-testing limits and the
order's checks), phase 2 charges at the gateway, phase 3 applies the outcome.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from gateways.base import ChargeRequest, GatewayError, GatewayUnavailable
from models import money, rules
from models.access import Actor, one_order, visible_payments
from models.errors import DomainError, ErrorCode, invalid_state, not_found, validation
from models.ids import new_id
from models.rules import CaptureMethod, EventSource, OrderStatus, PaymentStatus, Reported
from models.spans import span
from models.tables import Counter, IdempotencyKey, Order, Payment
from models.write_path.core import Decide, Outcome, apply, publish
from models.write_path.decisions import Absorb, fail_with, note_event
from models.write_path.events import append_events, committed
from models.write_path.idempotency import await_first
from models.write_path.inputs import PaymentRequest, checked_address, checked_key, checked_metadata
from models.write_path.steps import complete_if_approved

if TYPE_CHECKING:
    from models.write_path.service import PaymentService

log = logging.getLogger("payql.payments")


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


async def process_payment(svc: PaymentService, actor: Actor, request: PaymentRequest) -> Outcome:
    gateway = svc.gateway_for(request.method, request.gateway)
    problem = gateway.accepts_token(request.method.value, request.token)
    if problem:
        raise validation(problem, "token")
    address = checked_address(request.billing_address, "billingAddress")
    metadata = checked_metadata(request.metadata)
    key = checked_key(request.idempotency_key)
    scope = f"{actor.scope}:processPayment"
    fingerprint = request.fingerprint()
    if key is not None:
        existing = await IdempotencyKey.get_or_none(scope=scope, key=key)
        if existing is not None:
            return await _replay_payment(svc, actor, existing, fingerprint)

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
            await _check_attempts(svc, actor, request.client_ip, conn)
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
            [created] = await append_events(
                conn,
                payment,
                EventSource.API,
                svc.clock(),
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
        return await _replay_payment(svc, actor, existing, fingerprint)
    await publish(svc, committed([created]))

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
        decide = note_event("gateway.unavailable", reason=str(exc))
    except GatewayError as exc:
        error = DomainError(ErrorCode.GATEWAY_ERROR, f"the gateway refused: {exc}")
        decide = fail_with("gateway_error", str(exc))
    else:
        decide = Absorb(state)

    # Phase 3: apply the outcome.
    payment = await apply(
        svc, payment.id, decide, EventSource.GATEWAY, complete=record.id if record else None
    )
    if isinstance(decide, Absorb) and decide.verdict is Reported.IGNORE:
        error = invalid_state(f"the payment became {payment.status.value} meanwhile")
    if isinstance(decide, Absorb):
        completed = await complete_if_approved(svc, payment, decide.state, EventSource.GATEWAY)
        if completed is not None:
            payment, error = completed.payment or payment, completed.error or error
    return Outcome(payment=payment, client_secret=_secret_for(payment), error=error)


async def _check_attempts(
    svc: PaymentService, actor: Actor, client_ip: str | None, conn: Any
) -> None:
    """Card testing: refuse a new attempt from a customer or an address with too
    many failed, or still unresolved, attempts lately. Admins are not limited.

    Runs in phase 1's transaction, holding a lock row per customer and per address
    until it commits: concurrent attempts are counted one after another, each
    seeing the ones before it."""
    limits = svc.attempt_limits
    if actor.admin:
        return
    since = svc.clock() - limits.window
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
        recent = svc.clock() - svc.charge_timeout
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


async def _replay_payment(
    svc: PaymentService, actor: Actor, record: IdempotencyKey, fingerprint: str
) -> Outcome:
    await await_first(svc, record, fingerprint)
    payment = await visible_payments(actor).get(id=record.resource_id)
    return Outcome(payment=payment, client_secret=_secret_for(payment))


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


def _secret_for(payment: Payment) -> str | None:
    return payment.client_secret if payment.status in rules.AWAITING_CUSTOMER else None
