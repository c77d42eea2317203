"""Where the simulated gateway keeps its PaymentIntents: tables of its own.

In the service's database, so that they survive a restart and are shared by every
worker, like a real gateway's state. Nothing else reads or writes these tables.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class SimulatedIntent(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    client_secret = fields.CharField(max_length=100, unique=True)
    reference = fields.CharField(max_length=40, db_index=True)
    data: Any = fields.JSONField()

    class Meta:
        table = "simulated_intent"


class SimulatedReply(Model):
    """The first answer to an idempotency key, given again to a retry."""

    key = fields.CharField(max_length=255, primary_key=True)
    data: Any = fields.JSONField()

    class Meta:
        table = "simulated_reply"
