"""Who is acting, and what they may see: a customer sees only their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.queryset import QuerySet

from models.errors import DomainError, ErrorCode
from models.tables import Order, Payment


@dataclass(frozen=True)
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


def owns(actor: Actor, record: Any) -> bool:
    return bool(record.customer_id == actor.customer_id)
