"""Idempotency keys: a request repeated with the same key and input waits for the
first and answers as it did; with other input it is refused.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from models.errors import DomainError, ErrorCode
from models.tables import IdempotencyKey

if TYPE_CHECKING:
    from models.write_path.service import PaymentService


async def await_first(svc: PaymentService, record: IdempotencyKey, fingerprint: str) -> None:
    """Same key, same input: wait for the first request to finish, then answer as it did."""
    if record.fingerprint != fingerprint:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this idempotency key was used with different input",
            "idempotencyKey",
        )
    waited = 0.0
    while not record.completed and waited < svc.idempotency_wait:
        await asyncio.sleep(0.05)
        waited += 0.05
        await record.refresh_from_db(fields=["completed"])
