"""Trusted documents over HTTP and the websocket: where a request names its document.

schema/trusted.py holds the manifest and the rules; this is what PayqlGraphQL calls
to find a request's document id (`documentId` in the JSON body or the query string,
Apollo's `extensions.persistedQuery`) and to swap in the trusted text, before
Strawberry runs the operation. The schema then finds the prepared document by that
text (PayqlSchema._prepare_operation_async).
"""

from __future__ import annotations

import json
from typing import Any, cast

from cross_web import AsyncHTTPRequestAdapter
from graphql import GraphQLError
from strawberry.http import GraphQLRequestData
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage

from payql.settings import Settings
from resolvers.context import Context
from schema.trusted import DocumentRefused, TrustedDocuments

_KEY = b'"documentId"'


async def document_id(request: AsyncHTTPRequestAdapter) -> Any:
    """The `documentId` a request sends, if any: from the query string of a GET, or the
    JSON body of a POST (Strawberry's request data has no place for it)."""
    if request.method == "GET":
        return request.query_params.get("documentId")
    body = await request.get_body()  # read once already: Starlette keeps it
    if _KEY not in body:  # almost every free query: no second decode
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # Strawberry has refused such a body already
        return None
    return data.get("documentId") if isinstance(data, dict) else None


async def resolve_http(
    trusted: TrustedDocuments, request: AsyncHTTPRequestAdapter, request_data: Any
) -> GraphQLError | None:
    """Put the trusted document's text in `request_data` when it names one; the error
    to answer with when it is refused."""
    if not isinstance(request_data, GraphQLRequestData):
        return None  # a batch: Strawberry refuses those
    try:
        request_data.query = trusted.query_for(
            request_data.query, await document_id(request), request_data.extensions
        )
    except DocumentRefused as refused:
        return refused.graphql_error()
    return None


def names_a_document(params: Any) -> bool:
    """A GET that names a document by id is an operation, not a request for GraphiQL."""
    return "documentId" in params or "extensions" in params


class TrustedTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, where a `subscribe` may name a trusted document instead of
    sending its query (payload.documentId or payload.extensions.persistedQuery), and
    where only trusted documents may be subscribed when only those are accepted."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload: Any = message.get("payload")
        op_id = message.get("id")
        trusted = getattr(self.schema, "trusted", None)
        if self.connection_acknowledged and isinstance(trusted, TrustedDocuments):
            # Strawberry checks neither: a subscribe whose id is not a string would run
            # its query unchecked (a free query past trusted-documents-only mode).
            if not isinstance(op_id, str) or not isinstance(payload, dict):
                await self.websocket.close(
                    code=4400, reason="a subscribe needs a string id and an object payload"
                )
                return
            if op_id not in self.operations:  # else Strawberry's 4409
                try:
                    query = trusted.query_for(
                        payload.get("query"), payload.get("documentId"), payload.get("extensions")
                    )
                except DocumentRefused as refused:
                    error = refused.graphql_error()
                    await self.send_message(
                        {"id": op_id, "type": "error", "payload": [error.formatted]}
                    )
                    return
                if query is not None:
                    message = cast(
                        SubscribeMessage, {**message, "payload": {**payload, "query": query}}
                    )
        await super().handle_subscribe(message)


def check_manifest(settings: Settings) -> None:
    """Load the manifest as the server will, so that `payql serve` refuses a bad one
    before it migrates or starts a worker (TrustedDocumentsError, naming the entry)."""
    if settings.trusted_documents:
        from payql.app import schema_for

        schema_for(settings)  # the schema only: no gateway, hub or tracer is made
