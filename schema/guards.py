"""The guards every GraphQL request passes: token, document limits, input, masked errors.

Each is a Strawberry extension with one job. schema.py puts them together with
Strawberry's token limiter and its parser and validation caches, from the limits
in Settings.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    parse,
    value_from_ast_untyped,
)
from graphql.execution.values import VariableValues, get_variable_values
from graphql.pyutils import Undefined
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from strawberry.extensions import FieldExtension, MaskErrors, SchemaExtension
from strawberry.types import ExecutionContext, Info
from strawberry.types.field import StrawberryField

from models.carddata import find_pan, find_string
from models.errors import DomainError, ErrorCode, PublicError
from models.write_path import Outcome
from schema import introspection

log = logging.getLogger("payql.graphql")

UNEXPECTED = "Unexpected error."
# A list field without `first` is costed as if it held this many items.
LIST_ESTIMATE = 10


@dataclass(frozen=True)
class Limits:
    """What one GraphQL document may ask for (see Settings for the PAYQL_ names)."""

    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    max_cost: int = 200_000
    production: bool = False  # no introspection, no "Did you mean" suggestions


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
    """Put the operation's type and name on the request's log line, and its type and
    first root field (a name from the schema, never the client's) for the metrics."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        notes = getattr(ctx.context, "notes", None)
        if isinstance(notes, dict):
            kind = ctx.operation_type.value if ctx.graphql_document is not None else "?"
            notes["operation"] = f"{kind} {ctx.operation_name or '(anonymous)'}"
            notes["root"] = f"{kind} {_first_root_field(ctx)}"
        yield


def _first_root_field(ctx: ExecutionContext) -> str:
    document = ctx.graphql_document
    for definition in document.definitions if document is not None else ():
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if ctx.operation_name and (
            definition.name is None or definition.name.value != ctx.operation_name
        ):
            continue
        root = ctx.schema._schema.get_root_type(definition.operation)
        for selection in definition.selection_set.selections:
            if isinstance(selection, FieldNode):
                # A name from the schema only: a document that failed validation may
                # name anything (a secret, a card number), and metrics and span names
                # must stay a small, known set.
                name = selection.name.value
                known = name in META_FIELDS or name == "__typename"
                return name if known or (root is not None and name in root.fields) else "?"
        return "?"
    return "?"


class MaskUnexpectedErrors(MaskErrors):
    """Unexpected errors become "Unexpected error." with the request id the log has."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: not expected(error))

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return masked(error, getattr(self.execution_context.context, "request_id", None))

    def _process_result(self, result: object) -> None:
        # Before MaskErrors' isinstance check against a Protocol, which is slow and ran
        # for every result sent to every subscriber, almost all with no errors at all.
        if getattr(result, "errors", None):
            super()._process_result(result)


def masked(error: GraphQLError, request_id: str | None) -> GraphQLError:
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


# -- document limits -------------------------------------------------------------------


@dataclass(frozen=True)
class _Size:
    depth: int  # the deepest field nesting
    aliases: int  # aliases, with every fragment spread expanded
    cost: int  # estimated work, for one object of the parent type
    # Introspection (`__schema`, `__type` and everything under them), measured apart:
    # its nesting and its cost, by this schema's own counts (schema/introspection.py).
    meta_depth: int = 0
    meta_cost: int = 0


class DocumentLimits(SchemaExtension):
    """Refuse an operation that is too deep, has too many aliases or would cost too
    much, before it runs: queries, mutations and subscriptions alike.

    It runs as part of validation, after GraphQL's own rules (ValidationCache comes
    first in the list), so the document is known to be valid: every fragment exists
    and none is circular. Each fragment is measured once (memoized), so a document
    that spreads fragments into each other over and over costs nothing to measure,
    and its expanded size is what is judged.

    Cost: each field costs one per object it is resolved on; a field with `first`
    multiplies what is under it by `first`, any other list by LIST_ESTIMATE (the
    items of a page are already counted by the page's `first`).

    Introspection (`__schema`, `__type` and what is under them) is bounded by the
    schema, not the data: it counts for neither the depth nor the cost, but is judged
    on its own nesting and on a cost from the schema's own counts, against a budget of
    twice the standard introspection query (schema/introspection.py). So GraphiQL's and
    every codegen tool's query passes, and a pile or a tower of them does not."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if not ctx.pre_execution_errors and ctx.graphql_document is not None:
            error = self.check(ctx)
            if error is not None:
                ctx.pre_execution_errors = [error]
        yield

    def check(self, ctx: ExecutionContext) -> GraphQLError | None:
        document = ctx.graphql_document
        assert document is not None
        # The verdict on a document whose size no variable changes is kept: the parser
        # cache hands out one document object per query text, so most requests are a
        # lookup here.
        key = (id(document), ctx.operation_name, self.limits)
        kept = _VERDICTS.get(key)
        if kept is not None and kept[0] is document:
            return _limit_error(*kept[1]) if kept[1] else None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        wanted = ctx.operation_name
        operation = next(
            (o for o in operations if wanted is None or (o.name and o.name.value == wanted)),
            None,
        )
        schema = ctx.schema._schema
        root = schema.get_root_type(operation.operation) if operation else None
        if operation is None or root is None:
            return None  # GraphQL itself says what is wrong

        def variables() -> dict[str, Any]:
            # As GraphQL will see them: coerced (100.0 is the Int 100) and with their
            # defaults (validation passed, so they coerce).
            coerced = get_variable_values(
                schema, operation.variable_definitions or [], ctx.variables or {}
            )
            return coerced.coerced if isinstance(coerced, VariableValues) else {}

        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        meter = _Meter(schema, fragments, variables)
        size = meter.selections(operation.selection_set, root)
        verdict = self.judge(size, introspection_budget(schema) if size.meta_cost else 0)
        if not meter.read_variables:
            _VERDICTS[key] = (document, verdict)
            while len(_VERDICTS) > VERDICTS_KEPT:
                _VERDICTS.pop(next(iter(_VERDICTS)))
        return _limit_error(*verdict) if verdict else None

    def judge(self, size: _Size, budget: int) -> tuple[str, str, dict[str, Any]] | None:
        """Why an operation of this size is refused (message, code, extensions);
        `budget`: what its introspection may cost."""
        limits = self.limits
        if size.meta_depth > introspection.MAX_DEPTH:
            return (
                f"this operation's introspection is {size.meta_depth} fields deep; at most "
                f"{introspection.MAX_DEPTH} is allowed (the standard introspection queries "
                "nest about 15)",
                "QUERY_TOO_DEEP",
                {},
            )
        if size.meta_cost > budget:
            return (
                f"this operation's introspection is too expensive: its estimated cost is "
                f"{size.meta_cost}, and at most {budget} (twice the full introspection "
                "query) is allowed; introspect the schema once",
                "QUERY_TOO_COMPLEX",
                {"cost": size.meta_cost},
            )
        if size.depth > limits.max_depth:
            return (
                f"this operation is {size.depth} fields deep; at most {limits.max_depth} "
                "is allowed",
                "QUERY_TOO_DEEP",
                {},
            )
        if size.aliases > limits.max_aliases:
            return (
                f"this operation uses {size.aliases} aliases (fragments expanded); at most "
                f"{limits.max_aliases} are allowed",
                "TOO_MANY_ALIASES",
                {},
            )
        if size.cost > limits.max_cost:
            return (
                f"this operation is too expensive: its estimated cost is {size.cost}, and at "
                f"most {limits.max_cost} is allowed; ask for fewer items (a smaller `first`) "
                "or fewer nested lists",
                "QUERY_TOO_COMPLEX",
                {"cost": size.cost},
            )
        return None


# Verdicts on documents whose size no variable changes, by (document, operation, limits);
# the document is kept beside its verdict, so an id reused by a new object never matches.
VERDICTS_KEPT = 256
_VERDICTS: dict[tuple[int, str | None, Limits], tuple[Any, tuple[str, str, dict[str, Any]] | None]]
_VERDICTS = {}


def _limit_error(message: str, code: str, extensions: dict[str, Any]) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


# Introspection's entry points live on no type.
META_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}

_BUDGETS: weakref.WeakKeyDictionary[GraphQLSchema, int] = weakref.WeakKeyDictionary()


def introspection_budget(schema: GraphQLSchema) -> int:
    """What one operation's introspection may cost on this schema: BUDGET_FACTOR times
    the full standard query, as the meter measures it (worked out once per schema)."""
    budget = _BUDGETS.get(schema)
    if budget is None:
        document = parse(introspection.STANDARD)
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        operation = document.definitions[0]
        assert isinstance(operation, OperationDefinitionNode) and schema.query_type
        size = _Meter(schema, fragments, dict).selections(
            operation.selection_set, schema.query_type
        )
        budget = _BUDGETS[schema] = introspection.BUDGET_FACTOR * size.meta_cost
    return budget


class _Meter:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: Callable[[], dict[str, Any]],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self._variables = variables
        self.variables: dict[str, Any] | None = None  # coerced when first needed
        self.read_variables = False  # whether the size depends on them
        self.memo: dict[tuple[str, str, bool], _Size] = {}

    def selections(
        self, node: SelectionSetNode, parent: GraphQLNamedType, paged: bool = False
    ) -> _Size:
        """The size of a selection set on one object of type `parent`; `paged`: the
        parent is a page whose `first` already counted its items."""
        depth = aliases = cost = meta_depth = meta_cost = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                size = self.field(selection, parent, paged)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                size = self.selections(selection.selection_set, target or parent, paged)
            elif isinstance(selection, FragmentSpreadNode):
                size = self.spread(selection.name.value, parent, paged)
            else:
                continue
            depth = max(depth, size.depth)
            aliases += size.aliases
            cost += size.cost
            meta_depth = max(meta_depth, size.meta_depth)
            meta_cost += size.meta_cost
        return _Size(depth, aliases, cost, meta_depth, meta_cost)

    def spread(self, name: str, parent: GraphQLNamedType, paged: bool) -> _Size:
        key = (name, parent.name, paged)
        if key not in self.memo:
            fragment = self.fragments.get(name)
            if fragment is None:
                return _Size(0, 0, 0)
            self.memo[key] = _Size(0, 0, 0)  # a cycle (refused by validation) adds nothing
            target = self.schema.get_type(fragment.type_condition.name.value) or parent
            self.memo[key] = self.selections(fragment.selection_set, target, paged)
        return self.memo[key]

    def field(self, node: FieldNode, parent: GraphQLNamedType, paged: bool) -> _Size:
        alias = 1 if node.alias else 0
        name = node.name.value
        definition = META_FIELDS.get(name) or (
            parent.fields.get(name)
            if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType)
            else None
        )
        if name in META_FIELDS or parent.name.startswith("__"):
            return self.meta_field(node, parent, definition, alias)
        if node.selection_set is None or definition is None:
            return _Size(0 if name == "__typename" else 1, alias, 1)
        times, page = 1, False
        first = self._argument(node, "first", definition.args.get("first"))
        if isinstance(first, int) and first > 0:
            times, page = first, True
        elif isinstance(get_nullable_type(definition.type), GraphQLList) and not paged:
            times = LIST_ESTIMATE
        inner = self.selections(node.selection_set, get_named_type(definition.type), page)
        return _Size(
            1 + inner.depth,
            alias + inner.aliases,
            1 + times * inner.cost,
            inner.meta_depth,
            times * inner.meta_cost,
        )

    def meta_field(
        self, node: FieldNode, parent: GraphQLNamedType, definition: Any, alias: int
    ) -> _Size:
        """A field of introspection: its lists count as many items as the schema holds."""
        if node.selection_set is None or definition is None:
            return _Size(0, alias, 0, 1, 1)
        times = 1
        if isinstance(get_nullable_type(definition.type), GraphQLList):
            estimates = introspection.list_estimates(self.schema)
            times = estimates.get((parent.name, node.name.value), 1)
        inner = self.selections(node.selection_set, get_named_type(definition.type))
        return _Size(0, alias + inner.aliases, 0, 1 + inner.meta_depth, 1 + times * inner.meta_cost)

    def _argument(self, node: FieldNode, name: str, definition: Any) -> Any:
        for argument in node.arguments or ():
            if argument.name.value == name:
                if not isinstance(argument.value, IntValueNode | NullValueNode):
                    self.read_variables = True
                    if self.variables is None:
                        self.variables = self._variables()
                value = value_from_ast_untyped(argument.value, self.variables)
                if value is not None and value is not Undefined:
                    return value
        default = definition.default_value if definition is not None else None
        return default if isinstance(default, int) else None


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
    # Fields are named as other errors name them: relative to `input`.
    path = find_pan(arguments, "")
    if path is not None:
        where = path.lstrip(".").removeprefix("input.")
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
