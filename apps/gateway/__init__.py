"""The gateway service."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from apps.gateway.settings import GatewaySettings
from chomik.web import create_app as create_web_app

BLUEPRINTS: list[Blueprint] = []


def create_app(settings: GatewaySettings | None = None) -> Flask:
    """Build the gateway web app."""
    settings = settings or GatewaySettings.from_env()
    return create_web_app("gateway", settings, BLUEPRINTS)
