"""Stripe's webhook signature scheme: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256>`.

The HMAC is over "<t>.<raw body>" with the endpoint's secret. The simulated gateway
signs and verifies its webhooks this way, so a webhook handler written for Stripe
works unchanged; the Stripe gateway uses the SDK's own `construct_event`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

TOLERANCE_SECONDS = 300


class InvalidSignature(ValueError):
    """The webhook's signature is missing, forged or stale: nothing in it may be trusted."""


def sign(
    payload: bytes, secret: str, timestamp: int | None = None, also: Sequence[str] = ()
) -> str:
    """The Stripe-Signature header value for this payload; with `also`, a v1 for each
    of those secrets too (one being rolled: the receiver's old secret still matches)."""
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}"] + [f"v1={_digest(payload, s, t)}" for s in (secret, *also)])


def verify(
    payload: bytes,
    header: str | None,
    secret: str,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise InvalidSignature unless `header` signs `payload` with `secret`, recently."""
    if not header:
        raise InvalidSignature("no signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidSignature("the signature header has no timestamp or no v1 signature")
    expected = _digest(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise InvalidSignature("no signature matches the payload")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(f"the signature is older than {tolerance} seconds")


def _digest(payload: bytes, secret: str, timestamp: int) -> str:
    message = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
