"""The bank mock."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

from chomik.web import create_app as create_web_app
from mocks.bank.settings import BankSettings

BLUEPRINTS: list[Blueprint] = []


def create_app(settings: BankSettings | None = None) -> Flask:
    """Build the bank web app."""
    settings = settings or BankSettings.from_env()
    return create_web_app("bank", settings, BLUEPRINTS)
