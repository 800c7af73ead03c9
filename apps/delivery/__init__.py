"""The delivery service."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from apps.delivery.settings import DeliverySettings
from apps.delivery.views import address_checks, addresses, shipments
from chomik.web import create_app as create_web_app

BLUEPRINTS: list[Blueprint] = [addresses.blp, address_checks.blp, shipments.blp]


def create_app(settings: DeliverySettings | None = None) -> Flask:
    """Build the delivery web app."""
    settings = settings or DeliverySettings.from_env()
    return create_web_app("delivery", settings, BLUEPRINTS)
