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

from opentelemetry.trace import Span
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise.exceptions import BaseORMException

from gateways.base import GatewayError
from gateways.signing import InvalidSignature
from gateways.stripe_shapes import MalformedEvent
from models.spans import failed, note, span
from models.write_path import Busy, PaymentService, PaymentUnknown

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
        # The gateway's name only when it is one of ours, never another path's words.
        ours = name in service.gateways or name in service.unavailable
        async with span("payql.webhook", {"payql.gateway": name if ours else None}) as current:
            response, outcome = await handle(request, name, current)
            status = response.status_code
            note(current, {"payql.webhook.outcome": outcome, "http.response.status_code": status})
            if status >= 500:
                failed(current, str(status))
            return response

    async def handle(request: Request, name: str, current: Span) -> tuple[Response, str]:
        gateway = service.gateways.get(name)
        if gateway is None and name in service.unavailable:
            # Configured but not working: the gateway retries once it is fixed. (Why
            # is in the log, not for whoever posts here.)
            return _error("gateway unavailable; retry later", 503), "unavailable"
        if gateway is None:
            return _error(f"no gateway named {name!r}", 404), "unknown_gateway"
        payload = await request.body()  # bounded by PAYQL_MAX_BODY_BYTES (payql/security.py)
        try:
            parsed = gateway.parse_webhook(payload, request.headers)
            # PayPal's are verified by asking PayPal.
            event = await parsed if inspect.isawaitable(parsed) else parsed
        except InvalidSignature as exc:
            log.warning("refused a %s webhook: %s", name, exc)
            return _error(f"signature refused: {exc}", 400), "refused"
        except MalformedEvent as exc:
            return _error(str(exc), 400), "refused"
        except (ValueError, KeyError, TypeError) as exc:  # a signed body it cannot read
            log.warning("refused a %s webhook it could not read: %r", name, exc)
            return _error("the event could not be read", 400), "refused"
        except GatewayError as exc:  # the processor could not verify it now
            log.warning("could not verify a %s webhook now: %s", name, exc)
            return _error("could not verify the event now; retry later", 503), "retry"
        note(current, {"payql.webhook.event_type": event.type, "payql.webhook.event_id": event.id})
        try:
            outcome = await service.apply_webhook(name, event)
        except PaymentUnknown as exc:
            seen(name, "retry", event.payload)
            return _error(f"{exc}; retry later", 503), "retry"
        except (Busy, GatewayError, BaseORMException, OSError):
            log.exception("could not apply %s webhook %s", name, event.id)
            seen(name, "retry", event.payload)
            return _error("could not apply the event now; retry later", 503), "retry"
        seen(name, outcome, event.payload)
        return JSONResponse({"received": True, "outcome": outcome}), outcome

    return receive


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status_code=status)
