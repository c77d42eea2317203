"""POST /webhooks/{gateway}: verify the raw body, then the one write path.

A forged, stale or unsigned body gets 400 and changes nothing. A duplicate is
acknowledged and applied zero further times. An event that cannot be applied yet
(a payment not recorded yet, the database down) gets 503 so the gateway retries.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise.exceptions import BaseORMException

from gateways.base import GatewayError
from gateways.signing import InvalidSignature
from gateways.stripe_shapes import MalformedEvent
from models.commands import Busy, PaymentService, PaymentUnknown

log = logging.getLogger("payql.webhooks")


# Told of each verified webhook: (gateway, outcome, the event's payload). Metrics.
Observe = Callable[[str, str, Mapping[str, Any]], None]


def webhook_endpoint(
    service: PaymentService, observe: Observe | None = None
) -> Callable[[Request], Awaitable[Response]]:
    def seen(gateway: str, outcome: str, payload: Mapping[str, Any]) -> None:
        if observe is not None:
            observe(gateway, outcome, payload)

    async def receive(request: Request) -> Response:
        name = request.path_params["gateway"]
        gateway = service.gateways.get(name)
        if gateway is None and name in service.unavailable:
            # Configured but not working: the gateway retries once it is fixed. (Why
            # is in the log, not for whoever posts here.)
            return JSONResponse({"error": "gateway unavailable; retry later"}, status_code=503)
        if gateway is None:
            return JSONResponse({"error": f"no gateway named {name!r}"}, status_code=404)
        payload = await request.body()  # bounded by PAYQL_MAX_BODY_BYTES (payql/security.py)
        try:
            parsed = gateway.parse_webhook(payload, request.headers)
            # PayPal's are verified by asking PayPal.
            event = await parsed if inspect.isawaitable(parsed) else parsed
        except InvalidSignature as exc:
            log.warning("refused a %s webhook: %s", name, exc)
            return JSONResponse({"error": f"signature refused: {exc}"}, status_code=400)
        except MalformedEvent as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except (ValueError, KeyError, TypeError) as exc:  # a signed body it cannot read
            log.warning("refused a %s webhook it could not read: %r", name, exc)
            return JSONResponse({"error": "the event could not be read"}, status_code=400)
        except GatewayError as exc:  # the processor could not verify it now
            log.warning("could not verify a %s webhook now: %s", name, exc)
            return JSONResponse(
                {"error": "could not verify the event now; retry later"}, status_code=503
            )
        try:
            outcome = await service.apply_webhook(name, event)
        except PaymentUnknown as exc:
            seen(name, "retry", event.payload)
            return JSONResponse({"error": f"{exc}; retry later"}, status_code=503)
        except (Busy, GatewayError, BaseORMException, OSError):
            log.exception("could not apply %s webhook %s", name, event.id)
            seen(name, "retry", event.payload)
            return JSONResponse(
                {"error": "could not apply the event now; retry later"}, status_code=503
            )
        seen(name, outcome, event.payload)
        return JSONResponse({"received": True, "outcome": outcome})

    return receive
