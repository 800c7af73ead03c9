"""The orders service."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from apps.orders.settings import OrdersSettings
from chomik.web import create_app as create_web_app

BLUEPRINTS: list[Blueprint] = []


def create_app(settings: OrdersSettings | None = None) -> Flask:
    """Build the orders web app."""
    settings = settings or OrdersSettings.from_env()
    return create_web_app("orders", settings, BLUEPRINTS)
