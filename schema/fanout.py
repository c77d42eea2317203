"""A live change is rendered once per subscription shape per process, and shared.

A broadcast change goes to every local subscriber, and executing each subscriber's
selection set against it separately was most of the cost of a fan-out to many (the
profile: graphql-core's execution and the payment read, about half of the time per
subscriber). Subscribers that sent the same operation (the same parsed document: the
parser cache hands out one per query text) with the same variables, as the same
caller, get the same answer for the same change; so the first to reach it renders it
and the others are given that result, as they are given the one payment read.

Only live changes are shared: a change replayed from the backlog is rendered by its
own subscriber. A render with errors is never handed on (each subscriber renders its
own, with its own request id in any masked error).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from graphql import ExecutionResult
from graphql.execution import Executor
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class SharedRenderExecutor(StrawberryGraphQLCoreExecutionContext):
    def build_per_event_executor(self, payload: Any) -> Executor:
        executor = super().build_per_event_executor(payload)
        change = getattr(payload, "change", None)
        hub = getattr(self.context_value, "live", None)
        actor = getattr(self.context_value, "actor", None)
        if change is None or not getattr(change, "live", False) or hub is None or actor is None:
            return executor
        variables = self.variable_values.coerced
        # By the operation node's identity: graphql-core compares nodes by content, and
        # an operation's text says nothing of the fragments its document defines.
        # The node is kept with the result (see _SharedEvent), so its id is not reused
        # while the entry lives.
        key = (
            id(self.operation),
            json.dumps(variables, sort_keys=True, default=str) if variables else "",
            actor,
            change.payment_id,
            change.position,
        )
        return _SharedEvent(executor, hub.renders, key, self.operation)  # type: ignore[return-value]


class _SharedEvent:
    """Stands in for the per-event executor: only execute_operation is called on it
    (graphql-core's execute_subscription_event)."""

    __slots__ = ("executor", "key", "operation", "renders")

    def __init__(
        self, executor: Executor, renders: Any, key: tuple[Any, ...], operation: Any = None
    ) -> None:
        self.executor = executor
        self.renders = renders
        self.key = key
        self.operation = operation

    async def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        mine = False

        async def render() -> tuple[Any, ExecutionResult]:
            nonlocal mine
            mine = True
            return self.operation, await self._own(serially)

        operation, result = await self.renders.get(self.key, render)
        if mine:
            return result
        if result.errors or operation is not self.operation:
            return await self._own(serially)
        return result

    async def _own(self, serially: bool | None) -> ExecutionResult:
        result = self.executor.execute_operation(serially)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        return result
