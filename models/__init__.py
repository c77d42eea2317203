"""Tortoise models, money, the payment rules and the one write path (commands)."""

# The modules Tortoise loads as the "models" app.
TORTOISE_MODULES = ["models.tables"]
