"""Gateways behind one small interface, picked by name.

`create_gateway(name, **options)` imports a gateway's module only when it is asked
for, like broadcaster's backends, so an unused gateway's SDK is never loaded.

The built-in gateways are below. Any installed package can add one through the
`payql.gateways` entry-point group: the entry point's name is the gateway's, and
it points at a class (or any callable) taking the gateway's options as keyword
arguments. gateways/README.md documents the interface; tests/plugins/ holds a
complete example package.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from gateways.base import Gateway

ENTRY_POINTS = "payql.gateways"

_GATEWAYS = {
    "simulated": "gateways.simulated:SimulatedGateway",
    "manual": "gateways.manual:ManualGateway",
    "stripe": "gateways.stripe:StripeGateway",
}


class GatewayNotFound(LookupError):
    """No built-in gateway and no installed plug-in has this name."""


def plugins() -> dict[str, str]:
    """Installed plug-in gateways: name -> where its entry point points."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINTS)}


def available() -> list[str]:
    return sorted(set(_GATEWAYS) | set(plugins()))


def create_gateway(name: str, **options: Any) -> Gateway:
    """The gateway called `name`, made with `options`. Raises GatewayNotFound, the
    plug-in's own import errors, and GatewayConfigError for a bad option."""
    if name in _GATEWAYS:
        module_name, _, class_name = _GATEWAYS[name].partition(":")
        factory = getattr(import_module(module_name), class_name)
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name == name]
        if not found:
            raise GatewayNotFound(
                f"unknown gateway {name!r}: no built-in gateway and no installed package "
                f"names it in the {ENTRY_POINTS!r} entry points (known: "
                f"{', '.join(available())})"
            )
        factory = found[0].load()
    gateway: Gateway = factory(**options)
    return gateway
