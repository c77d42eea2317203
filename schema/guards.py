"""The guards every GraphQL request passes: token, cost, card data, masked errors.

Each is a Strawberry extension with one job. schema.py puts them together with
Strawberry's own limiters (depth, aliases, tokens) and the parser and validation
caches, from the limits in Settings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    value_from_ast_untyped,
)
from strawberry.extensions import FieldExtension, MaskErrors, SchemaExtension
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from models.carddata import find_pan, find_string
from models.commands import Outcome
from models.errors import DomainError, ErrorCode, PublicError

log = logging.getLogger("payql.graphql")

UNEXPECTED = "Unexpected error."
# A list field without `first` is costed as if it held this many items.
LIST_ESTIMATE = 10


def expected(error: GraphQLError) -> bool:
    """Errors the client may see as they are: GraphQL's own (syntax, validation,
    variables) and the ones payql raises on purpose. Anything else is a bug or an
    outage, and its message could carry SQL, a driver's text or a secret."""
    original = error.original_error
    return original is None or isinstance(original, GraphQLError | PublicError)


class RequireToken(SchemaExtension):
    """Every operation needs a valid bearer token: refuse it before anything runs."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        if getattr(context, "actor", None) is None:
            reason = getattr(context, "auth_error", None) or "not authenticated"
            self.execution_context.result = ExecutionResult(
                data=None,
                errors=[GraphQLError(reason, extensions={"code": "UNAUTHENTICATED"})],
            )
        yield


class NoteOperation(SchemaExtension):
    """Put the operation's type and name on the request's log line."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        notes = getattr(ctx.context, "notes", None)
        if isinstance(notes, dict):
            kind = ctx.operation_type.value if ctx.graphql_document is not None else "?"
            notes["operation"] = f"{kind} {ctx.operation_name or '(anonymous)'}"
        yield


class MaskUnexpectedErrors(MaskErrors):
    """Unexpected errors become "Unexpected error." with the request id the log has."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: not expected(error))

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        request_id = getattr(self.execution_context.context, "request_id", None)
        return GraphQLError(
            message=UNEXPECTED,
            nodes=error.nodes,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        )


_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)


def without_suggestions(error: GraphQLError) -> None:
    """Production: no "Did you mean …?" hints that would map out the schema."""
    error.message = _SUGGESTION.sub("", error.message)


# -- cost ------------------------------------------------------------------------------


class QueryCost(SchemaExtension):
    """Refuse an operation whose estimated work is over `max_cost`.

    Each field costs one per object it is resolved on; a field with `first`
    multiplies what is under it by `first`, any other list by LIST_ESTIMATE (the
    items of a page are already counted by the page's `first`). Runs after
    validation, so variables are known and fragment cycles were refused."""

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        if ctx.result is None and document is not None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            operation = next(
                (
                    o
                    for o in operations
                    if ctx.operation_name is None or (o.name and o.name.value == ctx.operation_name)
                ),
                None,
            )
            schema = ctx.schema._schema
            root = schema.get_root_type(operation.operation) if operation else None
            if operation is not None and root is not None:
                meter = _Meter(schema, fragments, ctx.variables or {}, self.max_cost)
                cost = meter.selections(operation.selection_set, root, 1)
                if cost > self.max_cost:
                    ctx.result = ExecutionResult(
                        data=None,
                        errors=[
                            GraphQLError(
                                f"this operation is too expensive: its estimated cost is "
                                f"{cost}, and at most {self.max_cost} is allowed; ask for "
                                "fewer items (a smaller `first`) or fewer nested lists",
                                extensions={"code": "QUERY_TOO_COMPLEX", "cost": cost},
                            )
                        ],
                    )
        yield


class _Meter:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        limit: int,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.limit = limit

    def selections(
        self, node: SelectionSetNode, parent: GraphQLNamedType, times: int, paged: bool = False
    ) -> int:
        """The cost of a selection set on `times` objects of type `parent`; `paged`: the
        parent is a page whose `first` already counted its items."""
        total = 0
        for selection in node.selections:
            if total > self.limit:
                break  # already over: no need to walk the rest
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, times, paged)
                continue
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                selected = selection.selection_set
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is None:
                    continue
                condition, selected = fragment.type_condition, fragment.selection_set
            else:
                continue
            target = self.schema.get_type(condition.name.value) if condition else parent
            total += self.selections(selected, target or parent, times, paged)
        return total

    def field(self, node: FieldNode, parent: GraphQLNamedType, times: int, paged: bool) -> int:
        if node.selection_set is None or not isinstance(parent, GraphQLObjectType):
            return times
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return times
        inner, page = times, False
        first = self._argument(node, "first", definition.args.get("first"))
        if isinstance(first, int) and first > 0:
            inner, page = times * first, True
        elif isinstance(get_nullable_type(definition.type), GraphQLList) and not paged:
            inner = times * LIST_ESTIMATE
        named = get_named_type(definition.type)
        return times + self.selections(node.selection_set, named, inner, page)

    def _argument(self, node: FieldNode, name: str, definition: Any) -> Any:
        for argument in node.arguments or ():
            if argument.name.value == name:
                return value_from_ast_untyped(argument.value, self.variables)
        return definition.default_value if definition is not None else None


# -- input -----------------------------------------------------------------------------


def card_data_message(path: str) -> str:
    return (
        f"{path} looks like it holds a card number. payql never takes card data: "
        "send a gateway token (pm_…, tok_…) made by the gateway's own client library"
    )


def _has_nul(text: str) -> bool:
    return "\x00" in text


def input_problem(arguments: dict[str, Any]) -> DomainError | None:
    """What is wrong with a root field's arguments before any resolver may see them:
    a card number anywhere (never to be stored or logged), or a NUL character (no
    text column can hold one; PostgreSQL refuses it)."""
    path = find_pan(arguments, "")
    if path is not None:
        where = path.lstrip(".").removeprefix("input.")  # as other errors name fields
        return DomainError(ErrorCode.CARD_DATA_REJECTED, card_data_message(where), where)
    path = find_string(arguments, _has_nul, "")
    if path is not None:
        where = path.lstrip(".").removeprefix("input.")
        return DomainError(ErrorCode.VALIDATION, f"{where} contains a NUL character", where)
    return None


class GuardInput(FieldExtension):
    """On a root field: refuse arguments `input_problem` finds fault with, before the
    resolver. A mutation answers with its payload and the error; a query with a
    GraphQL error of that code. Nothing was stored, and the value is not logged."""

    def apply(self, field: StrawberryField) -> None:
        self.payload = getattr(field.type, "of", None)

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        error = input_problem(kwargs)
        if error is None:
            return await next_(source, info, **kwargs)
        log.warning("refused %s.%s: %s", info.field_name, error.field, error.code.value)
        if callable(self.payload):
            return self.payload(Outcome(error=error))
        raise GraphQLError(
            error.message, extensions={"code": error.code.value, "field": error.field}
        )


def guard_input(**arguments: Any) -> None:
    """The same check, for resolvers an extension cannot wrap (subscriptions)."""
    error = input_problem(arguments)
    if error is not None:
        log.warning("refused %s: %s", error.field, error.code.value)
        raise GraphQLError(
            error.message, extensions={"code": error.code.value, "field": error.field}
        )
