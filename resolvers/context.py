"""What every resolver gets: who is asking, the payment service, the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError

from models.access import Actor
from models.write_path import PaymentService
from resolvers.loaders import Loaders

if TYPE_CHECKING:
    from resolvers.live import Hub


@dataclass(slots=True)
class Context:
    service: PaymentService
    actor: Actor | None
    auth_error: str | None = None
    live: Hub | None = None
    # Over a websocket the context lives as long as the connection: its loaders must
    # not cache, or a subscriber would be served stale rows.
    streaming: bool = False
    request_id: str | None = None
    client_ip: str | None = None
    # Log notes for the request's one log line (the operation's name).
    notes: dict[str, Any] = field(default_factory=dict)
    _loaders: Loaders | None = None

    @property
    def loaders(self) -> Loaders:
        """Made on first use (most requests need none), once per request."""
        if self.streaming:
            return Loaders()
        if self._loaders is None:
            self._loaders = Loaders()
        return self._loaders

    @property
    def who(self) -> Actor:
        """The caller; every operation needs one (checked before execution too)."""
        if self.actor is None:
            raise GraphQLError(
                self.auth_error or "not authenticated", extensions={"code": "UNAUTHENTICATED"}
            )
        return self.actor
