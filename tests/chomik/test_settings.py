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


def test_production_starts_with_real_secrets():
    settings = Settings.from_env(
        {"ENVIRONMENT": "production", "SERVICE_TOKEN_SECRET": "x" * 40}
    )
    assert settings.service_token_secret != DEV_SECRET
