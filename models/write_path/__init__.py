"""The one write path. Every change to a payment's status or amounts goes through here.

Each use case runs in phases, so that no lock or transaction is held across a
gateway call:

1. record the intent in a transaction (the payment row, or a refund row that
   reserves its amount), together with the caller's idempotency key;
2. call the gateway, with an idempotency key derived from our row id, so a retry
   can never charge twice;
3. apply the outcome in one transaction (`core.apply`): the transition the table in
   models/rules.py allows, its audit event, the order's status; commit, then publish.

Webhooks, syncs and reconciliation enter at phase 3 (`reports`).

The modules: `service` (PaymentService: settings, gateways, a method per use case),
`orders`, `pay`, `capture_cancel`, `refunds`, `reports` (one use case each), `steps`
(what they share: a gateway step on a payment that exists, finding a lost charge,
completing an approved one), `core` (the phase-3 transaction, the only code that
changes a status or an amount), `inputs` (what the entry points hand in, checked) and
`idempotency`.
"""

from models.access import owns
from models.write_path.core import Busy, Outcome, PaymentUnknown
from models.write_path.events import (
    Committed,
    NoPublisher,
    Publisher,
    append_events,
    ensure_counters,
    utcnow,
)
from models.write_path.inputs import CustomerData, PaymentRequest
from models.write_path.pay import AttemptLimits, attempt_source
from models.write_path.service import PaymentService

__all__ = [
    "AttemptLimits",
    "Busy",
    "Committed",
    "CustomerData",
    "NoPublisher",
    "Outcome",
    "PaymentRequest",
    "PaymentService",
    "PaymentUnknown",
    "Publisher",
    "append_events",
    "attempt_source",
    "ensure_counters",
    "owns",
    "utcnow",
]
