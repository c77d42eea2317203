"""Spans for the write path and its neighbours, through the tracer of the app serving
the request: a context variable that payql/tracing.py sets per request, when tracing
is on. Otherwise there is no tracer, and `span` costs one lookup and yields a span
that records nothing.

Attributes are names and ids payql chose (`payql.payment.id`, gateway names,
statuses); `clean` drops any string that would still hold a card number, a token,
a secret or an email, whoever set it. An exception marks its span with its type only
(`error.type`): its message, which may quote a gateway's words, is never recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from enum import Enum
from typing import Any

from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer

from models.carddata import contains_pan

_tracer: ContextVar[Tracer | None] = ContextVar("payql_tracer", default=None)

# What must never be in a span: gateway tokens (pm_…, tok_…, src_…, btok_…), secret
# and publishable keys, webhook secrets, client secrets, bearer tokens and JWTs, email
# addresses; card numbers are found by `contains_pan`.
_UNSAFE = re.compile(
    r"\b(?:pm|tok|src|btok)_\w+"
    r"|\b(?:sk|rk|pk)_(?:live|test)_\w*"
    r"|\bwhsec_\w*"
    r"|_secret_\w*"
    r"|(?i:\bbearer\s)"
    r"|\beyJ[\w-]*\.[\w-]+"
    r"|@",
)


def use(tracer: Tracer | None) -> Token[Tracer | None]:
    """Spans in this context (a request, and what it starts) go to `tracer`."""
    return _tracer.set(tracer)


def reset(token: Token[Tracer | None]) -> None:
    _tracer.reset(token)


def tracer() -> Tracer | None:
    """The tracer of the request being served, None when tracing is off."""
    return _tracer.get()


def safe(value: Any) -> bool:
    """Whether `value` may be a span attribute: no card number, token, secret or email."""
    if isinstance(value, bool | float):
        return True
    if isinstance(value, int):
        return not contains_pan(str(value))
    if isinstance(value, str):
        return _UNSAFE.search(value) is None and not contains_pan(value)
    if isinstance(value, list | tuple):
        return all(safe(item) for item in value)
    return False


def clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes that may be recorded: set (not None) and `safe`; an enum's value."""
    values = {k: v.value if isinstance(v, Enum) else v for k, v in attributes.items()}
    return {k: v for k, v in values.items() if v is not None and safe(v)}


def note(span: Span, attributes: Mapping[str, Any]) -> None:
    """Set attributes on a span, the unsafe left out."""
    if span.is_recording():
        span.set_attributes(clean(attributes))


def failed(span: Span, error: BaseException | str) -> None:
    """Mark the span failed with the error's type (and payql's error code, for a
    DomainError), or with a code payql chose: never the error's text."""
    if not span.is_recording():
        return
    kind = error if isinstance(error, str) else type(error).__qualname__
    span.set_attribute("error.type", kind)
    code = getattr(error, "code", None)
    if isinstance(code, Enum) and isinstance(code.value, str):
        span.set_attribute("payql.error.code", code.value)
    span.set_status(Status(StatusCode.ERROR, kind))


class span:  # used like a function: `with span(...)`, `async with span(...)`
    """A child span of the current one, current while the block runs, in plain and
    async `with` alike (`async with span("payql.apply", {…}), in_transaction() as conn:`)."""

    __slots__ = ("_attributes", "_kind", "_manager", "_name", "span")

    def __init__(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._manager: Any = None
        self.span: Span = INVALID_SPAN

    def __enter__(self) -> Span:
        tracer = _tracer.get()
        if tracer is None:
            return INVALID_SPAN
        self._manager = _started(tracer, self._name, self._kind, self._attributes)
        self.span = self._manager.__enter__()
        return self.span

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        if self._manager is not None:
            manager, self._manager = self._manager, None
            if error is not None:
                failed(self.span, error)
            manager.__exit__(kind, error, traceback)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        self.__exit__(kind, error, traceback)


@contextmanager
def _started(
    tracer: Tracer, name: str, kind: SpanKind, attributes: Mapping[str, Any] | None
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=clean(attributes or {}),
        # The SDK would record the exception's message (a gateway's words may quote a
        # token) as an event and in the status: `failed` records its type only.
        record_exception=False,
        set_status_on_exception=False,
    ) as started:
        yield started
