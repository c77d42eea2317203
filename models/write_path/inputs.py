"""What the entry points hand in, and the checks on it that are not payment rules:
order lines, customers, addresses, metadata, free text, idempotency keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from models.access import Actor
from models.errors import validation
from models.rules import CaptureMethod, PaymentMethod

MAX_LINES = 100
MAX_QUANTITY = 1000
MAX_TEXT = 200


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
    metadata: Any = None  # checked by checked_metadata: Stripe-like string keys and values
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
        return digest(body)


def digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def checked_key(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not 1 <= len(value) <= 255:
        raise validation("an idempotency key has 1 to 255 characters", "idempotencyKey")
    return value


def checked_text(value: str | None, field_name: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise validation(f"{field_name} is longer than {limit} characters", field_name)
    return value or None


def checked_lines(lines: Sequence[tuple[str, int]]) -> dict[str, int]:
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


def order_customer(actor: Actor, given: CustomerData | None) -> CustomerData:
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
    name = checked_text(value, "customer.name")
    if not name:
        raise validation("customer.name is required", "customer.name")
    return name


_ADDRESS_FIELDS = {"street": True, "city": True, "state": False, "zip": True, "country": True}


def checked_address(
    value: Mapping[str, str | None] | None, field_name: str
) -> dict[str, str | None] | None:
    if value is None:
        return None
    address: dict[str, str | None] = {}
    for name, required in _ADDRESS_FIELDS.items():
        text = checked_text(value.get(name), f"{field_name}.{name}")
        if required and not text:
            raise validation(f"{field_name}.{name} is required", f"{field_name}.{name}")
        address[name] = text
    return address


def checked_metadata(value: Any) -> dict[str, str]:
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
