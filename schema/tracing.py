"""One span per GraphQL operation, named as the metrics name it ("mutation
processPayment": its type and first root field, names from the schema).

In the schema only when tracing is on (payql/tracing.py); the tracer is the request's
(models/spans.py). Attributes follow OpenTelemetry's conventions for GraphQL:
`graphql.operation.type`, and `graphql.operation.name`, the client's name for it
(a GraphQL name: letters, digits and underscores), left out if it would look like
a card number or a token. Never the document, which holds literals, nor the
variables. A GraphQL error marks the span failed, with the errors' codes only.

A query or mutation's span is current while it executes, so that what it does (the
gateway, the write path's transactions, the publish) nests under it. A
subscription's span is the subscribe: from the request to its first message (the
current state, the backlog, or the refusal), never a span per message pushed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from opentelemetry import context, trace
from opentelemetry.trace import Span, Status, StatusCode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from models import spans
from schema.guards import _first_root_field as first_root_field

UNNAMED = "GraphQL Operation"  # the conventions' name when the operation is unknown


class TraceOperation(SchemaExtension):
    def __init__(self) -> None:
        self.span: Span | None = None
        self.named = False
        self.executed = False

    def on_operation(self) -> Iterator[None]:
        tracer = spans.tracer()
        if tracer is None:
            yield
            return
        # Not current yet: on_execute makes it so (a subscription's never is, as its
        # messages are pushed long after).
        self.span = tracer.start_span(UNNAMED, record_exception=False)
        try:
            yield
        finally:
            ctx = self.execution_context
            self._end(ctx.pre_execution_errors or getattr(ctx.result, "errors", None))

    def on_execute(self) -> Iterator[None]:
        if self.span is None:
            yield
            return
        self.executed = True
        self._name(self.span)
        token = context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            context.detach(token)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        # A subscription's span ends with its first message.
        if self.span is not None and self._kind() == "subscription":
            self._end(getattr(result, "errors", None))
        yield

    def _kind(self) -> str | None:
        ctx = self.execution_context
        if ctx.graphql_document is None:
            return None
        try:
            kind: OperationType = ctx.operation_type
        except RuntimeError:  # no such operation in the document: GraphQL says so
            return None
        return kind.value

    def _name(self, span: Span) -> None:
        kind = None if self.named else self._kind()
        if kind is None:
            return
        self.named = True
        ctx = self.execution_context
        span.update_name(f"{kind} {first_root_field(ctx)}")
        spans.note(
            span, {"graphql.operation.type": kind, "graphql.operation.name": ctx.operation_name}
        )

    def _end(self, errors: list[GraphQLError] | None) -> None:
        span, self.span = self.span, None
        if span is None:
            return
        self._name(span)  # an operation refused before it ran (validation, limits) too
        if errors:
            codes = sorted({self._code(error) for error in errors})
            span.set_attribute("error.type", codes[0])
            span.set_attribute("payql.graphql.error_codes", codes)
            span.set_status(Status(StatusCode.ERROR, ", ".join(codes)))
        span.end()

    def _code(self, error: GraphQLError) -> str:
        """An error's code: payql's, or one for GraphQL's own errors; a name payql
        chose, never the message, which may quote the document."""
        extensions = error.extensions
        code = extensions.get("code") if isinstance(extensions, dict) else None
        if isinstance(code, str) and code.isupper() and len(code) <= 64:
            return code
        if self.execution_context.graphql_document is None:
            return "GRAPHQL_PARSE_FAILED"
        return "GRAPHQL_ERROR" if self.executed else "GRAPHQL_VALIDATION_FAILED"
