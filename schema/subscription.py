"""The Subscription root, and a subscription's selection as the hub renders it.

A subscribe is parsed, validated, measured and authorised once (PayqlSchema.
open_subscription); its resolver returns what it watches (an Opening), not a stream.
Each change is then executed against the subscription's document with the change as
the root value, as graphql-core does for every event of a subscription, and the
result is shared by every subscriber with the same document, variables and view.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterable, Hashable
from datetime import datetime
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

import strawberry
from graphql import DocumentNode, ExecutionResult, execute
from strawberry.types import Info

from models.access import Actor
from models.event_log import cursor
from resolvers import subscriptions
from resolvers.context import Context
from resolvers.live import Change
from schema.enums import PaymentStatus
from schema.guards import guard_input
from schema.types import Payment

if TYPE_CHECKING:
    from schema.schema import PayqlSchema


@strawberry.type(
    description=(
        "One committed change to a payment: what happened (`type`) and the payment as "
        "that change left it."
    )
)
class PaymentStatusChange:
    change: strawberry.Private[Change]

    @strawberry.field(
        description="Pass as `after` to resume a subscription without missing a change."
    )
    def cursor(self, info: Info[Context, None]) -> strawberry.ID:
        return strawberry.ID(cursor(info.context.service.installation, self.change.position))

    @strawberry.field(
        description=(
            "The audit event's type: payment.status_changed, refund.succeeded, dispute.created, …"
        )
    )
    def type(self) -> str:
        return self.change.type

    @strawberry.field(
        description=(
            "The payment as this change left it (its refunds, disputes and events too; "
            "its order as it is now)."
        )
    )
    def payment(self) -> Payment:
        return Payment.as_of(self.change.as_of)

    @strawberry.field(description="Equal to status when the change left the status as it was.")
    def previous_status(self) -> PaymentStatus | None:
        return self.change.previous

    @strawberry.field
    def status(self) -> PaymentStatus:
        return self.change.status

    @strawberry.field
    def occurred_at(self) -> datetime:
        return self.change.occurred_at


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description=(
            "Every committed change to a payment (status, amounts, refunds, disputes), "
            "filtered by payment or by order (admins may omit both).\n"
            "With paymentId or orderId, the first messages carry the current state of each\n"
            "matching payment. With `after`, every change since that cursor is replayed\n"
            "first, in order, with none missed or repeated; then live changes follow."
        )
    )
    async def payment_status_changed(
        self,
        info: Info[Context, None],
        payment_id: strawberry.ID | None = None,
        order_id: strawberry.ID | None = None,
        after: strawberry.ID | None = None,
    ) -> AsyncIterable[PaymentStatusChange]:
        guard_input(paymentId=payment_id, orderId=order_id, after=after)
        # What it watches, checked: the hub sends the messages (payql/graphql_ws.py).
        return await subscriptions.open_subscription(info.context, payment_id, order_id, after)


def view(actor: Actor) -> tuple[str, str]:
    """What of a change a caller may see depends on this only (their role, and whose
    payments are theirs: clientSecret and nextAction are the owner's)."""
    return (actor.role, actor.customer_id)


class Selection:
    """A subscription's document, variables and operation, with the caller's view:
    the key its renders are shared by. One object per key (Selection.of), however many
    subscribers ask the same."""

    __slots__ = ("__weakref__", "document", "key", "operation_name", "schema", "variables")

    _made: weakref.WeakValueDictionary[Hashable, Selection] = weakref.WeakValueDictionary()

    def __init__(
        self,
        schema: PayqlSchema,
        document: DocumentNode,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        key: Hashable,
    ) -> None:
        self.schema = schema
        self.document = document
        self.variables = variables
        self.operation_name = operation_name
        self.key = key

    @classmethod
    def of(
        cls,
        schema: PayqlSchema,
        query: str,
        document: DocumentNode,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        actor: Actor,
    ) -> Selection:
        # By the text (fragments included) and the variables as sent; the schema too,
        # as each app has its own.
        key = (
            id(schema),
            query,
            operation_name,
            json.dumps(variables, sort_keys=True, default=str) if variables else "",
            view(actor),
        )
        made = cls._made.get(key)
        if made is None:
            made = cls(schema, document, variables, operation_name, key)
            cls._made[key] = made
        return made

    async def render(self, change: Change, context: Any) -> tuple[str, bool]:
        result = execute(
            self.schema._schema,
            self.document,
            root_value=PaymentStatusChange(change=change),
            context_value=context,
            variable_values=self.variables,
            operation_name=self.operation_name,
        )
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        return self.schema.payload(result, context)
