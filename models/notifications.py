"""What is told to whom: which changes notify, the customer's emails, the merchant's
webhook events, and when a failed delivery is tried again.

Pure functions over plain values, like models/rules.py: no I/O. The outbox
(models/outbox.py) writes what these decide; the dispatcher (models/dispatcher.py)
delivers it.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.carddata import contains_pan
from models.money import EXPONENTS, to_major
from models.rules import PaymentStatus

# The events a merchant's endpoint may ask for ("*": all of them).
EVENT_TYPES = (
    "payment.completed",
    "payment.authorized",
    "payment.failed",
    "payment.requires_action",
    "payment.cancelled",
    "refund.succeeded",
    "refund.failed",
    "dispute.created",
)
ALL = "*"
# The ones customers get an email for: a receipt, a decline, a refund.
CUSTOMER_EMAILS = frozenset({"payment.completed", "payment.failed", "refund.succeeded"})

_BY_STATUS = {
    PaymentStatus.COMPLETED: "payment.completed",
    PaymentStatus.AUTHORIZED: "payment.authorized",
    PaymentStatus.FAILED: "payment.failed",
    PaymentStatus.REQUIRES_ACTION: "payment.requires_action",
    PaymentStatus.CANCELLED: "payment.cancelled",
}
_BY_TYPE = {
    "refund.succeeded": "refund.succeeded",
    # Taken for failed, then found made at the gateway: it succeeded after all.
    "refund.corrected": "refund.succeeded",
    "refund.failed": "refund.failed",
    # Succeeded, then failed at the gateway (the money came back).
    "refund.reversed": "refund.failed",
    "dispute.created": "dispute.created",
}


def notifiable(event_type: str, to_status: PaymentStatus | None) -> str | None:
    """The notification an audit event makes, if any. A status change notifies by the
    status it reaches; refunds and disputes by their own events (a refund's status
    change, to PARTIALLY_REFUNDED or REFUNDED, is told by refund.succeeded)."""
    if event_type in _BY_TYPE:
        return _BY_TYPE[event_type]
    if to_status is not None:
        return _BY_STATUS.get(to_status)
    return None


def wants(event_types: Sequence[str], event_type: str) -> bool:
    return ALL in event_types or event_type in event_types


def check_event_types(event_types: Sequence[str]) -> list[str]:
    """The endpoint's event types, deduplicated; or what is wrong (ValueError)."""
    chosen = list(dict.fromkeys(t.strip() for t in event_types))
    if not chosen:
        raise ValueError("name at least one event type, or * for all")
    unknown = [t for t in chosen if t != ALL and t not in EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"unknown event type {unknown[0]!r}: use {', '.join(EVENT_TYPES)}, or * for all"
        )
    return [ALL] if ALL in chosen else chosen


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling from
    `base` up to `cap` (30 s, 1 min, 2 min, … 6 h: about 20 attempts in 3 days)."""
    return float(min(base * 2 ** max(attempts - 1, 0), cap))


# -- money as people read it --------------------------------------------------------------

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$"}


def display_money(minor: int, currency: str) -> str:
    """$1,234.50, €12.00, ¥3,200; other currencies as 12.00 SEK."""
    places = EXPONENTS[currency]
    text = f"{to_major(minor, currency):,.{places}f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


# What a customer is told of a decline, by its code (the gateway's own message else).
DECLINE_REASONS = {
    "card_declined": "your card was declined. Try another card, or ask your bank why.",
    "insufficient_funds": "your card has insufficient funds. Try another card.",
    "expired_card": "your card has expired. Try another card.",
    "incorrect_cvc": "the card's security code is incorrect.",
    "processing_error": "the payment could not be processed. Please try again.",
    "authentication_failed": "the payment was not confirmed with your bank.",
    "instrument_declined": "PayPal declined the way you chose to pay. Try another one.",
    "gateway_unavailable": "the payment service did not answer. Please try again.",
    "capture_declined": "PayPal declined the payment. Try another way to pay.",
    "authorization_denied": "PayPal declined the payment. Try another way to pay.",
}
# For any other code: the gateway's own words are not for customers.
DECLINED = "the payment was declined. Try another card or another way to pay."
_BRANDS = {
    "amex": "American Express",
    "american_express": "American Express",
    "mastercard": "Mastercard",
    "visa": "Visa",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
}


# -- customers' emails ---------------------------------------------------------------------


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


def _paid_with(context: Mapping[str, Any]) -> str:
    card = context.get("card")
    if card:
        brand = str(card["brand"])
        name = _BRANDS.get(brand.lower(), brand.replace("_", " ").title())
        return f"{name} ending in {card['last4']}"
    if context.get("paymentMethod") == "PAYPAL":
        return "PayPal"
    return "the way you paid"


def render_email(event_type: str, context: Mapping[str, Any]) -> Email:
    """The customer's email for an event (CUSTOMER_EMAILS), from the outbox row's
    context: a receipt, a decline, or a refund confirmation, in text and HTML."""
    currency = str(context["currency"])
    amount = display_money(int(context["amount"]), currency)
    # What was taken: less than the amount after a partial capture.
    paid = display_money(int(context.get("captured") or context["amount"]), currency)
    number = str(context["orderNumber"])
    shop = str(context.get("shop") or "payql")
    greeting = f"Hello {context.get('customerName') or 'there'},"
    paragraphs: list[str]
    lines: list[tuple[str, str]] = []
    if event_type == "payment.completed":
        subject = f"Receipt for order {number}"
        lines = [
            (
                f"{line['name']} × {line['quantity']}",
                display_money(int(line["total"]), currency),
            )
            for line in context.get("lines") or ()
        ]
        lines.append(("Total", amount))
        if paid != amount:
            lines.append(("Paid", paid))
        paragraphs = [
            f"Thank you for your order {number}. Your payment of {paid} went through.",
            f"Paid with {_paid_with(context)}. Payment reference: {context['paymentId']}.",
        ]
    elif event_type == "payment.failed":
        subject = f"Your payment for order {number} did not go through"
        reason = DECLINE_REASONS.get(str(context.get("failureCode") or ""), DECLINED)
        paragraphs = [
            f"We could not take your payment of {amount} for order {number}: {reason}",
            "Nothing was charged. Your order is still open: you can pay it again with "
            "another card or another way to pay.",
        ]
    elif event_type == "refund.succeeded":
        refunded = display_money(int(context["refundAmount"]), currency)
        subject = f"Refund of {refunded} for order {number}"
        paragraphs = [
            f"We have refunded {refunded} for order {number} to {_paid_with(context)}. "
            "It can take 5 to 10 business days to appear on your statement.",
        ]
        total = int(context.get("refundedTotal") or 0)
        if total and total < int(context.get("captured") or 0):
            paragraphs.append(
                f"In all, {display_money(total, currency)} of your payment of "
                f"{display_money(int(context['captured']), currency)} has been refunded."
            )
    else:
        raise ValueError(f"no customer email for {event_type}")
    closing = f"Thank you,\n{shop}"
    text = "\n\n".join(
        [greeting, paragraphs[0], *_text_table(lines), *paragraphs[1:], closing]
    ).replace("\n\n\n", "\n\n")
    body = "".join(f"<p>{html.escape(p)}</p>" for p in [greeting, paragraphs[0]])
    if lines:
        rows = "".join(
            f'<tr><td>{html.escape(label)}</td><td align="right">{html.escape(value)}</td></tr>'
            for label, value in lines
        )
        body += f'<table cellpadding="4" style="border-collapse:collapse">{rows}</table>'
    body += "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs[1:])
    body += f"<p>Thank you,<br>{html.escape(shop)}</p>"
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>"
        f'<body style="font-family:sans-serif;color:#1d2b24">{body}</body></html>'
    )
    return Email(to=str(context["to"]), subject=subject, text=text + "\n", html=page)


def _text_table(lines: Sequence[tuple[str, str]]) -> list[str]:
    if not lines:
        return []
    width = max(len(label) for label, _ in lines) + 4
    rows = [f"  {label.ljust(width)}{value}" for label, value in lines]
    rows.insert(-1, "  " + "-" * (width + max(len(v) for _, v in lines)))
    return ["\n".join(rows)]


# Never in a message: a card number, a gateway token, a client secret, a signing secret.
_SECRETS = re.compile(
    r"\b(pm|tok|seti|src)_[A-Za-z0-9]{6,}|_secret_|\bwhsec_|\b(sk|rk)_(live|test)_"
)


def leaks(text: str) -> str | None:
    """What must not be sent that `text` holds, or None."""
    if contains_pan(text):
        return "a card number"
    if _SECRETS.search(text):
        return "a token or secret"
    return None


# -- merchants' webhooks ---------------------------------------------------------------------


def webhook_body(event_id: str, event_type: str, created: int, data: Mapping[str, Any]) -> bytes:
    """The event as a merchant's endpoint receives it (Stripe's shape)."""
    return json.dumps(
        {"id": event_id, "object": "event", "type": event_type, "created": created, "data": data},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
