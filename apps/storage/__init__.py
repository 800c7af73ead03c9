"""The storage service."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from apps.storage.settings import StorageSettings
from apps.storage.views import products, reservations
from chomik.web import create_app as create_web_app

BLUEPRINTS: list[Blueprint] = [products.blp, reservations.blp]


def create_app(settings: StorageSettings | None = None) -> Flask:
    """Build the storage web app."""
    settings = settings or StorageSettings.from_env()
    return create_web_app("storage", settings, BLUEPRINTS)
