"""The carrier mock: an outside system that takes parcels to the door."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from chomik.faults import faults_blueprint
from chomik.web import create_app as create_web_app
from mocks.carrier.settings import CarrierSettings
from mocks.carrier.views import advance, shipments, tracking

BLUEPRINTS: list[Blueprint] = [shipments.blp, tracking.blp]


def create_app(settings: CarrierSettings | None = None) -> Flask:
    """Build the carrier web app (test-only endpoints only outside production)."""
    settings = settings or CarrierSettings.from_env()
    blueprints = list(BLUEPRINTS)
    if settings.environment != "production":
        blueprints += [advance.blp, faults_blueprint(lambda: settings.faults)]
    return create_web_app("carrier", settings, blueprints)
