"""Opaque, prefixed identifiers: ord_…, pay_…, re_… (events' are in models/event_log.py)."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{base64.b32encode(secrets.token_bytes(15)).decode().lower()}"
