"""Settings are read once from the environment; production refuses unsafe ones."""

from __future__ import annotations

import httpx
import jwt
import pytest

from payql.app import create_app, with_pool_size
from payql.cli import main
from payql.settings import DEV_JWT_SECRET, Settings, SettingsError


def test_defaults_run_with_no_configuration() -> None:
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite://") and settings.database_url.endswith(
        "payql.sqlite3"
    )
    assert settings.broadcast_url == "memory://"
    assert settings.refund_window_days == 180
    assert not settings.production


def test_settings_come_from_payql_variables() -> None:
    settings = Settings.from_env(
        {
            "PAYQL_DATABASE_URL": "postgres://db/payql",
            "PAYQL_BROADCAST_URL": "redis://cache:6379",
            "PAYQL_REFUND_WINDOW_DAYS": "30",
            "PAYQL_SIMULATED_LATENCY_MS": "50",
        }
    )
    assert settings.database_url == "postgres://db/payql"
    assert settings.broadcast_url == "redis://cache:6379"
    assert settings.refund_window_days == 30
    assert settings.simulated_latency_ms == 50


@pytest.mark.parametrize("secret", [None, DEV_JWT_SECRET, "short"])
def test_production_refuses_to_start_without_a_real_jwt_secret(secret: str | None) -> None:
    env = {"PAYQL_ENV": "production"}
    if secret is not None:
        env["PAYQL_JWT_SECRET"] = secret
    with pytest.raises(SettingsError, match="PAYQL_JWT_SECRET"):
        Settings.from_env(env)


PRODUCTION = {
    "PAYQL_ENV": "production",
    "PAYQL_JWT_SECRET": "s" * 40,
    "PAYQL_STRIPE_SECRET_KEY": "sk_live_x",
    "PAYQL_STRIPE_WEBHOOK_SECRET": "whsec_x",
}


def test_production_starts_with_real_secrets_and_a_real_card_gateway() -> None:
    settings = Settings.from_env(PRODUCTION)
    assert settings.production
    assert settings.card_gateway == "stripe"


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("PAYQL_STRIPE_WEBHOOK_SECRET", "PAYQL_STRIPE_WEBHOOK_SECRET"),
        ("PAYQL_STRIPE_SECRET_KEY", "PAYQL_STRIPE_SECRET_KEY"),
    ],
)
def test_production_refuses_a_card_gateway_it_cannot_trust(missing: str, named: str) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_a_stripe_key_makes_stripe_the_card_gateway() -> None:
    assert Settings.from_env({"PAYQL_STRIPE_SECRET_KEY": "sk_test_x"}).card_gateway == "stripe"
    assert Settings.from_env({}).card_gateway == "simulated"
    chosen = {"PAYQL_STRIPE_SECRET_KEY": "sk_test_x", "PAYQL_CARD_GATEWAY": "simulated"}
    assert Settings.from_env(chosen).card_gateway == "simulated"


@pytest.mark.parametrize(
    "env",
    [
        {"PAYQL_ENV": "staging"},
        {"PAYQL_REFUND_WINDOW_DAYS": "ten"},
        {"PAYQL_REFUND_WINDOW_DAYS": "-1"},
        {"PAYQL_ALLOWED_ORIGINS": "*"},
        {"PAYQL_ALLOWED_ORIGINS": "shop.example.com"},
        {"PAYQL_ALLOWED_ORIGINS": "https://shop.example.com/checkout"},
        {"PAYQL_ALLOWED_ORIGINS": "https://*.example.com"},
        {"PAYQL_MAX_QUERY_DEPTH": "0"},
        {"PAYQL_MAX_BODY_BYTES": "lots"},
        {"PAYQL_FAILED_PAYMENTS_PER_IP": "-1"},
        {"PAYQL_LOG_JSON": "maybe"},
        {"PAYQL_GATEWAYS": "stripe"},  # a built-in is not a plug-in
        {"PAYQL_GATEWAYS": "acme pay"},
        {"PAYQL_CARD_GATEWAY": "acme"},  # not among PAYQL_GATEWAYS
        {"PAYQL_RETENTION_DAYS": "-1"},
        {"PAYQL_SHUTDOWN_GRACE_S": "-1"},
        {"PAYQL_RETENTION_DAYS": "1"},  # shorter than the 72 h a delivery is retried
    ],
)
def test_malformed_settings_are_refused_with_their_name(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="PAYQL_"):
        Settings.from_env(env)


def test_plug_in_gateways_and_their_options_come_from_payql_variables() -> None:
    settings = Settings.from_env(
        {
            "PAYQL_GATEWAYS": "Acme, other_pay, acme",
            "PAYQL_GATEWAY_ACME_API_KEY": " acme_key_1 ",
            "PAYQL_GATEWAY_OTHER_PAY_MODE": "test",
            "PAYQL_CARD_GATEWAY": "ACME",
        }
    )
    assert settings.gateways == ("acme", "other_pay")  # once each, in order
    assert settings.gateway_env == {
        "PAYQL_GATEWAY_ACME_API_KEY": "acme_key_1",
        "PAYQL_GATEWAY_OTHER_PAY_MODE": "test",
    }
    assert settings.card_gateway == "acme"
    assert "acme_key_1" not in repr(settings)  # options may be secrets


def test_limits_and_origins_come_from_payql_variables() -> None:
    settings = Settings.from_env(
        {
            "PAYQL_ALLOWED_ORIGINS": "https://Shop.Example.com, http://localhost:5173/",
            "PAYQL_MAX_QUERY_COST": "5000",
            "PAYQL_FAILED_PAYMENTS_PER_CUSTOMER": "0",
        }
    )
    assert settings.allowed_origins == ("https://shop.example.com", "http://localhost:5173")
    assert settings.max_query_cost == 5000
    assert settings.failed_payments_per_customer == 0  # off
    assert settings.max_query_depth == 10  # the default
    assert not settings.log_json


def test_the_token_command_mints_a_token_the_service_accepts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYQL_JWT_SECRET", "t" * 40)
    assert main(["token", "--role", "admin", "--sub", "ops", "--email", "ops@example.com"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "t" * 40, algorithms=["HS256"])
    assert (claims["sub"], claims["role"], claims["email"]) == ("ops", "admin", "ops@example.com")


def test_the_cli_reports_bad_settings_instead_of_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYQL_ENV", "production")
    monkeypatch.delenv("PAYQL_JWT_SECRET", raising=False)
    assert main(["token", "--sub", "x"]) == 2
    assert "PAYQL_JWT_SECRET" in capsys.readouterr().err


def test_the_simulated_gateway_is_off_in_production_unless_asked_for() -> None:
    real = PRODUCTION
    assert not Settings.from_env(real).simulated_gateway
    assert Settings.from_env({}).simulated_gateway
    # asked for in production, it needs a webhook secret of its own
    with pytest.raises(SettingsError, match="PAYQL_SIMULATED_WEBHOOK_SECRET"):
        Settings.from_env({**real, "PAYQL_SIMULATED_GATEWAY": "1"})
    on = Settings.from_env(
        {
            **real,
            "PAYQL_SIMULATED_GATEWAY": "1",
            "PAYQL_SIMULATED_WEBHOOK_SECRET": "whsec_" + "x" * 30,
        }
    )
    assert on.simulated_gateway


async def test_production_serves_no_test_card_gateway() -> None:
    # given the app as production assembles it (no lifespan needed for routing)
    app = create_app(Settings.from_env(PRODUCTION))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://payql") as client:
        # then there is no confirm page, no simulated webhook, and no GraphiQL
        confirm = await client.post("/simulated/confirm", json={"clientSecret": "x"})
        webhook = await client.post("/webhooks/simulated", content=b"{}")
        graphiql = await client.get("/graphql", headers={"Accept": "text/html"})
    assert confirm.status_code == 404
    assert webhook.status_code == 404
    assert graphiql.status_code == 404
    assert "simulated" not in app.state.service.gateways


def test_postgresql_gets_a_pool_of_20_unless_the_url_says_otherwise() -> None:
    # given database URLs with and without a pool size
    # then PostgreSQL's gets 20 connections by default (Tortoise's 5 starve 64
    # concurrent requests), an explicit maxsize is kept, and SQLite's is left alone
    assert with_pool_size("postgres://u@h/db") == "postgres://u@h/db?maxsize=20"
    assert with_pool_size("postgres://u@h/db?ssl=true") == "postgres://u@h/db?ssl=true&maxsize=20"
    assert with_pool_size("postgres://u@h/db?maxsize=40") == "postgres://u@h/db?maxsize=40"
    assert with_pool_size("sqlite:///tmp/x.sqlite3") == "sqlite:///tmp/x.sqlite3"
