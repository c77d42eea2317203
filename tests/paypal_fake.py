"""A small PayPal for the tests: its REST API over real HTTP, answering with the
shapes PayPal documents (Orders v2, Payments v2, OAuth 2, webhook verification).

No PayPal emulator exists. This one keeps orders in memory and behaves as PayPal's
documentation says: an order waits for its buyer's approval, is captured (or
authorized) once, refunds never exceed the capture, a repeated `PayPal-Request-Id`
gets the first answer again, an expired token gets 401. Its errors have PayPal's body
(name, details[].issue, debug_id). Faults are scripted per operation: a status (5xx),
a delay (a timeout), an issue (INSTRUMENT_DECLINED), or an answer lost after the work.

Webhooks are signed the way PayPal signs them, over
"<transmission id>|<transmission time>|<webhook id>|<CRC32 of the raw body>", with an
HMAC standing in for PayPal's RSA certificate; its verify-webhook-signature endpoint
checks that signature over the event exactly as it was sent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CLIENT_ID = "paypal-client-id-tests"
CLIENT_SECRET = "paypal-client-secret-tests"
WEBHOOK_ID = "WH-TESTS-0001"
_SIGNING_KEY = b"the-fake-paypal-certificate"


@dataclass
class Fault:
    status: int | None = None  # answer with this status (PayPal's error body)
    delay: float = 0.0  # wait this long first (longer than the client's timeout)
    issue: str | None = None  # a 422 with this issue (INSTRUMENT_DECLINED, …)
    lose: bool = False  # do the work, then answer 500: the caller never hears


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _id() -> str:
    return secrets.token_hex(9).upper()[:17]


def _money(value: Decimal, currency: str) -> dict[str, str]:
    places = 0 if currency in ("JPY", "HUF", "TWD") else 2
    return {"currency_code": currency, "value": f"{value:.{places}f}"}


def _error(status: int, name: str, issue: str, description: str) -> JSONResponse:
    return JSONResponse(
        {
            "name": name,
            "message": "The requested action could not be performed, semantically incorrect, "
            "or failed business validation.",
            "details": [{"issue": issue, "description": description}],
            "debug_id": secrets.token_hex(7),
            "links": [
                {
                    "href": f"https://developer.paypal.com/api/rest/reference/orders/v2/errors/#{issue}",
                    "rel": "information_link",
                }
            ],
        },
        status_code=status,
    )


class FakePayPal:
    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.authorizations: dict[str, str] = {}  # authorization id -> order id
        self.captures: dict[str, str] = {}  # capture id -> order id
        self.tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.replies: dict[tuple[str, str], tuple[int, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.request_ids: defaultdict[str, list[str]] = defaultdict(list)
        self.faults: defaultdict[str, list[Fault]] = defaultdict(list)
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        app = Starlette(
            routes=[
                Route("/v1/oauth2/token", self._token, methods=["POST"]),
                Route("/v2/checkout/orders", self._create, methods=["POST"]),
                Route("/v2/checkout/orders/{id}", self._get, methods=["GET"]),
                Route("/v2/checkout/orders/{id}/capture", self._capture, methods=["POST"]),
                Route("/v2/checkout/orders/{id}/authorize", self._authorize, methods=["POST"]),
                Route(
                    "/v2/payments/authorizations/{id}/capture",
                    self._capture_authorization,
                    methods=["POST"],
                ),
                Route("/v2/payments/authorizations/{id}/void", self._void, methods=["POST"]),
                Route("/v2/payments/captures/{id}/refund", self._refund, methods=["POST"]),
                Route("/v1/notifications/verify-webhook-signature", self._verify, methods=["POST"]),
            ]
        )
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- running ----------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> FakePayPal:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake PayPal did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    # -- what tests do ------------------------------------------------------------------

    def fail_next(self, operation: str, fault: Fault, times: int = 1) -> None:
        """The next `times` calls of `operation` (create, get, capture, authorize,
        capture_authorization, void, refund, verify, token) meet `fault`."""
        with self._lock:
            self.faults[operation].extend([fault] * times)

    def approve(self, order_id: str) -> dict[str, Any]:
        """The buyer approves the order on PayPal's page; returns the order, for its
        CHECKOUT.ORDER.APPROVED webhook."""
        with self._lock:
            order = self.orders[order_id]
            if order["status"] not in ("CREATED", "PAYER_ACTION_REQUIRED"):
                raise AssertionError(f"order {order_id} is {order['status']}")
            order["status"] = "APPROVED"
            order["payer"] = {
                "name": {"given_name": "Test", "surname": "Buyer"},
                "email_address": "buyer@example.com",
                "payer_id": _id()[:13],
            }
            step = "authorize" if order["intent"] == "AUTHORIZE" else "capture"
            order["links"] = [
                self._self_link(order_id),
                {
                    "href": f"{self.url}/v2/checkout/orders/{order_id}/{step}",
                    "rel": step,
                    "method": "POST",
                },
            ]
            return json.loads(json.dumps(order))

    def refund_in_dashboard(self, order_id: str, value: str) -> dict[str, Any]:
        """A refund made by the merchant in PayPal's own dashboard: no custom_id."""
        with self._lock:
            payments = self.orders[order_id]["purchase_units"][0]["payments"]
            capture = payments["captures"][-1]
            refund_id = _id()
            refund = {
                "id": refund_id,
                "amount": {"currency_code": capture["amount"]["currency_code"], "value": value},
                "status": "COMPLETED",
                "create_time": _now(),
                "links": [
                    {"href": f"{self.url}/v2/payments/captures/{capture['id']}", "rel": "up"}
                ],
            }
            payments.setdefault("refunds", []).append(refund)
            capture["status"] = "PARTIALLY_REFUNDED"
            return json.loads(json.dumps(refund))

    def expire_tokens(self) -> None:
        """Every access token expires now: the next call with one gets 401."""
        with self._lock:
            self.tokens.clear()

    def event(self, event_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"WH-{_id()}-{_id()}",
            "event_version": "1.0",
            "create_time": _now(),
            "resource_type": event_type.split(".")[0].lower(),
            "event_type": event_type,
            "summary": event_type.replace(".", " ").lower(),
            "resource": resource,
            "links": [],
        }

    def signed(
        self, event: dict[str, Any], webhook_id: str = WEBHOOK_ID
    ) -> tuple[bytes, dict[str, str]]:
        """The event's body and headers as PayPal would send them to `webhook_id`."""
        body = json.dumps(event, indent=1).encode()  # PayPal's own spacing, not ours
        transmission_id = secrets.token_hex(16)
        transmission_time = _now()
        return body, {
            "Content-Type": "application/json",
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "PAYPAL-CERT-URL": "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-fake",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": transmission_time,
            "PAYPAL-TRANSMISSION-SIG": self._signature(
                transmission_id, transmission_time, webhook_id, body
            ),
        }

    def capture_resource(self, order_id: str) -> dict[str, Any]:
        captures = self.orders[order_id]["purchase_units"][0]["payments"]["captures"]
        return json.loads(json.dumps(captures[-1]))

    def refund_resources(self, order_id: str) -> list[dict[str, Any]]:
        payments = self.orders[order_id]["purchase_units"][0].get("payments", {})
        return json.loads(json.dumps(payments.get("refunds", [])))

    # -- the API ----------------------------------------------------------------------------

    @staticmethod
    def _signature(
        transmission_id: str, transmission_time: str, webhook_id: str, body: bytes
    ) -> str:
        message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}"
        digest = hmac.new(_SIGNING_KEY, message.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    async def _fault(self, operation: str) -> Fault | None:
        self.calls[operation] += 1
        with self._lock:
            fault = self.faults[operation].pop(0) if self.faults[operation] else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        return fault

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = self.tokens.get(token)
        return scheme == "Bearer" and expiry is not None and time.monotonic() < expiry

    async def _api(self, request: Request, operation: str, work: Any) -> Response:
        """Auth, faults, and PayPal-Request-Id: a repeated id gets the first answer."""
        body = await request.body()  # before a delay: the work goes on if the caller left
        request_id = request.headers.get("paypal-request-id")
        if request_id:
            self.request_ids[operation].append(request_id)
        fault = await self._fault(operation)
        if not self._authorized(request):
            return JSONResponse(
                {
                    "error": "invalid_token",
                    "error_description": "Token signature verification failed",
                },
                status_code=401,
            )
        if fault is not None and fault.status is not None:
            return JSONResponse(
                {
                    "name": "INTERNAL_SERVER_ERROR",
                    "message": "An internal server error occurred.",
                    "debug_id": secrets.token_hex(7),
                },
                status_code=fault.status,
            )
        if fault is not None and fault.issue is not None:
            return _error(422, "UNPROCESSABLE_ENTITY", fault.issue, f"{fault.issue} (scripted)")
        data = json.loads(body) if body else {}
        key = (request.url.path, request_id or "")
        if request_id:
            with self._lock:
                replayed = self.replies.get(key)
            if replayed is not None:
                return JSONResponse(replayed[1], status_code=replayed[0])
        with self._lock:
            response = work(request.path_params, data)
            if request_id and response.status_code < 300:
                self.replies[key] = (response.status_code, json.loads(response.body))
        if fault is not None and fault.lose:
            return JSONResponse({"name": "INTERNAL_SERVER_ERROR"}, status_code=500)
        return response

    async def _token(self, request: Request) -> Response:
        fault = await self._fault("token")
        if fault is not None and fault.status is not None:
            return JSONResponse({"error": "server_error"}, status_code=fault.status)
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        given = base64.b64decode(encoded).decode() if scheme == "Basic" else ""
        form = (await request.body()).decode()
        if given != f"{CLIENT_ID}:{CLIENT_SECRET}" or form != "grant_type=client_credentials":
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status_code=401,
            )
        token = f"A21AA{secrets.token_urlsafe(24)}"
        with self._lock:
            self.tokens[token] = time.monotonic() + 32400
        return JSONResponse(
            {
                "scope": "https://uri.paypal.com/services/payments/payment",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": 32400,
                "nonce": secrets.token_hex(8),
            }
        )

    def _self_link(self, order_id: str) -> dict[str, str]:
        return {"href": f"{self.url}/v2/checkout/orders/{order_id}", "rel": "self", "method": "GET"}

    async def _create(self, request: Request) -> Response:
        def work(params: dict[str, str], data: dict[str, Any]) -> Response:
            if data.get("intent") not in ("CAPTURE", "AUTHORIZE"):
                return _error(400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE", "intent")
            unit = data["purchase_units"][0]
            order_id = _id()
            order = {
                "id": order_id,
                "intent": data["intent"],
                "status": "PAYER_ACTION_REQUIRED",
                "payment_source": {"paypal": {}},
                "purchase_units": [
                    {
                        "reference_id": unit.get("reference_id", "default"),
                        "custom_id": unit.get("custom_id"),
                        "amount": unit["amount"],
                        "payee": {
                            "email_address": "merchant@example.com",
                            "merchant_id": "MERCHANT1",
                        },
                    }
                ],
                "create_time": _now(),
                "links": [
                    self._self_link(order_id),
                    {
                        "href": f"https://www.sandbox.paypal.com/checkoutnow?token={order_id}",
                        "rel": "payer-action",
                        "method": "GET",
                    },
                ],
            }
            self.orders[order_id] = order
            return JSONResponse(order, status_code=200)

        return await self._api(request, "create", work)

    async def _get(self, request: Request) -> Response:
        def work(params: dict[str, str], data: dict[str, Any]) -> Response:
            order = self.orders.get(params["id"])
            if order is None:
                return _error(
                    404,
                    "RESOURCE_NOT_FOUND",
                    "INVALID_RESOURCE_ID",
                    "Specified resource ID does not exist.",
                )
            return JSONResponse(order)

        return await self._api(request, "get", work)

    def _completable(self, order_id: str, intent: str) -> Response | dict[str, Any]:
        order = self.orders.get(order_id)
        if order is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such order")
        if order["intent"] != intent:
            return _error(
                422,
                "UNPROCESSABLE_ENTITY",
                "ACTION_DOES_NOT_MATCH_INTENT",
                "the order's intent differs",
            )
        if order["status"] == "COMPLETED":
            issue = "ORDER_ALREADY_CAPTURED" if intent == "CAPTURE" else "ORDER_ALREADY_AUTHORIZED"
            return _error(422, "UNPROCESSABLE_ENTITY", issue, "the order is completed already")
        if order["status"] != "APPROVED":
            return _error(
                422,
                "UNPROCESSABLE_ENTITY",
                "ORDER_NOT_APPROVED",
                "Payer has not yet approved the Order for payment.",
            )
        return order

    def _new_capture(self, order: dict[str, Any], amount: dict[str, str]) -> dict[str, Any]:
        capture_id = _id()
        self.captures[capture_id] = order["id"]
        unit = order["purchase_units"][0]
        return {
            "id": capture_id,
            "status": "COMPLETED",
            "amount": amount,
            "final_capture": True,
            "seller_protection": {"status": "ELIGIBLE"},
            "custom_id": unit.get("custom_id"),
            "supplementary_data": {"related_ids": {"order_id": order["id"]}},
            "create_time": _now(),
            "update_time": _now(),
            "links": [{"href": f"{self.url}/v2/payments/captures/{capture_id}", "rel": "self"}],
        }

    async def _capture(self, request: Request) -> Response:
        def work(params: dict[str, str], data: dict[str, Any]) -> Response:
            found = self._completable(params["id"], "CAPTURE")
            if isinstance(found, Response):
                return found
            unit = found["purchase_units"][0]
            unit["payments"] = {"captures": [self._new_capture(found, unit["amount"])]}
            found["status"] = "COMPLETED"
            found["links"] = [self._self_link(found["id"])]
            return JSONResponse(found, status_code=201)

        return await self._api(request, "capture", work)

    async def _authorize(self, request: Request) -> Response:
        def work(params: dict[str, str], data: dict[str, Any]) -> Response:
            found = self._completable(params["id"], "AUTHORIZE")
            if isinstance(found, Response):
                return found
            unit = found["purchase_units"][0]
            authorization_id = _id()
            self.authorizations[authorization_id] = found["id"]
            unit["payments"] = {
                "authorizations": [
                    {
                        "id": authorization_id,
                        "status": "CREATED",
                        "amount": unit["amount"],
                        "custom_id": unit.get("custom_id"),
                        "supplementary_data": {"related_ids": {"order_id": found["id"]}},
                        "expiration_time": "2099-01-01T00:00:00Z",
                        "create_time": _now(),
                    }
                ]
            }
            found["status"] = "COMPLETED"
            return JSONResponse(found, status_code=201)

        return await self._api(request, "authorize", work)

    def _authorization(self, authorization_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        order_id = self.authorizations.get(authorization_id)
        if order_id is None:
            return None
        order = self.orders[order_id]
        for authorization in order["purchase_units"][0]["payments"]["authorizations"]:
            if authorization["id"] == authorization_id:
                return order, authorization
        return None

    async def _capture_authorization(self, request: Request) -> Response:
        def work(params: dict[str, str], data: dict[str, Any]) -> Response:
            found = self._authorization(params["id"])
            if found is None:
                return _error(
                    404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such authorization"
                )
            order, authorization = found
            if authorization["status"] != "CREATED":
                return _error(
                    422,
                    "UNPROCESSABLE_ENTITY",
                    "AUTHORIZATION_ALREADY_CAPTURED",
                    f"the authorization is {authorization['status']}",
                )
            amount = data.get("amount") or authorization["amount"]
            if Decimal(amount["value"]) > Decimal(authorization["amount"]["value"]):
                return _error(
                    422,
                    "UNPROCESSABLE_ENTITY",
                    "MAX_CAPTURE_AMOUNT_EXCEEDED",
                    "the capture exceeds the authorization",
                )
            capture = self._new_capture(order, amount)
            authorization["status"] = "CAPTURED"
            order["purchase_units"][0]["payments"].setdefault("captures", []).append(capture)
            return JSONResponse(capture, status_code=201)

        return await self._api(request, "capture_authorization", work)

    async def _void(self, request: Request) -> Response:
        def work(params: dict[str, str], data: dict[str, Any]) -> Response:
            found = self._authorization(params["id"])
            if found is None:
                return _error(
                    404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such authorization"
                )
            _, authorization = found
            if authorization["status"] == "VOIDED":
                return _error(422, "UNPROCESSABLE_ENTITY", "AUTHORIZATION_ALREADY_VOIDED", "voided")
            if authorization["status"] != "CREATED":
                return _error(422, "UNPROCESSABLE_ENTITY", "CANNOT_BE_VOIDED", "captured")
            authorization["status"] = "VOIDED"
            return JSONResponse(authorization)

        return await self._api(request, "void", work)

    async def _refund(self, request: Request) -> Response:
        def work(params: dict[str, str], data: dict[str, Any]) -> Response:
            order_id = self.captures.get(params["id"])
            if order_id is None:
                return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such capture")
            payments = self.orders[order_id]["purchase_units"][0]["payments"]
            capture = next(c for c in payments["captures"] if c["id"] == params["id"])
            currency = capture["amount"]["currency_code"]
            captured = Decimal(capture["amount"]["value"])
            refunded = sum(
                (Decimal(r["amount"]["value"]) for r in payments.get("refunds", [])), Decimal(0)
            )
            amount = Decimal(data["amount"]["value"]) if data.get("amount") else captured - refunded
            if amount <= 0 or refunded + amount > captured:
                return _error(
                    422,
                    "UNPROCESSABLE_ENTITY",
                    "REFUND_AMOUNT_EXCEEDED",
                    "The refund amount must be less than or equal to the capture amount "
                    "that has not yet been refunded.",
                )
            refund_id = _id()
            refund = {
                "id": refund_id,
                "amount": _money(amount, currency),
                "status": "COMPLETED",
                "custom_id": data.get("custom_id"),
                "create_time": _now(),
                "update_time": _now(),
                "links": [
                    {"href": f"{self.url}/v2/payments/refunds/{refund_id}", "rel": "self"},
                    {"href": f"{self.url}/v2/payments/captures/{capture['id']}", "rel": "up"},
                ],
            }
            payments.setdefault("refunds", []).append(refund)
            capture["status"] = (
                "REFUNDED" if refunded + amount == captured else "PARTIALLY_REFUNDED"
            )
            return JSONResponse(refund, status_code=201)

        return await self._api(request, "refund", work)

    async def _verify(self, request: Request) -> Response:
        fault = await self._fault("verify")
        if fault is not None and fault.status is not None:
            return JSONResponse({"name": "INTERNAL_SERVER_ERROR"}, status_code=fault.status)
        if not self._authorized(request):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        raw = (await request.body()).decode()
        data = json.loads(raw)
        # The event exactly as the caller sent it back: PayPal's signature covers the raw
        # body, so a caller that re-encoded it would fail here, as it would at PayPal.
        marker = '"webhook_event":'
        start = raw.index(marker) + len(marker)
        while raw[start].isspace():
            start += 1
        _, end = json.JSONDecoder().raw_decode(raw, start)
        event = raw[start:end].encode()
        expected = self._signature(
            str(data.get("transmission_id")),
            str(data.get("transmission_time")),
            str(data.get("webhook_id")),
            event,
        )
        ok = (
            data.get("webhook_id") == WEBHOOK_ID
            and data.get("auth_algo") == "SHA256withRSA"
            and hmac.compare_digest(expected, str(data.get("transmission_sig")))
        )
        return JSONResponse({"verification_status": "SUCCESS" if ok else "FAILURE"})
