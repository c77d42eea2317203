"""Logging: one line per request with its id, JSON in production, secrets taken out.

Every line goes through `redact`, whatever logged it (payql, Strawberry, uvicorn,
a driver's exception): card numbers, bearer tokens, gateway secrets, client
secrets and email addresses never reach the log. payql logs no request bodies or
variables, so addresses and names are not there to begin with.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

from models.carddata import contains_pan, redact_pans

request_id: ContextVar[str | None] = ContextVar("payql_request_id", default=None)

_SECRETS = [
    (re.compile(r"(?i)\bbearer\s+[\w.~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*"), "[token redacted]"),  # a JWT anywhere
    (re.compile(r"\b(sk|rk|pk)_(live|test)_\w+"), r"\1_\2_[redacted]"),
    (re.compile(r"\bwhsec_\w+"), "whsec_[redacted]"),
    (re.compile(r"\b(\w+)_secret_\w+"), r"\1_secret_[redacted]"),  # client secrets
    (re.compile(r"[\w.+-]+@([\w-]+\.)+[\w-]+"), "[email redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return redact_pans(text)


# Attributes every LogRecord has; anything else was passed in `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def trace_ids() -> dict[str, str]:
    """The current span's trace and span ids, in hex (32 and 16 digits), when tracing is
    on and a span is current (payql/tracing.py: every traced request has one); else
    nothing."""
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
    }


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid and rid not in line:
            line += f" [request {rid}]"
        return redact(line)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, trace_id and
    span_id (when tracing), extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            entry["request_id"] = rid
        entry.update(trace_ids())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        # Redact each value before encoding, so the line stays valid JSON.
        for key, value in entry.items():
            if isinstance(value, str):
                entry[key] = redact(value)
            elif isinstance(value, int | float) and contains_pan(str(value)):
                entry[key] = "[card number removed]"
        return json.dumps(entry, ensure_ascii=False)


class Redact(logging.Filter):
    """Redacts a record in place (message and traceback), for handlers that payql's
    own formatters do not serve: uvicorn or gunicorn run with their own log config."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        try:
            # Redact the parts in place: formatters such as uvicorn's access log
            # unpack record.args, so its shape must stay.
            record.msg = redact_text(record.msg) if isinstance(record.msg, str) else record.msg
            if isinstance(record.args, tuple):
                record.args = tuple(
                    redact_text(a) if isinstance(a, str) else a for a in record.args
                )
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
            record._redacted = True
        except Exception:  # a filter must never break the caller's log call
            pass
        return True


def redact_text(text: str) -> str:
    """`redact`, also seeing through URL encoding (access logs write query strings)."""
    decoded = unquote_plus(text) if "%" in text or "+" in text else text
    cleaned = redact(decoded)
    return text if cleaned == decoded and decoded == text else cleaned


def install_redaction() -> None:
    """Put `Redact` on every console or file handler that does not already format
    with payql's (redacting) formatters."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error"):
        for handler in logging.getLogger(name).handlers:
            ours = isinstance(handler.formatter, TextFormatter | JSONFormatter)
            console = type(handler) is logging.StreamHandler or isinstance(
                handler, logging.FileHandler
            )
            if console and not ours and not any(isinstance(f, Redact) for f in handler.filters):
                handler.addFilter(Redact())


def logging_config(json_lines: bool, level: str = "INFO") -> dict[str, Any]:
    """A dictConfig for the whole process (uvicorn applies it in every worker)."""
    formatter = "payql.logs.JSONFormatter" if json_lines else "payql.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"payql": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "payql",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # payql writes its own request line (with the request id, without the
            # query string that would carry variables): uvicorn's is off.
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
        },
    }
