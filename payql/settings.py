"""Settings, read from the environment once at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DEV_JWT_SECRET = "payql-development-secret-change-me"
DEV_WEBHOOK_SECRET = "whsec_payql_development"


# Whole-number limits, each read from PAYQL_<NAME> and at least 1 (0 turns off the
# ones marked so in Settings).
LIMITS = (
    "max_query_depth",
    "max_aliases",
    "max_tokens",
    "max_query_cost",
    "max_body_bytes",
    "failed_payments_per_customer",
    "failed_payments_per_ip",
    "failed_payments_window_s",
    "websockets_per_ip",
    "subscriptions_per_connection",
)
MAY_BE_OFF = ("failed_payments_per_customer", "failed_payments_per_ip")


BUILT_IN_GATEWAYS = ("manual", "paypal", "simulated", "stripe")
PAYPAL_SANDBOX = "https://api-m.sandbox.paypal.com"
_GATEWAY_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


OPTIONS = "PAYQL_GATEWAY_"


def option_setting(gateway: str, option: str) -> str:
    """The environment variable that holds a plug-in gateway's option."""
    return f"PAYQL_GATEWAY_{gateway.upper()}_{option.upper()}"


class SettingsError(ValueError):
    """A setting is missing, malformed or unsafe."""


@dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite://{Path('payql.sqlite3').resolve()}"
    broadcast_url: str = "memory://"
    jwt_secret: str = field(default=DEV_JWT_SECRET, repr=False)
    env: str = "development"
    simulated_webhook_secret: str = field(default=DEV_WEBHOOK_SECRET, repr=False)
    simulated_latency_ms: int = 0
    refund_window_days: int = 180
    seed_catalog: bool = True
    # The simulated gateway and /simulated/confirm: on in development, off in
    # production unless asked for (it "pays" with test cards).
    simulated_gateway: bool = True
    stripe_secret_key: str = field(default="", repr=False)
    stripe_webhook_secret: str = field(default="", repr=False)
    stripe_api_base: str = ""  # another Stripe-compatible server (an emulator in tests)
    # The gateway for card payments: stripe when a Stripe key is set, else simulated.
    card_gateway: str = "simulated"
    # PayPal (Orders v2): on when a client id is set. Its sandbox unless told otherwise.
    paypal_client_id: str = ""
    paypal_client_secret: str = field(default="", repr=False)
    paypal_webhook_id: str = ""
    paypal_api_base: str = PAYPAL_SANDBOX
    # Where PayPal sends the buyer back after approving, or cancelling, on its page.
    paypal_return_url: str = ""
    paypal_cancel_url: str = ""
    # The gateway for PAYPAL payments: paypal when a client id is set, else simulated.
    paypal_gateway: str = "simulated"
    # Create tables from the models at start-up, for throwaway test databases only.
    generate_schemas: bool = False
    # How often the server reconciles payments a lost answer left unresolved (0: never).
    reconcile_every_s: int = 60
    # Browser origins that may call the API (CORS) and open its websockets.
    allowed_origins: tuple[str, ...] = ()
    # What one GraphQL document may ask for.
    max_query_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    max_query_cost: int = 200_000
    # Largest request body accepted (bytes), and largest websocket message.
    max_body_bytes: int = 256 * 1024
    # Card-testing protection: failed payments allowed per customer and per client IP
    # within the window, before processPayment answers RATE_LIMITED (0: no limit).
    failed_payments_per_customer: int = 10
    failed_payments_per_ip: int = 20
    failed_payments_window_s: int = 900
    # Websocket connections per client IP (per process), subscriptions per connection.
    websockets_per_ip: int = 50
    subscriptions_per_connection: int = 20
    # /metrics asks for this bearer token when set; in production it is off without one.
    metrics_token: str = field(default="", repr=False)
    # Notifications. Customers' emails: over SMTP (smtp://user:password@host:587, or
    # smtps://…:465); in development without it, .eml files in the mailbox folder.
    smtp_url: str = field(default="", repr=False)
    mail_from: str = "payql <payments@localhost>"
    mailbox_dir: str = "mailbox"
    customer_emails: bool = True
    shop_name: str = "payql demo shop"
    # The dispatcher in the server process (else `payql dispatch` runs it), how often it
    # looks for due deliveries, the first retry's delay (doubling up to 6 h) and when a
    # delivery is given up.
    dispatch_in_server: bool = True
    dispatch_every_ms: int = 1000
    notify_retry_base_ms: int = 30_000
    notify_give_up_hours: int = 72
    # Delivered or given-up notifications, and the gateways' webhook events (the
    # dedupe of their retries), are kept this many days, then pruned in batches by
    # the dispatcher; 0 keeps them for ever.
    retention_days: int = 30
    # On SIGTERM, how long requests in flight (gateway calls) may take to finish while
    # new ones get 503, before the server exits anyway (payql/drain.py).
    shutdown_grace_s: int = 30
    # Merchants' webhook endpoints may be on loopback or private addresses: in
    # development only, unless asked for.
    webhook_allow_private: bool = True
    # Log lines as JSON (the default in production) or as text.
    log_json: bool = False
    # Plug-in gateways to load by name (installed packages' `payql.gateways` entry
    # points), and the PAYQL_GATEWAY_* variables that hold their options: a gateway
    # takes PAYQL_GATEWAY_<NAME>_<OPTION> for each option it declares.
    gateways: tuple[str, ...] = ()
    gateway_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Tracing (OpenTelemetry, payql/tracing.py): "off", "otlp" (OTLP over HTTP/protobuf
    # to the traces endpoint, when OTEL_EXPORTER_OTLP_ENDPOINT is set) or "console"
    # (PAYQL_OTEL=1 without an endpoint: spans printed on stdout).
    tracing: str = "off"
    otel_traces_endpoint: str = ""
    otel_service_name: str = "payql"
    # Trusted documents: a manifest of sha256 → document (GraphQL Code Generator's
    # persisted-documents.json), read at start-up; with `trusted_documents_only`, no
    # free-form query is accepted (schema/trusted.py).
    trusted_documents: str = ""
    trusted_documents_only: bool = False

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()

        def get(name: str, default: str) -> str:
            return env.get(f"PAYQL_{name}", "").strip() or default

        production = get("ENV", defaults.env) == "production"
        limits: dict[str, Any] = {
            name: _int(get(name.upper(), str(getattr(defaults, name))), name.upper())
            for name in LIMITS
        }
        tracing, traces_endpoint, service_name = _tracing(env, get("OTEL", ""))
        settings = cls(
            database_url=get("DATABASE_URL", defaults.database_url),
            broadcast_url=get("BROADCAST_URL", defaults.broadcast_url),
            jwt_secret=get("JWT_SECRET", defaults.jwt_secret),
            env=get("ENV", defaults.env),
            simulated_webhook_secret=get(
                "SIMULATED_WEBHOOK_SECRET", defaults.simulated_webhook_secret
            ),
            simulated_latency_ms=_int(get("SIMULATED_LATENCY_MS", "0"), "SIMULATED_LATENCY_MS"),
            refund_window_days=_int(get("REFUND_WINDOW_DAYS", "180"), "REFUND_WINDOW_DAYS"),
            seed_catalog=_flag(get("SEED_CATALOG", "1"), "SEED_CATALOG"),
            simulated_gateway=_flag(
                get("SIMULATED_GATEWAY", "0" if production else "1"), "SIMULATED_GATEWAY"
            ),
            stripe_secret_key=get("STRIPE_SECRET_KEY", ""),
            stripe_webhook_secret=get("STRIPE_WEBHOOK_SECRET", ""),
            stripe_api_base=get("STRIPE_API_BASE", ""),
            reconcile_every_s=_int(get("RECONCILE_EVERY_S", "60"), "RECONCILE_EVERY_S"),
            card_gateway=get(
                "CARD_GATEWAY", "stripe" if get("STRIPE_SECRET_KEY", "") else "simulated"
            ).lower(),
            paypal_client_id=get("PAYPAL_CLIENT_ID", ""),
            paypal_client_secret=get("PAYPAL_CLIENT_SECRET", ""),
            paypal_webhook_id=get("PAYPAL_WEBHOOK_ID", ""),
            paypal_api_base=get("PAYPAL_API_BASE", PAYPAL_SANDBOX).rstrip("/"),
            paypal_return_url=get("PAYPAL_RETURN_URL", ""),
            paypal_cancel_url=get("PAYPAL_CANCEL_URL", ""),
            # In production the simulated PayPal takes PAYPAL payments only when named.
            paypal_gateway=(
                "paypal" if get("PAYPAL_CLIENT_ID", "") else ("none" if production else "simulated")
            ),
            allowed_origins=tuple(
                o.strip().rstrip("/").lower()
                for o in get("ALLOWED_ORIGINS", "").split(",")
                if o.strip()
            ),
            log_json=_flag(get("LOG_JSON", "1" if production else "0"), "LOG_JSON"),
            smtp_url=get("SMTP_URL", ""),
            mail_from=get("MAIL_FROM", defaults.mail_from),
            mailbox_dir=get("MAILBOX_DIR", defaults.mailbox_dir),
            customer_emails=_flag(
                get("CUSTOMER_EMAILS", "1" if get("SMTP_URL", "") or not production else "0"),
                "CUSTOMER_EMAILS",
            ),
            shop_name=get("SHOP_NAME", defaults.shop_name),
            dispatch_in_server=_flag(get("DISPATCH_IN_SERVER", "1"), "DISPATCH_IN_SERVER"),
            dispatch_every_ms=_int(get("DISPATCH_EVERY_MS", "1000"), "DISPATCH_EVERY_MS"),
            notify_retry_base_ms=_int(get("NOTIFY_RETRY_BASE_MS", "30000"), "NOTIFY_RETRY_BASE_MS"),
            notify_give_up_hours=_int(get("NOTIFY_GIVE_UP_HOURS", "72"), "NOTIFY_GIVE_UP_HOURS"),
            retention_days=_int(get("RETENTION_DAYS", "30"), "RETENTION_DAYS"),
            shutdown_grace_s=_int(get("SHUTDOWN_GRACE_S", "30"), "SHUTDOWN_GRACE_S"),
            webhook_allow_private=_flag(
                get("WEBHOOK_ALLOW_PRIVATE", "0" if production else "1"), "WEBHOOK_ALLOW_PRIVATE"
            ),
            metrics_token=get("METRICS_TOKEN", ""),
            tracing=tracing,
            otel_traces_endpoint=traces_endpoint,
            otel_service_name=service_name,
            trusted_documents=get("TRUSTED_DOCUMENTS", ""),
            trusted_documents_only=_flag(
                get("TRUSTED_DOCUMENTS_ONLY", "0"), "TRUSTED_DOCUMENTS_ONLY"
            ),
            gateways=tuple(
                dict.fromkeys(
                    n.strip().lower() for n in get("GATEWAYS", "").split(",") if n.strip()
                )
            ),
            gateway_env={
                key: value.strip() for key, value in env.items() if key.startswith(OPTIONS)
            },
            **limits,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse settings that are malformed, or unsafe in production."""
        if self.env not in ("development", "production"):
            raise SettingsError("PAYQL_ENV must be 'development' or 'production'")
        if self.refund_window_days < 0:
            raise SettingsError("PAYQL_REFUND_WINDOW_DAYS must be zero or more")
        for name in LIMITS:
            lowest = 0 if name in MAY_BE_OFF else 1
            if getattr(self, name) < lowest:
                raise SettingsError(f"PAYQL_{name.upper()} must be {lowest} or more")
        for origin in self.allowed_origins:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path not in ("", "/")
                or parts.query
                or "*" in origin
            ):
                raise SettingsError(
                    f"PAYQL_ALLOWED_ORIGINS lists origins like https://shop.example.com, "
                    f"comma-separated; {origin!r} is not one (no wildcards)"
                )
        if self.simulated_latency_ms < 0:
            raise SettingsError("PAYQL_SIMULATED_LATENCY_MS must be zero or more")
        if self.production and (self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32):
            raise SettingsError(
                "PAYQL_JWT_SECRET must be set to a random secret of at least 32 characters "
                "in production"
            )
        if self.card_gateway == "stripe" and not self.stripe_secret_key:
            raise SettingsError("the stripe card gateway needs PAYQL_STRIPE_SECRET_KEY")
        if self.card_gateway == "simulated" and not self.simulated_gateway:
            raise SettingsError(
                "no card gateway: set PAYQL_STRIPE_SECRET_KEY (or PAYQL_SIMULATED_GATEWAY=1)"
            )
        for name in self.gateways:
            if not _GATEWAY_NAME.fullmatch(name) or name in BUILT_IN_GATEWAYS:
                raise SettingsError(
                    f"PAYQL_GATEWAYS names plug-in gateways like acme or my_pay, comma-"
                    f"separated, none of {', '.join(BUILT_IN_GATEWAYS)}; {name!r} is not one"
                )
        if self.card_gateway not in ("stripe", "simulated", *self.gateways):
            raise SettingsError(
                "PAYQL_CARD_GATEWAY must be stripe, simulated or a gateway in PAYQL_GATEWAYS"
            )
        for name, url in (
            ("PAYPAL_API_BASE", self.paypal_api_base),
            ("PAYPAL_RETURN_URL", self.paypal_return_url),
            ("PAYPAL_CANCEL_URL", self.paypal_cancel_url),
        ):
            parts = urlsplit(url)
            if url and (parts.scheme not in ("http", "https") or not parts.netloc):
                raise SettingsError(f"PAYQL_{name} must be an http(s) address, not {url!r}")
        if self.tracing not in ("off", "otlp", "console"):
            raise SettingsError("tracing is off, otlp or console")
        endpoint = urlsplit(self.otel_traces_endpoint)
        if self.tracing == "otlp" and (
            endpoint.scheme not in ("http", "https") or not endpoint.netloc
        ):
            raise SettingsError(
                "OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is an "
                f"http(s) address like http://collector:4318, not {self.otel_traces_endpoint!r}"
            )
        if self.smtp_url and urlsplit(self.smtp_url).scheme not in ("smtp", "smtps"):
            raise SettingsError("PAYQL_SMTP_URL is smtp://[user:password@]host[:port] or smtps://…")
        smtp = urlsplit(self.smtp_url)
        if (
            self.production
            and smtp.password
            and smtp.scheme == "smtp"
            and "starttls=off" in smtp.query
        ):
            raise SettingsError(
                "PAYQL_SMTP_URL: a password is never sent without TLS in production "
                "(drop starttls=off, or use smtps://)"
            )
        if "@" not in self.mail_from:
            raise SettingsError("PAYQL_MAIL_FROM is an address, like Shop <payments@shop.example>")
        if self.production and self.customer_emails and not self.smtp_url:
            raise SettingsError(
                "PAYQL_CUSTOMER_EMAILS in production needs PAYQL_SMTP_URL (or set it to 0)"
            )
        for name in ("dispatch_every_ms", "notify_retry_base_ms", "notify_give_up_hours"):
            if getattr(self, name) < 1:
                raise SettingsError(f"PAYQL_{name.upper()} must be 1 or more")
        if self.shutdown_grace_s < 0:
            raise SettingsError("PAYQL_SHUTDOWN_GRACE_S is a number of seconds (0: none)")
        if self.retention_days < 0:
            raise SettingsError("PAYQL_RETENTION_DAYS is a number of days (0 keeps all)")
        if 0 < self.retention_days * 24 < self.notify_give_up_hours:
            raise SettingsError(
                "PAYQL_RETENTION_DAYS must outlast PAYQL_NOTIFY_GIVE_UP_HOURS: a gateway's "
                "retry of a pruned webhook event would be applied again"
            )
        if self.production and self.paypal_client_id and not self.paypal_webhook_id:
            raise SettingsError(
                "PAYQL_PAYPAL_WEBHOOK_ID is required in production: without it no PayPal "
                "webhook can be verified"
            )
        if self.trusted_documents_only and not self.trusted_documents:
            raise SettingsError(
                "PAYQL_TRUSTED_DOCUMENTS_ONLY needs PAYQL_TRUSTED_DOCUMENTS (the manifest): "
                "without it no request could be served"
            )
        if self.production and self.stripe_secret_key and not self.stripe_webhook_secret:
            raise SettingsError(
                "PAYQL_STRIPE_WEBHOOK_SECRET is required in production: without it no Stripe "
                "webhook can be verified"
            )
        if (
            self.production
            and self.simulated_gateway
            and self.simulated_webhook_secret == DEV_WEBHOOK_SECRET
        ):
            raise SettingsError(
                "PAYQL_SIMULATED_WEBHOOK_SECRET must be set to a secret of your own when the "
                "simulated gateway is on in production (PAYQL_SIMULATED_GATEWAY=1)"
            )


def _tracing(env: Mapping[str, str], asked: str) -> tuple[str, str, str]:
    """Tracing from OpenTelemetry's own variables: on with an OTLP endpoint
    (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT plus
    /v1/traces), or with PAYQL_OTEL=1 on the console; PAYQL_OTEL=0 or
    OTEL_SDK_DISABLED=true turn it off whatever else is set. The service is named by
    OTEL_SERVICE_NAME, else by service.name in OTEL_RESOURCE_ATTRIBUTES, else payql."""
    on = _flag(asked, "OTEL") if asked else None
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    endpoint = traces or (f"{base.rstrip('/')}/v1/traces" if base else "")
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if on is False or disabled or (on is None and not endpoint):
        tracing = "off"
    else:
        tracing = "otlp" if endpoint else "console"
    pairs = (
        p.split("=", 1) for p in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if "=" in p
    )
    resource = {unquote(k).strip(): unquote(v).strip() for k, v in pairs}
    service = env.get("OTEL_SERVICE_NAME", "").strip() or resource.get("service.name", "").strip()
    return tracing, endpoint if tracing == "otlp" else "", service or "payql"


def _flag(value: str, name: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"PAYQL_{name} must be 1 or 0 (true or false), not {value!r}")


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"PAYQL_{name} must be a whole number, not {value!r}") from None
