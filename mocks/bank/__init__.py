"""The bank mock: an outside system that takes merchants' payments."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from chomik.faults import faults_blueprint
from chomik.web import create_app as create_web_app
from mocks.bank.settings import BankSettings
from mocks.bank.views import accounts, transactions

BLUEPRINTS: list[Blueprint] = [accounts.blp, transactions.blp]


def create_app(settings: BankSettings | None = None) -> Flask:
    """Build the bank web app (the fault switches' endpoint only outside production)."""
    settings = settings or BankSettings.from_env()
    blueprints = list(BLUEPRINTS)
    if settings.environment != "production":
        blueprints.append(faults_blueprint(lambda: settings.faults))
    return create_web_app("bank", settings, blueprints)
