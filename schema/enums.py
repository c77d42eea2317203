"""The contract's enums are the domain's own, registered with Strawberry in place."""

from __future__ import annotations

import strawberry

from models.errors import ErrorCode
from models.rules import (
    CaptureMethod,
    EventSource,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    RefundStatus,
)

for _enum in (
    CaptureMethod,
    ErrorCode,
    EventSource,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    RefundStatus,
):
    strawberry.enum(_enum)

__all__ = [
    "CaptureMethod",
    "ErrorCode",
    "EventSource",
    "OrderStatus",
    "PaymentMethod",
    "PaymentStatus",
    "RefundStatus",
]
