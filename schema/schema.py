"""The Schema: the contract's types, plus the guards every request passes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError

from models.carddata import redact_pans
from schema.fanout import SharedRenderExecutor
from schema.guards import (
    DocumentLimits,
    Limits,
    MaskUnexpectedErrors,
    NoteOperation,
    RequireToken,
    expected,
    masked,
    without_suggestions,
)
from schema.mutation import Mutation
from schema.query import Query
from schema.subscription import Subscription
from schema.tracing import TraceOperation
from schema.trusted import TrustedDocuments

log = logging.getLogger("payql.graphql")


class PayqlSchema(strawberry.Schema):
    def __init__(self, limits: Limits, tracing: bool = False) -> None:
        self.limits = limits
        super().__init__(
            query=Query,
            mutation=Mutation,
            subscription=Subscription,
            # Tracing (on only when asked for): first, so its span holds all the rest.
            extensions=[TraceOperation, *extensions(limits)] if tracing else extensions(limits),
            config=StrawberryConfig(disable_field_suggestions=limits.production),
            execution_context_class=SharedRenderExecutor,
        )
        self.trusted = TrustedDocuments()  # build_schema loads the manifest, if any

    async def _prepare_operation_async(
        self, context: ExecutionContext, extensions_runner: SchemaExtensionsRunner
    ) -> PreExecutionError | None:
        """Parse, check the operation type and validate: for a trusted document all
        but the check were done at start-up (schema/trusted.py), so none of it again,
        and neither the parse nor the validation hooks run. Strawberry's own hook for
        exactly this step (private, hence the pinned minor version): were it renamed,
        trusted documents would take the ordinary path, and
        tests/test_trusted_documents.py would fail."""
        by_text = self.trusted.by_text
        trusted = by_text.get(context.query) if by_text and context.query else None
        if trusted is None:
            return await super()._prepare_operation_async(context, extensions_runner)
        return self.trusted.prepare(context, trusted, self.limits)

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        """Mask, once more at the very end, anything unexpected that came from outside
        the operation (an extension's own hook failing), which MaskErrors cannot see."""
        result = await super().execute(*args, **kwargs)
        if result.errors:
            request_id = getattr(kwargs.get("context_value"), "request_id", None)
            result.errors = [e if expected(e) else masked(e, request_id) for e in result.errors]
        return result

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log each unexpected error once, with its request id and traceback; the
        client gets it masked (MaskUnexpectedErrors). Expected ones are the client's
        business: logged at debug, with any card number taken out."""
        request_id = getattr(getattr(execution_context, "context", None), "request_id", None)
        for error in errors:
            if self.limits.production:
                without_suggestions(error)
            if expected(error):
                log.debug("graphql error: %s", redact_pans(error.message))
                continue
            original = error.original_error
            log.error(
                "unexpected error in %s (request %s)",
                ".".join(str(p) for p in error.path or ()) or "the operation",
                request_id,
                exc_info=(type(original), original, original.__traceback__) if original else None,
            )


def extensions(limits: Limits) -> list[Callable[[], SchemaExtension] | type[SchemaExtension]]:
    guards: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        MaskUnexpectedErrors,
        NoteOperation,
        RequireToken,
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        # The parser cache keys on the parse options (the token limit included); the
        # validation cache on the document and the rules, which are the same classes
        # for every request, so it hits.
        lambda: ParserCache(maxsize=256),
    ]
    if limits.production:
        guards.append(lambda: AddValidationRules(PRODUCTION_RULES))
    guards += [
        lambda: ValidationCache(maxsize=256),
        # After GraphQL's own rules (from the cache or not), for every operation type.
        lambda: DocumentLimits(limits),
    ]
    return guards


PRODUCTION_RULES: list[type[ASTValidationRule]] = [NoSchemaIntrospectionCustomRule]


def build_schema(
    limits: Limits | None = None,
    trusted_documents: str = "",
    trusted_only: bool = False,
    tracing: bool = False,
) -> PayqlSchema:
    """The schema (with tracing's extension when `tracing`); with the trusted documents
    of the manifest at `trusted_documents` (TrustedDocumentsError, naming the entry, if
    it cannot be used)."""
    schema = PayqlSchema(limits or Limits(), tracing)
    if trusted_documents:  # Settings refuse trusted_only without a manifest
        schema.trusted = TrustedDocuments.load(
            trusted_documents, schema, schema.limits, trusted_only
        )
    return schema


schema = build_schema()
