"""PayPal, through its Orders v2 and Payments v2 REST APIs over httpx.

Not PayPal's Python server SDK (`paypal-server-sdk`): its calls block (requests),
and it has no webhook verification, which payql needs; this module is the few calls
payql makes, async, with our timeouts.

The flow:
- `charge` creates an order (intent CAPTURE, or AUTHORIZE for a manual capture) with
  our payment id as the purchase unit's `custom_id`: REQUIRES_ACTION, with the
  buyer's approval link as `redirect_url` and the order id as the client secret (what
  PayPal's JS buttons take);
- the buyer approves at PayPal (CHECKOUT.ORDER.APPROVED, or the shop's return page
  calling syncPayment): APPROVED, and payql calls `complete`, which captures the
  order (or authorizes it) → succeeded (or requires_capture);
- refunds go to the capture (captures/{id}/refund), as many as payql allows.

Every call that changes something sends our idempotency key as `PayPal-Request-Id`, so
a retry returns the first answer. The transaction id is always the order id; the
capture and authorization ids are read from the order when needed.

Errors: a decline (INSTRUMENT_DECLINED) is a FAILED charge; a timeout, a connection
error, a 429 or a 5xx is GatewayUnavailable (retried twice first: every write carries
its request id); a refused client id or secret is a GatewayError and an alert in the
log, never the secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from gateways.base import (
    ChargeRequest,
    ChargeState,
    GatewayConfigError,
    GatewayError,
    GatewayEvent,
    GatewayStatus,
    GatewayUnavailable,
    RefundOutcome,
    RefundReport,
    RefundState,
)
from gateways.signing import InvalidSignature

log = logging.getLogger("payql.gateways.paypal")

S = GatewayStatus
SANDBOX = "https://api-m.sandbox.paypal.com"
LIVE = "https://api-m.paypal.com"

# The currencies PayPal takes, and the decimals it wants for each: HUF and TWD have
# two in ISO 4217 but none at PayPal (payql's minor units are ISO's).
_ISO_DECIMALS = {"JPY": 0}
_PAYPAL_DECIMALS = {"JPY": 0, "HUF": 0, "TWD": 0}
CURRENCIES = frozenset(
    "AUD BRL CAD CNY CZK DKK EUR HKD HUF ILS JPY MYR MXN TWD NZD NOK PHP PLN GBP SGD SEK "
    "CHF THB USD".split()
)
# Seconds between attempts of a request that got no answer (each carries its request id).
RETRY_DELAYS = (0.2, 0.6)
# Issues that mean the buyer's funding was refused: a decline, not an error.
_DECLINES = {
    "INSTRUMENT_DECLINED": "PayPal declined the payment method the buyer chose.",
    "PAYER_CANNOT_PAY": "The buyer cannot pay with PayPal for this order.",
    "TRANSACTION_REFUSED": "PayPal refused the transaction.",
    "PAYEE_BLOCKED_TRANSACTION": "The transaction was blocked by the merchant's PayPal settings.",
}
_CAPTURE_DECLINED = "PayPal declined the capture."
# Issues on completing an order that its current state answers: read it instead.
_READ_INSTEAD = {
    "ORDER_ALREADY_CAPTURED",
    "ORDER_ALREADY_AUTHORIZED",
    "ORDER_NOT_APPROVED",
    "PAYER_ACTION_REQUIRED",
    "ORDER_ALREADY_COMPLETED",
    "ORDER_COMPLETION_IN_PROGRESS",
}
_CAPTURE_STATUS = {
    "COMPLETED": S.SUCCEEDED,
    "PENDING": S.PROCESSING,
    "DECLINED": S.FAILED,
    "FAILED": S.FAILED,
    # Captured, then refunded: still a capture (the refunds are reported on their own).
    "REFUNDED": S.SUCCEEDED,
    "PARTIALLY_REFUNDED": S.SUCCEEDED,
}
_AUTHORIZATION_STATUS = {
    "CREATED": S.REQUIRES_CAPTURE,
    "PENDING": S.PROCESSING,
    "PARTIALLY_CAPTURED": S.PROCESSING,  # its captures tell the amount
    "CAPTURED": S.PROCESSING,
    "VOIDED": S.CANCELED,
    "EXPIRED": S.CANCELED,
    "DENIED": S.FAILED,
}
_REFUND_STATUS = {
    "COMPLETED": RefundOutcome.SUCCEEDED,
    "PENDING": RefundOutcome.PENDING,
    "FAILED": RefundOutcome.FAILED,
    "CANCELLED": RefundOutcome.FAILED,
}
# A refund's custom_id: "<our payment id>:<our refund id>", so that its webhook finds both.
_REFUND_REF = ":"


class PayPalProblem(Exception):
    """PayPal answered with an error body (name, issue, debug_id)."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        details = body.get("details") or [{}]
        first = details[0] if isinstance(details[0], Mapping) else {}
        self.status = status
        self.name = str(body.get("name") or body.get("error") or "")
        self.issue = str(first.get("issue") or "")
        self.description = str(
            first.get("description") or body.get("message") or body.get("error_description") or ""
        )
        self.debug_id = str(body.get("debug_id") or "")
        super().__init__(f"{status} {self.name} {self.issue}: {self.description}")


def to_value(amount: int, currency: str) -> str:
    """payql's minor units as PayPal's amount string ("50.98", "3200")."""
    code = currency.upper()
    if code not in CURRENCIES:
        raise GatewayError(f"PayPal does not take {code}")
    iso, wanted = _ISO_DECIMALS.get(code, 2), _PAYPAL_DECIMALS.get(code, 2)
    major = Decimal(amount).scaleb(-iso)
    if major != major.quantize(Decimal(1).scaleb(-wanted)):
        raise GatewayError(f"PayPal takes whole amounts of {code} only")
    return f"{major:.{wanted}f}"


def to_minor(value: object, currency: str) -> int:
    """PayPal's amount string in payql's minor units."""
    try:
        major = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a PayPal amount") from None
    minor = major.scaleb(_ISO_DECIMALS.get(currency.upper(), 2))
    if minor != minor.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency} has")
    return int(minor)


def _amount(obj: Mapping[str, Any]) -> int:
    amount = obj.get("amount") or {}
    if not amount.get("value"):
        return 0
    return to_minor(amount["value"], str(amount.get("currency_code") or "USD"))


def _link(obj: Mapping[str, Any], *rels: str) -> str | None:
    for link in obj.get("links") or ():
        if isinstance(link, Mapping) and link.get("rel") in rels:
            return str(link.get("href"))
    return None


def _unit(order: Mapping[str, Any]) -> Mapping[str, Any]:
    units = order.get("purchase_units") or [{}]
    return units[0] if isinstance(units[0], Mapping) else {}


def _payments(order: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    found = (_unit(order).get("payments") or {}).get(kind) or []
    return [p for p in found if isinstance(p, Mapping)]


def refund_report(refund: Mapping[str, Any]) -> RefundReport:
    _, _, reference = str(refund.get("custom_id") or "").partition(_REFUND_REF)
    return RefundReport(
        refund_id=str(refund["id"]),
        amount=_amount(refund),
        status=_REFUND_STATUS.get(str(refund.get("status")), RefundOutcome.PENDING),
        reference=reference or None,
        failure_reason=(refund.get("status_details") or {}).get("reason"),
    )


def order_state(order: Mapping[str, Any]) -> ChargeState:
    """An order as our ChargeState: its own status until it is completed, then its
    capture's (or authorization's), with the refunds it lists."""
    order_id = str(order["id"])
    status = str(order.get("status"))
    refunds = tuple(refund_report(r) for r in _payments(order, "refunds") if r.get("id"))
    if status in ("CREATED", "PAYER_ACTION_REQUIRED"):
        return ChargeState(
            order_id,
            S.REQUIRES_ACTION,
            client_secret=order_id,
            redirect_url=_link(order, "payer-action", "approve"),
        )
    if status in ("APPROVED", "SAVED"):
        return ChargeState(order_id, S.APPROVED)
    if status == "VOIDED":
        return ChargeState(order_id, S.CANCELED)
    if status != "COMPLETED":
        raise ValueError(f"unknown PayPal order status {status!r}")
    captures = _payments(order, "captures")
    if captures:
        states = [_CAPTURE_STATUS.get(str(c.get("status")), S.PROCESSING) for c in captures]
        captured = sum(
            _amount(c) for c, s in zip(captures, states, strict=True) if s is S.SUCCEEDED
        )
        if S.SUCCEEDED in states:
            return ChargeState(order_id, S.SUCCEEDED, amount_captured=captured, refunds=refunds)
        if S.PROCESSING in states:
            return ChargeState(order_id, S.PROCESSING)
        return _declined(order_id, "capture_declined", _CAPTURE_DECLINED)
    authorizations = _payments(order, "authorizations")
    if authorizations:
        auth = authorizations[-1]
        mapped = _AUTHORIZATION_STATUS.get(str(auth.get("status")), S.PROCESSING)
        if mapped is S.FAILED:
            return _declined(order_id, "authorization_denied", "PayPal denied the authorization.")
        return ChargeState(order_id, mapped)
    return ChargeState(order_id, S.PROCESSING)


def _declined(order_id: str, code: str, message: str) -> ChargeState:
    return ChargeState(order_id, S.FAILED, failure_code=code, failure_message=message)


def gateway_event(event: Mapping[str, Any]) -> GatewayEvent:
    """A PayPal webhook event in our terms. Events about nothing payql tracks carry no
    charge, and are kept and acknowledged."""
    try:
        event_id, event_type = str(event["id"]), str(event["event_type"])
        resource = event["resource"]
    except (KeyError, TypeError):
        raise ValueError("not a PayPal event: id, event_type and resource are required") from None
    if not isinstance(resource, Mapping):
        raise ValueError("resource is not an object")
    related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
    transaction_id: str | None = None
    reference: str | None = None
    charge: ChargeState | None = None
    refunds: tuple[RefundReport, ...] = ()
    if event_type.startswith("CHECKOUT.ORDER."):
        transaction_id = str(resource.get("id"))
        reference = _unit(resource).get("custom_id")
        if event_type in ("CHECKOUT.ORDER.APPROVED", "CHECKOUT.ORDER.COMPLETED"):
            charge = order_state(resource)
    elif event_type.startswith("PAYMENT.CAPTURE."):
        transaction_id = related.get("order_id")
        kind = event_type.removeprefix("PAYMENT.CAPTURE.")
        if kind in ("REFUNDED", "REVERSED"):  # the resource is the refund
            reference, _, _ = str(resource.get("custom_id") or "").partition(_REFUND_REF)
            refunds = (refund_report(resource),)
            if not reference:
                # Made at PayPal (its dashboard, a reversal): nothing here names our
                # payment; syncPayment reads it from the order.
                log.error(
                    "ALERT: PayPal %s %s (%s) names no payql payment: find it by its capture "
                    "(%s) and sync that payment",
                    event_type,
                    resource.get("id"),
                    (resource.get("amount") or {}).get("value"),
                    _link(resource, "up"),
                )
        else:
            reference = resource.get("custom_id")
            status = _CAPTURE_STATUS.get(str(resource.get("status")))
            if kind == "DENIED":
                status = S.FAILED
            if status is S.FAILED and transaction_id:
                charge = _declined(transaction_id, "capture_declined", _CAPTURE_DECLINED)
            elif status is not None and transaction_id:
                captured = _amount(resource) if status is S.SUCCEEDED else 0
                charge = ChargeState(transaction_id, status, amount_captured=captured)
    elif event_type.startswith("PAYMENT.AUTHORIZATION."):
        transaction_id = related.get("order_id")
        reference = resource.get("custom_id")
        status = _AUTHORIZATION_STATUS.get(str(resource.get("status")))
        if status is S.FAILED and transaction_id:
            charge = _declined(transaction_id, "authorization_denied", "PayPal denied it.")
        elif status is not None and transaction_id:
            charge = ChargeState(transaction_id, status)
    return GatewayEvent(
        id=event_id,
        type=event_type,
        transaction_id=transaction_id,
        reference=str(reference) if reference else None,
        charge=charge,
        payload=dict(event),
        refunds=refunds,
    )


# The headers PayPal signs a webhook with, as its verification API names them.
_SIGNATURE_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}


class PayPalGateway:
    name = "paypal"
    methods = frozenset({"PAYPAL"})

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        webhook_id: str = "",
        api_base: str = SANDBOX,
        return_url: str = "",
        cancel_url: str = "",
        brand_name: str = "",
        timeout: float = 30,
    ) -> None:
        if not client_id:
            raise GatewayConfigError("client_id", "PayPal needs a client id")
        if not client_secret:
            raise GatewayConfigError("client_secret", "PayPal needs a client secret")
        self.client_id = client_id
        self._secret = client_secret
        self.webhook_id = webhook_id
        self.api_base = api_base.rstrip("/")
        self.return_url = return_url
        self.cancel_url = cancel_url or return_url
        self.brand_name = brand_name
        self.http = httpx.AsyncClient(base_url=self.api_base, timeout=timeout)
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"PayPalGateway(client_id={self.client_id!r}, api_base={self.api_base!r})"

    def accepts_token(self, method: str, token: str | None) -> str | None:
        if token is not None:
            return "PayPal payments take no token: the buyer approves at PayPal (nextAction)"
        return None

    # -- payments -----------------------------------------------------------------

    async def charge(self, request: ChargeRequest) -> ChargeState:
        context: dict[str, Any] = {"user_action": "PAY_NOW", "shipping_preference": "NO_SHIPPING"}
        if self.return_url:
            context["return_url"] = self.return_url
            context["cancel_url"] = self.cancel_url
        if self.brand_name:
            context["brand_name"] = self.brand_name[:127]
        body = {
            "intent": "AUTHORIZE" if request.manual_capture else "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": request.reference,
                    "custom_id": request.reference,
                    "amount": {
                        "currency_code": request.currency.upper(),
                        "value": to_value(request.amount, request.currency),
                    },
                }
            ],
            "payment_source": {"paypal": {"experience_context": context}},
        }
        order = await self._call("POST", "/v2/checkout/orders", body, request.idempotency_key)
        return order_state(order)

    async def complete(
        self, transaction_id: str, manual_capture: bool, idempotency_key: str
    ) -> ChargeState:
        step = "authorize" if manual_capture else "capture"
        try:
            order = await self._call(
                "POST", f"/v2/checkout/orders/{transaction_id}/{step}", {}, idempotency_key
            )
        except PayPalProblem as problem:
            if problem.issue in _DECLINES:
                return _declined(transaction_id, problem.issue.lower(), _DECLINES[problem.issue])
            if problem.issue in _READ_INSTEAD or problem.status == 404:
                return order_state(await self._order(transaction_id))
            if problem.status == 409:  # the same request id still being worked on
                raise GatewayUnavailable("PayPal is still completing this order") from None
            if problem.status == 422:
                # PayPal's business rules refused it (a restricted or closed account, a
                # limit, an expired order): no retry will complete it.
                log.warning("PayPal refused to complete %s: %s", transaction_id, problem)
                message = problem.description or "PayPal refused to complete the payment."
                return _declined(transaction_id, problem.issue.lower() or "refused", message)
            raise self._refused(problem) from None
        return order_state(order)

    async def capture(self, transaction_id: str, amount: int, idempotency_key: str) -> ChargeState:
        order = await self._order(transaction_id)
        authorization = self._open_authorization(order)
        currency = str((authorization.get("amount") or {}).get("currency_code") or "USD")
        try:
            captured = await self._call(
                "POST",
                f"/v2/payments/authorizations/{authorization['id']}/capture",
                {
                    "amount": {"currency_code": currency, "value": to_value(amount, currency)},
                    "final_capture": True,
                },
                idempotency_key,
            )
        except PayPalProblem as problem:
            if problem.issue in _DECLINES:
                return _declined(transaction_id, problem.issue.lower(), _DECLINES[problem.issue])
            raise self._refused(problem) from None
        status = _CAPTURE_STATUS.get(str(captured.get("status")), S.PROCESSING)
        if status is S.FAILED:
            return _declined(transaction_id, "capture_declined", _CAPTURE_DECLINED)
        return ChargeState(
            transaction_id,
            status,
            amount_captured=(_amount(captured) or amount) if status is S.SUCCEEDED else 0,
        )

    async def cancel(self, transaction_id: str, idempotency_key: str) -> ChargeState:
        order = await self._order(transaction_id)
        state = order_state(order)
        if state.status in (S.REQUIRES_ACTION, S.CANCELED):
            # PayPal has no cancel for an order: one its buyer never approved (or that
            # payql then never completes, as it never completes a cancelled payment)
            # takes no money.
            return ChargeState(transaction_id, S.CANCELED)
        if state.status is S.APPROVED:
            # payql may be capturing it right now: cancelling here could orphan money.
            raise GatewayError(
                "the buyer approved this PayPal payment and it is being completed: sync it, "
                "then refund it if needed"
            )
        if state.status is not S.REQUIRES_CAPTURE:
            raise GatewayError(f"a {state.status.value} PayPal payment cannot be cancelled")
        authorization = self._open_authorization(order)
        try:
            await self._call(
                "POST",
                f"/v2/payments/authorizations/{authorization['id']}/void",
                None,
                idempotency_key,
            )
        except PayPalProblem as problem:
            if problem.issue == "AUTHORIZATION_ALREADY_VOIDED":
                return ChargeState(transaction_id, S.CANCELED)
            raise self._refused(problem) from None
        return ChargeState(transaction_id, S.CANCELED)

    async def refund(self, transaction_id: str, amount: int, idempotency_key: str) -> RefundState:
        order = await self._order(transaction_id)
        captures = [c for c in _payments(order, "captures") if c.get("status") != "DECLINED"]
        if not captures:
            raise GatewayError(f"PayPal order {transaction_id} has no capture to refund")
        capture = captures[-1]
        currency = str((capture.get("amount") or {}).get("currency_code") or "USD")
        reference = idempotency_key.removeprefix("payql-")
        payment = str(_unit(order).get("custom_id") or "")
        try:
            refund = await self._call(
                "POST",
                f"/v2/payments/captures/{capture['id']}/refund",
                {
                    "amount": {"currency_code": currency, "value": to_value(amount, currency)},
                    "custom_id": f"{payment}{_REFUND_REF}{reference}"[:127],
                },
                idempotency_key,
            )
        except PayPalProblem as problem:
            raise self._refused(problem) from None
        report = refund_report(refund)
        return RefundState(report.refund_id, report.status, report.failure_reason)

    async def retrieve(self, transaction_id: str) -> ChargeState | None:
        return order_state(await self._order(transaction_id))

    async def find(self, reference: str) -> ChargeState | None:
        """PayPal cannot list orders by our reference. An order whose creation answer was
        lost is harmless: only its approval link lets a buyer pay it, and nobody has it."""
        return None

    # -- webhooks -------------------------------------------------------------------

    async def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Verified by PayPal's own API (verify-webhook-signature) before it is read."""
        if not self.webhook_id:
            raise InvalidSignature("PAYQL_PAYPAL_WEBHOOK_ID is not set: no webhook is trusted")
        signed = {name: headers.get(header) for name, header in _SIGNATURE_HEADERS.items()}
        missing = [header for name, header in _SIGNATURE_HEADERS.items() if not signed[name]]
        if missing:
            raise InvalidSignature(f"no {', '.join(missing)} header")
        try:
            event = json.loads(payload)
        except ValueError:
            raise InvalidSignature("the body is not JSON") from None
        if not isinstance(event, dict):
            raise InvalidSignature("the body is not a JSON object")
        # The event goes back byte for byte: PayPal's signature covers the raw body, and
        # a re-encoded one (other spacing, other number forms) would not verify.
        fields = {**signed, "webhook_id": self.webhook_id}
        encoded = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in fields.items())
        body = ("{" + encoded + ',"webhook_event":').encode() + payload + b"}"
        try:
            answer = await self._call(
                "POST", "/v1/notifications/verify-webhook-signature", raw=body
            )
        except PayPalProblem as problem:
            if problem.status in (400, 422):
                raise InvalidSignature(f"PayPal refused to verify it: {problem.issue}") from None
            raise self._refused(problem) from None
        if answer.get("verification_status") != "SUCCESS":
            raise InvalidSignature("PayPal says the signature does not match")
        return gateway_event(event)

    # -- helpers ----------------------------------------------------------------------

    async def _order(self, order_id: str) -> Mapping[str, Any]:
        try:
            return await self._call("GET", f"/v2/checkout/orders/{order_id}")
        except PayPalProblem as problem:
            raise self._refused(problem) from None

    @staticmethod
    def _open_authorization(order: Mapping[str, Any]) -> Mapping[str, Any]:
        for authorization in reversed(_payments(order, "authorizations")):
            if authorization.get("status") in ("CREATED", "PENDING"):
                return authorization
        raise GatewayError(f"PayPal order {order.get('id')} has no open authorization")

    def _refused(self, problem: PayPalProblem) -> GatewayError:
        if problem.status in (401, 403):
            log.error(
                "ALERT: PayPal refused our credentials (%s, debug_id %s): check "
                "PAYQL_PAYPAL_CLIENT_ID and PAYQL_PAYPAL_CLIENT_SECRET",
                problem.name,
                problem.debug_id,
            )
            return GatewayError("the PayPal account refused the request (configuration)")
        log.warning("PayPal refused a request: %s (debug_id %s)", problem, problem.debug_id)
        return GatewayError(problem.description or problem.issue or problem.name or "refused")

    async def _access_token(self, stale: str | None = None) -> str:
        async with self._token_lock:
            if self._token and self._token != stale and time.monotonic() < self._token_expires:
                return self._token
            try:
                response = await self.http.post(
                    "/v1/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(self.client_id, self._secret),
                    headers={"Accept": "application/json"},
                )
            except httpx.HTTPError as exc:
                raise GatewayUnavailable(f"PayPal did not answer: {type(exc).__name__}") from None
            if response.status_code >= 500 or response.status_code == 429:
                raise GatewayUnavailable(f"PayPal failed ({response.status_code})")
            if response.status_code != 200:
                raise self._refused(PayPalProblem(401, _json(response))) from None
            body = _json(response)
            self._token = str(body["access_token"])
            # Renewed a minute early, so that no request carries one about to expire.
            self._token_expires = time.monotonic() + max(int(body.get("expires_in", 0)) - 60, 0)
            return self._token

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        *,
        raw: bytes | None = None,
    ) -> Mapping[str, Any]:
        """One API call: JSON in and out, our request id on writes, a renewed token on a
        401, retries of an unanswered request. Raises PayPalProblem for an error body."""
        content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        token = await self._access_token()
        renewed = False
        delays = list(RETRY_DELAYS)
        while True:
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Prefer": "return=representation",
            }
            if request_id is not None:
                headers["PayPal-Request-Id"] = request_id
            failure: str
            try:
                response = await self.http.request(method, path, content=content, headers=headers)
            except httpx.HTTPError as exc:
                failure = f"PayPal did not answer: {type(exc).__name__}"
            else:
                if response.status_code == 401 and not renewed:
                    renewed = True  # the token expired early, or was revoked: once more
                    token = await self._access_token(stale=token)
                    continue
                if response.status_code < 300:
                    return _json(response) if response.content else {}
                if response.status_code < 500 and response.status_code != 429:
                    raise PayPalProblem(response.status_code, _json(response))
                failure = f"PayPal failed ({response.status_code})"
                debug_id = _json(response).get("debug_id")
                if debug_id:
                    failure += f", debug_id {debug_id}"
            if not delays:
                raise GatewayUnavailable(failure)
            log.warning("%s %s: %s; retrying", method, path, failure)
            await asyncio.sleep(delays.pop(0))

    async def aclose(self) -> None:
        await self.http.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


__all__ = ["LIVE", "SANDBOX", "PayPalGateway", "gateway_event", "order_state"]
