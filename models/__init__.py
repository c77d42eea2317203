"""Tortoise models, money, the payment rules and the one write path (write_path/)."""

# The modules Tortoise loads as the "models" app: ours, and the simulated gateway's
# own tables (it keeps its state in the service's database, apart from ours).
# aerich.models keeps the record of applied migrations (models/migrations/<engine>/).
TORTOISE_MODULES = ["models.tables", "gateways.simulated_store", "aerich.models"]
