"""Gateways behind one small interface, picked by name.

`create_gateway(name, **options)` imports a gateway's module only when it is asked
for, like broadcaster's backends, so an unused gateway's SDK is never loaded.

The built-in gateways are below. Any installed package can add one through the
`payql.gateways` entry-point group: the entry point's name is the gateway's, and
it points at a class (or any callable) whose keyword parameters are the gateway's
options. gateways/README.md documents the interface; tests/plugins/ holds a
complete example package.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from gateways.base import Gateway

ENTRY_POINTS = "payql.gateways"

_GATEWAYS = {
    "simulated": "gateways.simulated:SimulatedGateway",
    "manual": "gateways.manual:ManualGateway",
    "stripe": "gateways.stripe:StripeGateway",
    "paypal": "gateways.paypal:PayPalGateway",
}


class GatewayNotFound(LookupError):
    """No built-in gateway and no installed plug-in has this name."""


def plugins() -> dict[str, str]:
    """Installed plug-in gateways: name -> where its entry point points."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINTS)}


def available() -> list[str]:
    return sorted(set(_GATEWAYS) | set(plugins()))


def gateway_factory(name: str) -> Callable[..., Gateway]:
    """What makes the gateway called `name`: a built-in's class, or the object a
    plug-in's entry point names (imported now). Raises GatewayNotFound, LookupError
    when two packages claim the name, and the plug-in's own import errors."""
    if name in _GATEWAYS:
        module_name, _, class_name = _GATEWAYS[name].partition(":")
        factory: Callable[..., Gateway] = getattr(import_module(module_name), class_name)
        return factory
    found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name == name]
    if not found:
        raise GatewayNotFound(
            f"unknown gateway {name!r}: no built-in gateway and no installed package "
            f"names it in the {ENTRY_POINTS!r} entry points (installed: "
            f"{', '.join(available())})"
        )
    if len({ep.value for ep in found}) > 1:
        raise LookupError(
            f"{len(found)} installed packages name the gateway {name!r} "
            f"({', '.join(ep.value for ep in found)}): uninstall all but one"
        )
    loaded: Callable[..., Gateway] = found[0].load()
    return loaded


def option_names(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The options a gateway takes: its factory's keyword parameters."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in inspect.signature(factory).parameters.values() if p.kind in kinds)


def create_gateway(name: str, **options: Any) -> Gateway:
    """The gateway called `name`, made with `options`. Raises what gateway_factory
    raises, and GatewayConfigError for a bad option."""
    return gateway_factory(name)(**options)
