"""The demo catalog, seeded when the catalog is empty (development and tests)."""

from __future__ import annotations

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.tables import Product

DEMO_PRODUCTS = [
    # sku, name, price in minor units, currency, stock
    ("TSHIRT-BLK-M", "Black T-shirt (M)", 2500, "USD", 500),
    ("HOODIE-GRY-L", "Grey hoodie (L)", 6499, "USD", 300),
    ("MUG-WHT", "White mug", 1299, "USD", 1000),
    ("BOOK-GQL", "Learning GraphQL (book)", 3999, "USD", 200),
    ("SOCKS-3PK", "Socks, three pairs", 1500, "USD", 800),
    ("MATCHA-100G", "Uji matcha, 100 g", 3200, "JPY", 150),
    ("TEAPOT-IRON", "Cast-iron teapot", 12800, "JPY", 100),
    ("DATES-1KG", "Medjool dates, 1 kg", 4750, "KWD", 120),
]


async def seed_catalog() -> int:
    """Create the demo products if there are none; returns how many were created."""
    try:
        async with in_transaction() as conn:
            if await Product.all().using_db(conn).exists():
                return 0
            await Product.bulk_create(
                [
                    Product(sku=sku, name=name, price=price, currency=currency, stock=stock)
                    for sku, name, price, currency, stock in DEMO_PRODUCTS
                ],
                using_db=conn,
            )
    except IntegrityError:  # another worker, starting at the same time, seeded it
        return 0
    return len(DEMO_PRODUCTS)
