"""Delivery's settings: the carrier's countries, address and secrets."""

import pytest

from apps.delivery.settings import DeliverySettings
from apps.gateway.settings import GatewaySettings
from chomik.settings import SettingsError
from mocks.carrier.settings import CarrierSettings


def test_the_default_countries_are_european_and_include_russia():
    served = DeliverySettings.from_env({}).served_countries
    assert {"RU", "DE", "FR", "PL"} <= served
    assert "US" not in served


def test_countries_are_read_from_the_environment():
    settings = DeliverySettings.from_env({"CARRIER_COUNTRIES": " de,fr ,,RU"})
    assert settings.served_countries == {"DE", "FR", "RU"}


@pytest.mark.parametrize("raw", ["DE,XX", "DEU", "", " , "])
def test_unknown_or_no_countries_refuse_to_start(raw):
    with pytest.raises(SettingsError, match="CARRIER_COUNTRIES"):
        DeliverySettings.from_env({"CARRIER_COUNTRIES": raw})


PRODUCTION = {
    "ENVIRONMENT": "production",
    "DATABASE_URL": "postgresql+psycopg2://chomik@db/chomik_delivery",
    "SERVICE_TOKEN_SECRET": "a-real-service-secret-0123456789",
    "CARRIER_MERCHANT_TOKEN": "a-real-carrier-merchant-token",
    "CARRIER_CALLBACK_SECRETS": "a-real-carrier-secret-0123456789,an-old-one-0123",
}


def test_production_starts_with_the_carrier_secrets_set():
    settings = DeliverySettings.from_env(PRODUCTION)
    assert settings.callback_secrets == (
        "a-real-carrier-secret-0123456789",
        "an-old-one-0123",
    )
    assert settings.carrier_merchant_token == "a-real-carrier-merchant-token"


@pytest.mark.parametrize(
    "variable", ["CARRIER_MERCHANT_TOKEN", "CARRIER_CALLBACK_SECRETS"]
)
def test_production_refuses_a_carrier_secret_left_at_its_default(variable):
    environ = {k: v for k, v in PRODUCTION.items() if k != variable}
    with pytest.raises(SettingsError, match=variable):
        DeliverySettings.from_env(environ)


def test_the_development_defaults_match_the_carrier_mock_and_the_gateway():
    delivery = DeliverySettings.from_env({})
    carrier = CarrierSettings.from_env({})
    assert delivery.carrier_merchant_token in carrier.merchants()
    assert delivery.carrier_callback_secrets == carrier.carrier_callback_secrets
    assert delivery.carrier_callback_secrets == (
        GatewaySettings.from_env({}).carrier_callback_secrets
    )
    assert delivery.carrier_url == carrier.carrier_public_url


def test_no_callback_secret_refuses_to_start():
    with pytest.raises(SettingsError, match="CARRIER_CALLBACK_SECRETS"):
        DeliverySettings.from_env({"CARRIER_CALLBACK_SECRETS": " , "})
