"""The payment service."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from apps.payment.settings import PaymentSettings
from chomik.web import create_app as create_web_app

BLUEPRINTS: list[Blueprint] = []


def create_app(settings: PaymentSettings | None = None) -> Flask:
    """Build the payment web app."""
    settings = settings or PaymentSettings.from_env()
    return create_web_app("payment", settings, BLUEPRINTS)
