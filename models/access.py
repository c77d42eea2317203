"""Who is acting, and what they may see: a customer sees only their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.models import Model
from tortoise.queryset import QuerySet

from models.errors import DomainError, ErrorCode
from models.tables import Order, Payment


@dataclass(frozen=True, slots=True)
class Actor:
    customer_id: str
    role: str  # "customer" or "admin"
    email: str | None = None
    name: str | None = None

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @property
    def scope(self) -> str:
        """Idempotency keys and the like are scoped to the caller."""
        return f"{self.role}:{self.customer_id}"

    def require_admin(self, action: str) -> None:
        if not self.admin:
            raise DomainError(ErrorCode.FORBIDDEN, f"only an admin can {action}")


def visible_orders(actor: Actor) -> QuerySet[Order]:
    query = Order.all()
    return query if actor.admin else query.filter(customer_id=actor.customer_id)


def visible_payments(actor: Actor) -> QuerySet[Payment]:
    query = Payment.all()
    return query if actor.admin else query.filter(customer_id=actor.customer_id)


def fits(value: str, model: type[Model], column: str = "id") -> str:
    """A client's value to match `model.column`: one longer than the column can hold
    names nothing, so it matches nothing (the ORM would refuse to compare it)."""
    length = getattr(model._meta.fields_map[column], "max_length", None)
    return value if length is None or len(value) <= length else ""


def one_order(actor: Actor, order_id: str) -> QuerySet[Order]:
    """The caller's order with this id, if it exists and they may see it."""
    return visible_orders(actor).filter(id=fits(order_id, Order))


def one_payment(actor: Actor, payment_id: str) -> QuerySet[Payment]:
    """The caller's payment with this id, if it exists and they may see it."""
    return visible_payments(actor).filter(id=fits(payment_id, Payment))


def owns(actor: Actor, record: Any) -> bool:
    return bool(record.customer_id == actor.customer_id)
