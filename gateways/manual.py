"""Offline methods (bank transfer, cash on delivery): money arrives outside any gateway.

A payment waits (awaiting_funds) until an admin marks it received, which captures it.
Refunds are paid back by hand and recorded as succeeded. The gateway holds no state:
the admin's record is the truth.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from gateways.base import (
    ChargeRequest,
    ChargeState,
    GatewayEvent,
    GatewayStatus,
    RefundOutcome,
    RefundState,
)
from gateways.signing import InvalidSignature


class ManualGateway:
    name = "manual"
    methods = frozenset({"BANK_TRANSFER", "CASH_ON_DELIVERY"})

    def accepts_token(self, method: str, token: str | None) -> str | None:
        return "offline payments take no token" if token is not None else None

    async def charge(self, request: ChargeRequest) -> ChargeState:
        return ChargeState(f"man_{request.reference}", GatewayStatus.AWAITING_FUNDS)

    async def capture(self, transaction_id: str, amount: int, idempotency_key: str) -> ChargeState:
        return ChargeState(transaction_id, GatewayStatus.SUCCEEDED, amount_captured=amount)

    async def cancel(self, transaction_id: str, idempotency_key: str) -> ChargeState:
        return ChargeState(transaction_id, GatewayStatus.CANCELED)

    async def refund(self, transaction_id: str, amount: int, idempotency_key: str) -> RefundState:
        return RefundState(f"mre_{secrets.token_hex(8)}", RefundOutcome.SUCCEEDED)

    async def retrieve(self, transaction_id: str) -> ChargeState | None:
        return None

    async def find(self, reference: str) -> ChargeState | None:
        return ChargeState(f"man_{reference}", GatewayStatus.AWAITING_FUNDS)

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        raise InvalidSignature("offline payments have no gateway to send webhooks")
