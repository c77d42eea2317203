"""Tracing with OpenTelemetry, set up by the app's assembly (payql/app.py).

Off unless the settings say otherwise (payql/settings.py: OTEL_EXPORTER_OTLP_ENDPOINT,
PAYQL_OTEL=1): then no SDK is set up, no middleware runs, the schema has no tracing
extension and the gateways are not wrapped; `models.spans.span` finds no tracer.

On, each app has a tracer provider of its own (never the process-wide one, so that
several apps in one process, as in the tests, keep their spans apart): one made
from the settings (OTLP over HTTP/protobuf, or the console), or one handed to
`create_app`. Per request:

- `TraceRequests` opens the request's server span (`POST /graphql`, `POST
  /webhooks/{gateway}`, `WS /graphql`), continuing a W3C `traceparent` sent by the
  caller, and makes the app's tracer current for everything the request does;
- the schema's `TraceOperation` (schema/tracing.py) opens one span per GraphQL
  operation under it;
- gateway calls (`trace_gateways`), the write path's transactions, the publish and
  the webhook route open their own spans (models/spans.py) under those.

The request's JSON log line carries the trace id (payql/logs.py).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateways.base import Gateway
from models import spans
from models.carddata import contains_pan
from payql.settings import Settings

log = logging.getLogger("payql.tracing")

INSTRUMENTATION = "payql"
# Requests that get no span: probes, scrapes and static files.
QUIET = ("/healthz", "/readyz", "/metrics", "/static/")
# The gateway calls that get a span each (plug-ins' too, when they have them).
GATEWAY_CALLS = ("charge", "capture", "cancel", "refund", "retrieve", "find", "complete")

_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    """An app's tracing: its provider and tracer, or off (both None)."""

    def __init__(self, provider: TracerProvider | None, owned: bool = False) -> None:
        self.provider = provider
        self.owned = owned  # made here, from the settings: shut down with the app
        self.tracer: Tracer | None = (
            provider.get_tracer(INSTRUMENTATION, _version()) if provider is not None else None
        )
        self.exporter: Any = None  # the exporter made from the settings, if any

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @classmethod
    def of(cls, settings: Settings, provider: TracerProvider | None = None) -> Tracing:
        """The given provider, else one made from the settings, else off."""
        if provider is not None:
            return cls(provider)
        if settings.tracing == "off":
            return cls(None)
        made, exporter = _sdk_provider(settings)
        tracing = cls(made, owned=True)
        tracing.exporter = exporter
        log.info(
            "tracing on: spans of service %r to %s",
            settings.otel_service_name,
            settings.otel_traces_endpoint or "the console",
        )
        return tracing

    def close(self) -> None:
        """At the app's exit: spans still buffered are sent, and a provider made here
        is shut down (a given one belongs to whoever gave it: flushed only)."""
        if self.provider is None:
            return
        end = getattr(self.provider, "shutdown" if self.owned else "force_flush", None)
        if end is not None:
            try:
                end()
            except Exception:  # an exporter that cannot send must not stop the exit
                log.exception("tracing: could not flush the last spans")


def _sdk_provider(settings: Settings) -> tuple[TracerProvider, Any]:
    # The SDK is imported only when tracing is on.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
        SpanProcessor,
    )

    resource = Resource.create(
        {"service.name": settings.otel_service_name, "service.version": _version()}
    )
    provider = SdkTracerProvider(resource=resource, id_generator=pan_free_ids())
    exporter: SpanExporter
    processor: SpanProcessor
    if settings.tracing == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Headers, timeout, compression and certificates: the standard OTEL_EXPORTER_OTLP_*
        # variables, which the exporter reads itself.
        exporter = OTLPSpanExporter(endpoint=settings.otel_traces_endpoint)
        processor = BatchSpanProcessor(exporter)
    else:
        exporter = ConsoleSpanExporter()
        processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider, exporter


def pan_free_ids() -> Any:
    """The SDK's random ids, but never one whose hex holds a run of digits that looks
    like a card number: the log's redaction would take such a trace id out of the
    very line meant to find it (as payql/security.py does for request ids)."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.trace import format_span_id, format_trace_id

    class PanFreeIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            while True:
                made = super().generate_trace_id()
                if not contains_pan(format_trace_id(made)):
                    return made

        def generate_span_id(self) -> int:
            while True:
                made = super().generate_span_id()
                if not contains_pan(format_span_id(made)):
                    return made

    return PanFreeIds()


@functools.cache
def _version() -> str:
    try:
        return version("payql")
    except PackageNotFoundError:
        return "unknown"


class TraceRequests:
    """ASGI middleware: a server span per request or websocket, current while it is
    served (outside RequestLog, so that the request's log line is written under it),
    and the app's tracer current for what it starts."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(QUIET):
            await self.app(scope, receive, send)
            return
        kind = "WS" if scope["type"] == "websocket" else scope["method"]
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in (b"traceparent", b"tracestate")
        }
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = spans.use(self.tracer)
        try:
            with self.tracer.start_as_current_span(
                kind,
                context=_PROPAGATOR.extract(headers),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": scope.get("method", "GET")},
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    await self.app(scope, receive, sending)
                except BaseException as exc:
                    spans.failed(span, exc)
                    raise
                finally:
                    # Names payql chose: the route's template, never the path itself.
                    route = getattr(scope.get("route"), "path", None)
                    if isinstance(route, str):
                        span.update_name(f"{kind} {route}")
                        span.set_attribute("http.route", route)
                    request_id = scope.get("state", {}).get("request_id")
                    spans.note(
                        span,
                        {
                            "payql.request_id": request_id if isinstance(request_id, str) else None,
                            "http.response.status_code": status or None,
                        },
                    )
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR, str(status)))
        finally:
            spans.reset(token)


def trace_gateways(gateways: Mapping[str, Gateway]) -> None:
    """Wrap each gateway's calls (charge, capture, …) in a client span: the gateway's
    name, the call, the payment id when the call has one, and the status it answered.
    Done on the instances, so they stay what they are (isinstance holds)."""
    for name, gateway in gateways.items():
        for call in GATEWAY_CALLS:
            method = getattr(gateway, call, None)
            if method is not None and inspect.iscoroutinefunction(method):
                setattr(gateway, call, _traced_call(name, call, method))


def _traced_call(
    gateway: str, call: str, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        reference = getattr(args[0], "reference", None) if args else None  # a ChargeRequest
        if call == "find" and args:
            reference = args[0]
        attributes = {
            "payql.gateway": gateway,
            "payql.gateway.operation": call,
            "payql.payment.id": reference if isinstance(reference, str) else None,
        }
        async with spans.span(f"payql.gateway {call}", attributes, kind=SpanKind.CLIENT) as span:
            result = await method(*args, **kwargs)
            status = getattr(result, "status", None)
            spans.note(span, {"payql.gateway.status": getattr(status, "value", None)})
            if result is None:
                spans.note(span, {"payql.gateway.found": False})
            return result

    return traced
