"""Log lines: JSON or text, and never a card number, token, secret or email in them."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from payql.logs import JSONFormatter, Redact, TextFormatter, install_redaction, redact

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjdXNfYWxpY2UifQ."
    "Vvnlq7-R3ZAf0Q01f_rUXdJgPmC07Iwn4yHYIDl_YSo"
)
SECRETS = {
    "a card number": "4242 4242 4242 4242",
    "a bearer header": f"Bearer {JWT}",
    "a bare JWT": JWT,
    "a Stripe secret key": "sk_live_51HabcDEF123",
    "a restricted key": "rk_test_51Habc",
    "a webhook secret": "whsec_abcDEF123",
    "a client secret": "pi_3Nabc_secret_XYZ123",
    "an email address": "alice.smith+shop@example.co.uk",
}


@pytest.mark.parametrize("kind", SECRETS)
def test_redact_takes_out_every_kind_of_secret(kind: str) -> None:
    line = redact(f"something about {SECRETS[kind]} happened")
    assert SECRETS[kind] not in line
    assert line.startswith("something about ") and line.endswith(" happened")


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "POST /graphql 200 12.3ms mutation Pay order ORD-2026-000104 pay_abc123"
    assert redact(text) == text


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "payql.test", "levelno": logging.ERROR, "levelname": "ERROR", "msg": message}
    )
    made.args = args or None
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def failing_record() -> logging.LogRecord:
    try:
        raise RuntimeError("charge failed for alice@example.com with 4242424242424242")
    except RuntimeError:
        made = record("charge failed: %s", "whsec_abc123")
        made.exc_info = sys.exc_info()
        return made


def test_json_lines_are_valid_json_with_everything_redacted() -> None:
    made = failing_record()
    made.request_id = "0123456789abcdef"
    made.card = 4242424242424242  # a number in an extra field
    made.client = "alice@example.com"
    line = JSONFormatter().format(made)
    entry = json.loads(line)  # still valid JSON after redaction
    assert entry["level"] == "ERROR" and entry["request_id"] == "0123456789abcdef"
    assert entry["card"] == "[card number removed]"
    assert "RuntimeError" in entry["exception"]
    for secret in ("4242424242424242", "alice@example.com", "whsec_abc123"):
        assert secret not in line


def test_text_lines_are_redacted_traceback_included() -> None:
    line = TextFormatter().format(failing_record())
    assert "RuntimeError" in line
    for secret in ("4242424242424242", "alice@example.com", "whsec_abc123"):
        assert secret not in line


def test_handlers_of_another_log_config_get_the_redacting_filter() -> None:
    # given uvicorn run with its own log config (a plain StreamHandler on its logger)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        # when payql starts
        install_redaction()
        install_redaction()  # (once is enough)
        assert sum(isinstance(f, Redact) for f in handler.filters) == 1
        # then what it writes is redacted
        logger.error("token %s for %s", JWT, "alice@example.com")
        assert JWT not in stream.getvalue() and "alice@example.com" not in stream.getvalue()
        assert "[token redacted]" in stream.getvalue()
    finally:
        logger.removeHandler(handler)


def test_the_filter_keeps_a_records_arguments_for_formatters_that_unpack_them() -> None:
    # given a record shaped like uvicorn's access log, with secrets URL-encoded
    made = logging.makeLogRecord(
        {
            "msg": '%s - "%s %s HTTP/%s" %d',
            "args": (
                "127.0.0.1:5000",
                "GET",
                "/graphql?query=x&email=alice%40example.com&card=4242+4242+4242+4242",
                "1.1",
                200,
            ),
        }
    )
    # when it is redacted
    assert Redact().filter(made)
    # then it still formats, with nothing secret left
    client, method, path, version, status = made.args  # type: ignore[misc]
    line = made.getMessage()
    assert status == 200 and method == "GET"
    assert "alice" not in line and "4242" not in line


def test_the_filter_never_breaks_a_bad_log_call() -> None:
    made = logging.makeLogRecord({"msg": "%d items", "args": ("not a number",)})
    assert Redact().filter(made)  # no exception here; logging reports it later, as usual
