"""Opaque, prefixed identifiers: ord_…, pay_…, re_…."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{base64.b32encode(secrets.token_bytes(15)).decode().lower()}"


def event_id(position: int) -> str:
    """The public id of an audit event; its position is also the subscription cursor."""
    return f"evt_{position}"


def event_position(public_id: str) -> int | None:
    prefix, _, number = public_id.partition("_")
    if prefix != "evt" or not number.isdigit():
        return None
    return int(number)
