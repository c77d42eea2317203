"""The Schema: the contract's types, plus the guards every request passes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import strawberry
from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from schema.mutation import Mutation
from schema.query import Query
from schema.subscription import Subscription


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


def extensions() -> list[Callable[[], SchemaExtension] | type[SchemaExtension]]:
    return [
        RequireToken,
        lambda: QueryDepthLimiter(max_depth=10),
        lambda: MaxAliasesLimiter(max_alias_count=30),
        lambda: MaxTokensLimiter(max_token_count=2000),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]


def build_schema(**options: Any) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions(),
        **options,
    )


schema = build_schema()
