"""createOrder: the server prices the order from its catalog and reserves the stock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models import money
from models.access import Actor
from models.errors import DomainError, ErrorCode, validation
from models.ids import new_id
from models.tables import Counter, Order, OrderLine, Product
from models.write_path.events import ORDER_COUNTER
from models.write_path.inputs import CustomerData, checked_address, checked_lines, order_customer

if TYPE_CHECKING:
    from models.write_path.service import PaymentService


async def create_order(
    svc: PaymentService,
    actor: Actor,
    lines: Sequence[tuple[str, int]],
    customer: CustomerData | None = None,
    billing_address: Mapping[str, str | None] | None = None,
) -> Order:
    quantities = checked_lines(lines)
    owner = order_customer(actor, customer)
    address = checked_address(billing_address, "billingAddress")
    async with in_transaction() as conn:
        products = {p.sku: p for p in await Product.filter(sku__in=list(quantities)).using_db(conn)}
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
        now = svc.clock()
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


async def _next_order_number(conn: Any, now: datetime) -> str:
    bumped = await Counter.filter(name=ORDER_COUNTER).using_db(conn).update(value=F("value") + 1)
    if bumped != 1:
        raise RuntimeError("the order counter is missing: start the service once to create it")
    counter = await Counter.filter(name=ORDER_COUNTER).using_db(conn).get()
    return f"ORD-{now.year}-{counter.value:06d}"
