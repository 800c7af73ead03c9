"""What the gateway keeps on its app besides the kit's runtime."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from apps.gateway.keys import SigningKeys
from apps.gateway.openapi import ServiceDocuments
from apps.gateway.passwords import Passwords
from apps.gateway.proxy import Forwarder
from apps.gateway.services import TokenIssuer


@dataclass(frozen=True)
class Gateway:
    keys: SigningKeys
    passwords: Passwords
    issuer: TokenIssuer
    forwarder: Forwarder
    documents: ServiceDocuments


def gateway() -> Gateway:
    """The gateway state of the current app."""
    state: Gateway = current_app.extensions["chomik.gateway"]
    return state
