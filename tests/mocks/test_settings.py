"""The mocks and our services read some of the same variables: same defaults, too."""

import pytest

from apps.delivery.settings import DeliverySettings
from apps.gateway.settings import GatewaySettings
from chomik.settings import SettingsError
from mocks.bank.settings import BankSettings
from mocks.carrier.settings import CarrierSettings

URL = "postgresql+psycopg2://nobody@127.0.0.1:1/none"


def test_the_gateway_verifies_what_the_mocks_sign_by_default():
    gateway = GatewaySettings(database_url=URL)
    assert BankSettings(database_url=URL).bank_callback_secrets == (
        gateway.bank_callback_secrets
    )
    assert CarrierSettings(database_url=URL).carrier_callback_secrets == (
        gateway.carrier_callback_secrets
    )


def test_the_carrier_serves_the_countries_delivery_accepts_by_default():
    carrier = CarrierSettings(database_url=URL)
    assert (
        carrier.served_countries == DeliverySettings(database_url=URL).served_countries
    )


def test_the_first_secret_signs():
    settings = BankSettings(database_url=URL, bank_callback_secrets=" new , old ")
    assert settings.signing_secret == "new"


@pytest.mark.parametrize("tokens", ["no-account", "token:not-a-uuid", ":"])
def test_malformed_bank_merchant_tokens_are_refused(tokens):
    with pytest.raises(SettingsError, match="BANK_MERCHANT_TOKENS"):
        BankSettings(database_url=URL, bank_merchant_tokens=tokens)


@pytest.mark.parametrize("tokens", ["no-name", "token:", ":name"])
def test_malformed_carrier_merchant_tokens_are_refused(tokens):
    with pytest.raises(SettingsError, match="CARRIER_MERCHANT_TOKENS"):
        CarrierSettings(database_url=URL, carrier_merchant_tokens=tokens)


def test_the_mocks_refuse_their_development_secrets_in_production():
    with pytest.raises(SettingsError, match="BANK_MERCHANT_TOKENS|BANK_CALLBACK"):
        BankSettings(
            database_url=URL,
            environment="production",
            service_token_secret="a-real-production-service-secret-0123456789",
        )
