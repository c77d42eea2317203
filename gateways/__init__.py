"""Gateways behind one small interface, picked by name.

`create_gateway(name, **options)` imports a gateway's module only when it is asked
for, like broadcaster's backends, so an unused gateway's SDK is never loaded.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from gateways.base import Gateway

_GATEWAYS = {
    "simulated": "gateways.simulated:SimulatedGateway",
    "manual": "gateways.manual:ManualGateway",
    "stripe": "gateways.stripe:StripeGateway",
}


def available() -> list[str]:
    return sorted(_GATEWAYS)


def create_gateway(name: str, **options: Any) -> Gateway:
    try:
        target = _GATEWAYS[name]
    except KeyError:
        raise ValueError(f"unknown gateway {name!r}; known: {', '.join(available())}") from None
    module_name, _, class_name = target.partition(":")
    gateway_class = getattr(import_module(module_name), class_name)
    gateway: Gateway = gateway_class(**options)
    return gateway
