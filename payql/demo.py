"""`payql seed-demo --orders N`: a history to look at, made through the write path.

Every order, payment and refund goes through PaymentService, exactly as the API's
would: the server prices each order, the simulated gateway answers each test card,
and refunds are an admin's. So the history has what real use has: several
currencies (the catalog's USD, JPY and KWD), successes, declines of each kind,
3-D Secure left waiting, authorizations not yet captured, offline payments not yet
received, and partial and full refunds. It is seeded in a fixed random order, so the
same N gives the same mix.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from models import money
from models.access import Actor
from models.errors import DomainError
from models.rules import CaptureMethod, PaymentMethod
from models.tables import Product
from models.write_path import PaymentRequest, PaymentService

CUSTOMERS = [
    ("cus_ada", "Ada Lovelace", "ada@example.com"),
    ("cus_grace", "Grace Hopper", "grace@example.com"),
    ("cus_alan", "Alan Turing", "alan@example.com"),
    ("cus_katherine", "Katherine Johnson", "katherine@example.com"),
    ("cus_edsger", "Edsger Dijkstra", "edsger@example.com"),
    ("cus_barbara", "Barbara Liskov", "barbara@example.com"),
    ("cus_yukihiro", "Yukihiro Matsumoto", "matz@example.com"),
    ("cus_fatima", "Fatima Al-Fihri", "fatima@example.com"),
]
ADMIN = Actor(customer_id="seed-demo", role="admin", email="admin@example.com")


@dataclass(frozen=True)
class Plan:
    """How one order is paid, and what happens to it afterwards."""

    name: str
    weight: int
    method: PaymentMethod = PaymentMethod.CREDIT_CARD
    token: str | None = "pm_card_visa"
    capture: CaptureMethod = CaptureMethod.AUTOMATIC
    refund: str | None = None  # "part" or "all"


PLANS = [
    Plan("paid by card", 40),
    Plan("paid by Mastercard", 8, token="pm_card_mastercard"),
    Plan("paid by debit card", 6, method=PaymentMethod.DEBIT_CARD, token="pm_card_visa_debit"),
    Plan("declined", 7, token="pm_card_chargeDeclined"),
    Plan("insufficient funds", 5, token="pm_card_chargeDeclinedInsufficientFunds"),
    Plan("expired card", 3, token="pm_card_chargeDeclinedExpiredCard"),
    Plan("waiting for 3-D Secure", 4, token="pm_card_authenticationRequired"),
    Plan("authorized, not captured", 5, capture=CaptureMethod.MANUAL),
    Plan("bank transfer expected", 4, method=PaymentMethod.BANK_TRANSFER, token=None),
    Plan("cash on delivery", 3, method=PaymentMethod.CASH_ON_DELIVERY, token=None),
    Plan("partly refunded", 8, refund="part"),
    Plan("refunded", 7, refund="all"),
]


async def seed_history(
    service: PaymentService,
    orders: int,
    progress: Callable[[int], None] = lambda done: None,
    seed: int = 2026,
) -> Counter[str]:
    """Make `orders` orders with their payments; returns how many of each outcome
    (and "out of stock" for orders the catalog could not fill)."""
    rng = random.Random(seed)
    catalog: dict[str, list[Product]] = {}
    for product in await Product.all().order_by("sku"):
        catalog.setdefault(product.currency, []).append(product)
    if not catalog:
        raise RuntimeError("the catalog is empty: seed the products first")
    currencies: list[str] = [c for c in ("USD", "JPY", "KWD") if c in catalog] or sorted(catalog)
    currency_weights = [{"USD": 7, "JPY": 2, "KWD": 1}.get(c, 1) for c in currencies]
    tally: Counter[str] = Counter()
    for n in range(orders):
        customer_id, name, email = rng.choice(CUSTOMERS)
        actor = Actor(customer_id=customer_id, role="customer", email=email, name=name)
        products = catalog[rng.choices(currencies, currency_weights)[0]]
        chosen = rng.sample(products, k=min(len(products), rng.randint(1, 3)))
        lines = [(p.sku, rng.randint(1, 2)) for p in chosen]
        plan = rng.choices(PLANS, [p.weight for p in PLANS])[0]
        try:
            order = await service.create_order(actor, lines)
        except DomainError:  # out of stock: the catalog is finite
            tally["out of stock"] += 1
            progress(n + 1)
            continue
        outcome = await service.process_payment(
            actor,
            PaymentRequest(
                order_id=order.id,
                method=plan.method,
                token=plan.token,
                capture_method=plan.capture,
                idempotency_key=f"seed-demo-{order.id}",
            ),
        )
        if outcome.error is not None or outcome.payment is None:
            tally[f"refused: {outcome.error}"] += 1
            progress(n + 1)
            continue
        payment = outcome.payment
        if plan.refund is not None:
            amount = None  # all that is refundable
            if plan.refund == "part":
                part = max(1, payment.amount // rng.choice((2, 3, 4)))
                amount = Decimal(money.to_major(part, payment.currency))
            refunded = await service.refund_payment(
                ADMIN,
                payment.id,
                amount=amount,
                reason=rng.choice(("customer request", "damaged in transit", "wrong size")),
                idempotency_key=f"seed-demo-refund-{payment.id}",
            )
            if refunded.error is not None:
                tally[f"refund refused: {refunded.error}"] += 1
        tally[plan.name] += 1
        progress(n + 1)
    return tally
