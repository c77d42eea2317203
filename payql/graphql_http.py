"""GraphQL over HTTP (the GraphQL Foundation's spec): which media type an answer is
sent in, and with which status code.

- `application/graphql-response+json` when the client's Accept prefers it. Then the
  status says what happened: 200 once execution started (data present, even with
  field errors); 400, and no `data` entry, for a request that never ran (a document
  that does not parse or validate, variables that do not coerce, an operationName
  the document does not have, a malformed request); 500 for an unexpected failure
  before execution. (A document of several operations sent without operationName
  runs its first, as payql always has; the spec would refuse it.)
- `application/json` when the client asks for it, sends `*/*`, or sends no Accept at
  all (the legacy type, which the spec leaves the default to the server for): 200 for
  every GraphQL answer, errors or not, as the spec says for that type; 4xx only for a
  request that is not GraphQL over HTTP at all.
- 406 for an Accept that allows neither; 405 for a mutation sent by GET.

Every refusal of the view is a GraphQL-shaped body (`{"errors": [{"message": …}]}`)
in the negotiated type, never bare text. Authentication (401) is payql's own: see
PayqlGraphQL in payql/app.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
# What payql answers in. On a tie (`*/*`, `application/*`) the first: the legacy
# type, which every GraphQL client reads.
SERVED = (JSON, GRAPHQL_RESPONSE_JSON)
NOT_ACCEPTABLE = (
    f"this endpoint answers in {GRAPHQL_RESPONSE_JSON} or {JSON}: the Accept header allows neither"
)
SUBSCRIPTIONS_OVER_HTTP = (
    "subscriptions are served over the websocket only (graphql-transport-ws, on this same URL)"
)
CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
}

ContextT = TypeVar("ContextT")
RootValueT = TypeVar("RootValueT")


@dataclass(frozen=True)
class _Range:
    type: str
    subtype: str
    q: float
    index: int

    def specificity(self, media_type: str) -> int | None:
        """How closely this range names `media_type` (2 exactly, 1 `type/*`, 0
        `*/*`), or None when it does not cover it."""
        kind, _, sub = media_type.partition("/")
        if self.type == "*" and self.subtype == "*":
            return 0
        if self.type != kind:
            return None
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == sub else None


def _ranges(accept: str) -> list[_Range]:
    ranges = []
    for index, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        if media == "*":  # some old clients mean */*
            media = "*/*"
        kind, slash, sub = media.partition("/")
        if not slash or not kind or not sub:
            continue
        q = 1.0
        usable = True
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"').lower()
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    usable = False
                if not 0 <= q <= 1:
                    usable = False
            elif name == "charset" and value not in ("utf-8", "utf8"):
                usable = False  # we only ever answer in UTF-8
        if usable:
            ranges.append(_Range(kind, sub, q, index))
    return ranges


def negotiate(accept: str | None) -> str | None:
    """The media type to answer in for this Accept header, or None if it allows none
    that payql serves (then the answer is 406). No Accept at all: application/json."""
    if accept is None or not accept.strip():
        return JSON
    ranges = _ranges(accept)
    best: tuple[float, int, int] | None = None
    chosen = None
    for media_type in SERVED:
        # The most specific range that covers the type decides its quality (so
        # `*/*, application/json;q=0` refuses JSON), the first such one on a tie.
        covering = [(r.specificity(media_type), -r.index, r) for r in ranges]
        matches = [(s, i, r) for s, i, r in covering if s is not None]
        if not matches:
            continue
        specificity, order, decisive = max(matches, key=lambda m: (m[0], m[1]))
        if decisive.q <= 0:
            continue
        key = (decisive.q, specificity, order)
        if best is None or key > best:
            best, chosen = key, media_type
    return chosen


def accept_header(headers: Mapping[str, str]) -> str | None:
    """Every Accept header the request has, as one (HTTP allows sending it twice)."""
    getlist = getattr(headers, "getlist", None)
    found = getlist("accept") if getlist is not None else [headers.get("accept")]
    values = [str(v) for v in found if v is not None]
    return ", ".join(values) if values else None


def answer_type(headers: Mapping[str, str]) -> str:
    """The negotiated type, or application/json for a refusal of an Accept (406)."""
    return negotiate(accept_header(headers)) or JSON


def is_request_error(result: ExecutionResult) -> bool:
    """True when the operation never started (GraphQL's "request errors"): the document
    did not parse or validate, the variables did not coerce, the caller was refused.
    Field errors always carry a path; these never do."""
    if isinstance(result, PreExecutionError):
        return True
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def status_for(media_type: str, body: GraphQLHTTPResponse | list[GraphQLHTTPResponse]) -> int:
    """A GraphQL answer's status: with application/json always 200; with
    application/graphql-response+json 200 when it has data, else 400 (500 when what
    stopped it was payql's own failure)."""
    if media_type != GRAPHQL_RESPONSE_JSON or isinstance(body, list) or "data" in body:
        return 200
    errors = body.get("errors") or []
    internal = any(
        isinstance(error, dict)
        and (error.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR"
        for error in errors
    )
    return 500 if internal else 400


class MutationOverGet(HTTPException):
    """GET must not run a mutation: 405, with `Allow: POST`."""

    def __init__(self, reason: str) -> None:
        super().__init__(405, reason)


class _SubResponse(Response):
    """Strawberry's per-request response (status, headers set by resolvers), which also
    carries the media type negotiated for the request."""

    answer_type: str = JSON


class GraphQLOverHTTP(GraphQL[ContextT, RootValueT]):
    """Strawberry's ASGI view, answering the GraphQL-over-HTTP way (module docstring)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as exc:
            response = self.refusal(request, exc)
        await response(scope, receive, send)

    def refusal(self, request: Request, exc: HTTPException) -> Response:
        """A request refused before any GraphQL ran, as a GraphQL body with no data."""
        headers = {}
        if exc.status_code == 405:
            headers["allow"] = "POST" if isinstance(exc, MutationOverGet) else "GET, POST"
        error: dict[str, Any] = {"message": exc.reason}
        if exc.status_code in CODES:
            error["extensions"] = {"code": CODES[exc.status_code]}
        return Response(
            self.encode_json({"errors": [error]}),
            status_code=exc.status_code,
            media_type=f"{answer_type(request.headers)}; charset=utf-8",
            headers=headers,
        )

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = _SubResponse()
        sub_response.status_code = None  # type: ignore[assignment]  # as Strawberry's own
        del sub_response.headers["content-length"]
        sub_response.answer_type = answer_type(request.headers)
        return sub_response

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        # After the GraphiQL page's turn (a browser asking for text/html), before the
        # body is read: an Accept allowing neither type stops the request here.
        if negotiate(accept_header(request.headers)) is None:
            raise HTTPException(406, NOT_ACCEPTABLE)
        data = await super().parse_http_body(request)
        for one in data if isinstance(data, list) else [data]:
            if not isinstance(one.operation_name, str | None):
                raise HTTPException(
                    400,
                    "The GraphQL operation's `operationName` must be a string or null, "
                    "if provided.",
                )
            if one.operation_name == "":  # the spec: the same as none
                one.operation_name = None
        return data

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: ContextT,
        root_value: RootValueT | None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Over HTTP: queries by GET; queries and mutations by POST. Subscriptions only
        # over the websocket (graphql-transport-ws), where their limits are.
        method = request_adapter.method
        allowed = {OperationType.QUERY}
        if method == "POST":
            allowed.add(OperationType.MUTATION)
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as exc:
            # Several operations and no operationName, or an unknown one: a GraphQL
            # request error like any other, not a malformed request.
            return PreExecutionError(data=None, errors=[GraphQLError(exc.as_http_error_reason())])
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.MUTATION:  # by GET
                raise MutationOverGet(exc.as_http_error_reason(method)) from None
            return PreExecutionError(data=None, errors=[GraphQLError(SUBSCRIPTIONS_OVER_HTTP)])
        except MissingQueryError:
            raise HTTPException(400, "No GraphQL query found in the request") from None

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        body = await super().process_result(request, result)
        # A request that never ran has no `data` entry (GraphQL's own rule); with the
        # legacy type it keeps `"data": null`, which its clients have always read.
        if answer_type(request.headers) == GRAPHQL_RESPONSE_JSON and is_request_error(result):
            body.pop("data", None)
        return body

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = sub_response.answer_type if isinstance(sub_response, _SubResponse) else JSON
        response.headers["content-type"] = f"{media_type}; charset=utf-8"
        if not sub_response.status_code:  # else set on purpose (401: payql's token check)
            response.status_code = status_for(media_type, response_data)
        return response
