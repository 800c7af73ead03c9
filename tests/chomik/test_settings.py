"""Settings are read once from the environment; production refuses default secrets."""

import pytest

from chomik.settings import DEV_SECRET, Settings, SettingsError


def test_empty_environment_gives_working_development_defaults():
    settings = Settings.from_env({})
    assert settings.environment == "development"
    assert settings.database_url.endswith("/chomik_chomik")
    assert settings.kafka_bootstrap_servers == "127.0.0.1:17092"


def test_values_are_parsed_by_type():
    settings = Settings.from_env({"HTTP_TIMEOUT": "2.5", "LOG_LEVEL": "debug"})
    assert settings.http_timeout == 2.5
    assert settings.log_level == "debug"


def test_malformed_value_is_a_clear_error():
    with pytest.raises(SettingsError, match="HTTP_TIMEOUT"):
        Settings.from_env({"HTTP_TIMEOUT": "soon"})


def test_production_refuses_a_default_secret():
    with pytest.raises(SettingsError, match="SERVICE_TOKEN_SECRET"):
        Settings.from_env({"ENVIRONMENT": "production"})


PRODUCTION_DB = "postgresql+psycopg2://app@db.internal/chomik_chomik"


def test_production_refuses_a_default_hidden_in_a_list_of_secrets():
    environ = {"ENVIRONMENT": "production", "DATABASE_URL": PRODUCTION_DB}
    with pytest.raises(SettingsError, match="SERVICE_TOKEN_SECRET"):
        Settings.from_env(
            {**environ, "SERVICE_TOKEN_SECRET": f"{'x' * 40},{DEV_SECRET}"}
        )


def test_production_starts_with_real_secrets_and_a_database():
    settings = Settings.from_env(
        {
            "ENVIRONMENT": "production",
            "SERVICE_TOKEN_SECRET": "x" * 40,
            "DATABASE_URL": PRODUCTION_DB,
        }
    )
    assert settings.service_token_secret != DEV_SECRET
    assert settings.database_url == PRODUCTION_DB


def test_production_refuses_to_start_without_a_database_url():
    with pytest.raises(SettingsError, match="DATABASE_URL is not set"):
        Settings.from_env(
            {"ENVIRONMENT": "production", "SERVICE_TOKEN_SECRET": "x" * 40}
        )


def test_development_falls_back_to_the_embedded_cluster():
    settings = Settings.from_env({"ENVIRONMENT": "development"})
    assert settings.database_url.startswith("postgresql+psycopg2://postgres@127.0.0.1:")


def test_production_refuses_any_database_url_field_left_empty():
    from dataclasses import dataclass
    from typing import ClassVar

    from chomik.settings import env

    @dataclass(frozen=True, kw_only=True)
    class TwoDatabases(Settings):
        APP: ClassVar[str] = "two"
        other_database_url: str = env("OTHER_DATABASE_URL", "")

    production = {
        "ENVIRONMENT": "production",
        "SERVICE_TOKEN_SECRET": "x" * 40,
        "DATABASE_URL": PRODUCTION_DB,
    }
    with pytest.raises(SettingsError, match="OTHER_DATABASE_URL is not set"):
        TwoDatabases.from_env(production)
    both = TwoDatabases.from_env({**production, "OTHER_DATABASE_URL": PRODUCTION_DB})
    assert both.other_database_url == PRODUCTION_DB


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_a_body_timeout_must_be_above_zero(seconds):
    # 0 would make a client's socket non-blocking, -1 fail every body read.
    with pytest.raises(SettingsError, match="BODY_TIMEOUT"):
        Settings.from_env({"BODY_TIMEOUT": seconds})
