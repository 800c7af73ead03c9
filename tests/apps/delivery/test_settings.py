"""Delivery's settings: the carrier's countries."""

import pytest

from apps.delivery.settings import DeliverySettings
from chomik.settings import SettingsError


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
