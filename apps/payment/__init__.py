"""The payment service."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from apps.payment.services import Ports, build_ports
from apps.payment.settings import PaymentSettings
from apps.payment.views import payments, starts
from chomik.web import create_app as create_web_app

BLUEPRINTS: list[Blueprint] = [payments.blp, starts.blp]


def create_app(
    settings: PaymentSettings | None = None, *, ports: Ports | None = None
) -> Flask:
    """Build the payment web app; `ports` replaces the bank client and coordinator."""
    settings = settings or PaymentSettings.from_env()
    app = create_web_app("payment", settings, BLUEPRINTS)
    app.extensions["payment.ports"] = ports or build_ports(settings)
    return app
