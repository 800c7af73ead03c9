"""The orders service."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from apps.orders.services import Ports
from apps.orders.settings import OrdersSettings
from apps.orders.views import internal, orders
from chomik.web import create_app as create_web_app
from clients.delivery import DeliveryClient
from clients.storage import StorageClient

BLUEPRINTS: list[Blueprint] = [orders.blp, internal.blp]


def create_app(
    settings: OrdersSettings | None = None, *, ports: Ports | None = None
) -> Flask:
    """Build the orders web app; `ports` replaces the clients of storage and delivery."""
    settings = settings or OrdersSettings.from_env()
    app = create_web_app("orders", settings, BLUEPRINTS)
    app.extensions["orders.ports"] = ports or build_ports(settings)
    return app


def build_ports(settings: OrdersSettings) -> Ports:
    """The clients of the services orders calls, from the settings."""
    secret, timeout = settings.service_token_secret, settings.http_timeout
    return Ports(
        storage=StorageClient(
            settings.storage_url,
            service_secret=secret,
            caller="orders",
            timeout=timeout,
        ),
        addresses=DeliveryClient(
            settings.delivery_url,
            service_secret=secret,
            caller="orders",
            timeout=timeout,
        ),
    )
