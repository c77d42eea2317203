"""The Schema: the contract's types, plus the guards every request passes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    Executor,
    GraphQLError,
    GraphQLSyntaxError,
    NoSchemaIntrospectionCustomRule,
    create_source_event_stream,
)
from graphql import ExecutionResult as GraphQLResult
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from models.carddata import redact_pans
from resolvers.subscriptions import Opening
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
from schema.subscription import Selection, Subscription
from schema.tracing import TraceOperation
from schema.trusted import TrustedDocuments

log = logging.getLogger("payql.graphql")


def mask(errors: list[GraphQLError], context: Any) -> list[GraphQLError]:
    """The errors as the client sees them: unexpected ones masked, with the request id
    of `context` (which the log has)."""
    request_id = getattr(context, "request_id", None)
    return [e if expected(e) else masked(e, request_id) for e in errors]


class Unreadable(Exception):
    """A document that cannot be run at all (it does not parse; no such operation):
    graphql-transport-ws closes the socket with 4400 and this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Opened:
    """A subscription accepted: what it watches, and what it asked for."""

    opening: Opening
    selection: Selection


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
            result.errors = mask(result.errors, kwargs.get("context_value"))
        return result

    async def open_subscription(
        self,
        query: str,
        variables: dict[str, Any] | None,
        context: Any,
        operation_name: str | None,
    ) -> Opened | list[GraphQLError]:
        """A subscribe, checked once: parsed, validated and measured with every guard a
        request passes (Strawberry's extensions: limits, trusted documents, masking,
        its span), its variables coerced and its resolver run, which authorises it.
        The subscription's selection, or the errors to refuse it with; Unreadable for a
        document that cannot run. (Strawberry's own steps before execution, as HTTP
        takes them: private, hence the pinned minor version.)"""
        ec = self._create_execution_context(
            query, (OperationType.SUBSCRIPTION,), variables, context, None, operation_name
        )
        extensions = self.get_extensions()
        for extension in extensions:
            extension.execution_context = ec
        runner = self.create_extensions_runner(ec, extensions)
        opened: Opened | None = None
        errors: list[GraphQLError] = []
        async with runner.operation():
            try:
                refused = await self._prepare_operation_async(ec, runner)
            except CannotGetOperationTypeError as error:
                raise Unreadable(error.as_http_error_reason()) from None
            if refused is not None:
                errors = list(refused.errors or [])
                if errors and isinstance(errors[0], GraphQLSyntaxError):
                    raise Unreadable(errors[0].message)
            else:
                assert ec.graphql_document is not None
                async with runner.executing():
                    if ec.result is None:  # else an extension answered (no token)
                        source = await self._source(ec.graphql_document, ec)
                        if isinstance(source, Opening):
                            selection = Selection.of(
                                self,
                                query,
                                ec.graphql_document,
                                variables,
                                operation_name,
                                context.who,
                            )
                            opened = Opened(source, selection)
                            source = GraphQLResult(None, None)
                        ec.result = source
                errors = list(getattr(ec.result, "errors", None) or [])
            if errors:
                self._process_errors(errors, ec)  # logged once, as they are
                ec.pre_execution_errors = errors  # (its span says which codes)
        if opened is not None:
            return opened
        return mask(errors, context)

    async def _source(self, document: Any, ec: ExecutionContext) -> Opening | GraphQLResult:
        """Run the subscription's resolver, as graphql-core would to make its source
        stream: the variables coerced, the arguments read, the resolver called."""
        built = Executor.build(
            self._schema, document, None, ec.context, ec.variables, ec.operation_name
        )
        if not isinstance(built, Executor):
            return GraphQLResult(None, built)
        source = create_source_event_stream(built)
        if not isinstance(source, GraphQLResult | Opening):
            source = await source  # type: ignore[misc]
        assert isinstance(source, GraphQLResult | Opening), source
        return source

    def payload(self, result: GraphQLResult, context: Any) -> tuple[str, bool]:
        """A change's render as a `next` payload (JSON text), and whether it may be
        shared: one with errors is not (its masked errors carry their own request id)."""
        if not result.errors:
            return json.dumps({"data": result.data}, separators=(",", ":")), True
        self._process_errors(result.errors)
        body = {"data": result.data, "errors": [e.formatted for e in mask(result.errors, context)]}
        return json.dumps(body, separators=(",", ":")), False

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
