"""The Schema: the contract's types, plus the guards every request passes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from models.carddata import redact_pans
from schema.guards import (
    MaskUnexpectedErrors,
    NoteOperation,
    QueryCost,
    RequireToken,
    expected,
    without_suggestions,
)
from schema.mutation import Mutation
from schema.query import Query
from schema.subscription import Subscription

log = logging.getLogger("payql.graphql")


@dataclass(frozen=True)
class Limits:
    """What one GraphQL document may ask for (see Settings for the PAYQL_ names)."""

    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    max_cost: int = 200_000
    production: bool = False  # no introspection, no "Did you mean" suggestions


class PayqlSchema(strawberry.Schema):
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        super().__init__(
            query=Query,
            mutation=Mutation,
            subscription=Subscription,
            extensions=extensions(limits),
            config=StrawberryConfig(disable_field_suggestions=limits.production),
        )

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
        lambda: QueryDepthLimiter(max_depth=limits.max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=limits.max_aliases),
        lambda: QueryCost(max_cost=limits.max_cost),
        # The caches key on the parse options (the token limit) and the validation
        # rules (depth, aliases, introspection): a cached document is checked the same.
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]
    if limits.production:
        guards.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return guards


def build_schema(limits: Limits | None = None) -> PayqlSchema:
    return PayqlSchema(limits or Limits())


schema = build_schema()
