"""DataLoaders, made per request: one query per relation, whatever the list size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from strawberry.dataloader import DataLoader

from models.tables import Dispute, Order, OrderLine, Payment, PaymentEvent, Refund


async def _orders_by_id(ids: Sequence[str]) -> list[Order | None]:
    found = {o.id: o for o in await Order.filter(id__in=list(ids))}
    return [found.get(i) for i in ids]


async def _lines_by_order_id(ids: Sequence[str]) -> list[list[OrderLine]]:
    grouped: dict[str, list[OrderLine]] = defaultdict(list)
    for line in await OrderLine.filter(order_id__in=list(ids)).order_by("position"):
        grouped[line.order_id].append(line)
    return [grouped[i] for i in ids]


async def _payments_by_order_id(ids: Sequence[str]) -> list[list[Payment]]:
    grouped: dict[str, list[Payment]] = defaultdict(list)
    for payment in await Payment.filter(order_id__in=list(ids)).order_by("created_at", "id"):
        grouped[payment.order_id].append(payment)
    return [grouped[i] for i in ids]


async def _refunds_by_payment_id(ids: Sequence[str]) -> list[list[Refund]]:
    grouped: dict[str, list[Refund]] = defaultdict(list)
    for refund in await Refund.filter(payment_id__in=list(ids)).order_by("created_at", "id"):
        grouped[refund.payment_id].append(refund)
    return [grouped[i] for i in ids]


async def _events_by_payment_id(ids: Sequence[str]) -> list[list[PaymentEvent]]:
    grouped: dict[str, list[PaymentEvent]] = defaultdict(list)
    for event in await PaymentEvent.filter(payment_id__in=list(ids)).order_by("id"):
        grouped[event.payment_id].append(event)
    return [grouped[i] for i in ids]


async def _disputes_by_payment_id(ids: Sequence[str]) -> list[list[Dispute]]:
    grouped: dict[str, list[Dispute]] = defaultdict(list)
    for dispute in await Dispute.filter(payment_id__in=list(ids)).order_by("created_at"):
        grouped[dispute.payment_id].append(dispute)
    return [grouped[i] for i in ids]


@dataclass
class Loaders:
    order_by_id: DataLoader[str, Order | None] = field(
        default_factory=lambda: DataLoader(load_fn=_orders_by_id)
    )
    lines_by_order_id: DataLoader[str, list[OrderLine]] = field(
        default_factory=lambda: DataLoader(load_fn=_lines_by_order_id)
    )
    payments_by_order_id: DataLoader[str, list[Payment]] = field(
        default_factory=lambda: DataLoader(load_fn=_payments_by_order_id)
    )
    refunds_by_payment_id: DataLoader[str, list[Refund]] = field(
        default_factory=lambda: DataLoader(load_fn=_refunds_by_payment_id)
    )
    events_by_payment_id: DataLoader[str, list[PaymentEvent]] = field(
        default_factory=lambda: DataLoader(load_fn=_events_by_payment_id)
    )
    disputes_by_payment_id: DataLoader[str, list[Dispute]] = field(
        default_factory=lambda: DataLoader(load_fn=_disputes_by_payment_id)
    )
