"""The carrier mock."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from chomik.web import create_app as create_web_app
from mocks.carrier.settings import CarrierSettings

BLUEPRINTS: list[Blueprint] = []


def create_app(settings: CarrierSettings | None = None) -> Flask:
    """Build the carrier web app."""
    settings = settings or CarrierSettings.from_env()
    return create_web_app("carrier", settings, BLUEPRINTS)
