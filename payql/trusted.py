"""Trusted documents over HTTP: where a request names its document (the websocket's
subscribe does it in its payload: payql/graphql_ws.py).

schema/trusted.py holds the manifest and the rules; this is what PayqlGraphQL calls
to find a request's document id (`documentId` in the JSON body or the query string,
Apollo's `extensions.persistedQuery`) and to swap in the trusted text, before
Strawberry runs the operation. The schema then finds the prepared document by that
text (PayqlSchema._prepare_operation_async).
"""

from __future__ import annotations

import json
from typing import Any

from cross_web import AsyncHTTPRequestAdapter
from graphql import GraphQLError
from strawberry.http import GraphQLRequestData

from payql.settings import Settings
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


def check_manifest(settings: Settings) -> None:
    """Load the manifest as the server will, so that `payql serve` refuses a bad one
    before it migrates or starts a worker (TrustedDocumentsError, naming the entry)."""
    if settings.trusted_documents:
        from payql.app import schema_for

        schema_for(settings)  # the schema only: no gateway, hub or tracer is made
