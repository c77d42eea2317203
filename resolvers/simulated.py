"""POST /simulated/confirm: Stripe.js's confirmCardPayment and 3-D Secure, simulated;
`"approve": true|false` answers a PayPal payment's approval page (GET /simulated/paypal).

It changes nothing in the service's records: the simulated gateway reports the
outcome as a signed webhook to POST /webhooks/simulated, which takes the path
Stripe's take. `"sendWebhook": false` simulates a lost webhook (then syncPayment).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateways.simulated import ConfirmRefused, SimulatedGateway


def confirm_endpoint(gateway: SimulatedGateway) -> Callable[[Request], Awaitable[Response]]:
    async def confirm(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):
            return _refuse(400, "the body must be JSON")
        if not isinstance(body, dict):
            return _refuse(400, "the body must be a JSON object")
        secret = body.get("clientSecret")
        method = body.get("paymentMethod")
        authenticate = body.get("authenticate")
        approve = body.get("approve")
        send_webhook = body.get("sendWebhook", True)
        if not isinstance(secret, str) or not secret:
            return _refuse(400, "clientSecret is required")
        if method is not None and not isinstance(method, str):
            return _refuse(400, "paymentMethod must be a string such as pm_card_visa")
        if authenticate is not None and not isinstance(authenticate, bool):
            return _refuse(400, "authenticate must be true or false")
        if approve is not None and not isinstance(approve, bool):
            return _refuse(400, "approve must be true or false")
        if not isinstance(send_webhook, bool):
            return _refuse(400, "sendWebhook must be true or false")
        target = str(request.url_for("webhook", gateway=gateway.name)) if send_webhook else None
        try:
            status = await gateway.confirm(
                secret, method, authenticate, deliver_to=target, approve=approve
            )
        except ConfirmRefused as exc:
            return _refuse(exc.status, exc.message)
        return JSONResponse({"status": status})

    return confirm


def _refuse(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)
