"""What the gateway keeps on its app besides the kit's runtime."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from apps.gateway.callbacks import CallbackPublisher, CallbackSource, callback_sources
from apps.gateway.keys import SigningKeys
from apps.gateway.openapi import ServiceDocuments
from apps.gateway.passwords import Passwords
from apps.gateway.proxy import Forwarder
from apps.gateway.revocations import Revocations
from apps.gateway.services import TokenIssuer
from apps.gateway.settings import GatewaySettings
from chomik.db import make_engine

# A refresh racing its session's revocation may issue one more access token.
SESSION_MARGIN = 60
# A database gone without a word (no FIN, no RST) stops the deny list's thread
# within seconds, not at the kernel's retransmission limit (minutes).
LISTENING = {"connect_timeout": 5, "tcp_user_timeout": 10_000, "keepalives_idle": 5}


@dataclass(frozen=True)
class Gateway:
    keys: SigningKeys
    passwords: Passwords
    issuer: TokenIssuer
    forwarder: Forwarder
    documents: ServiceDocuments
    callbacks: dict[str, CallbackSource]
    publisher: CallbackPublisher
    revocations: Revocations


def gateway() -> Gateway:
    """The gateway state of the current app."""
    state: Gateway = current_app.extensions["chomik.gateway"]
    return state


def build_gateway(settings: GatewaySettings, keys: SigningKeys) -> Gateway:
    """Assemble the gateway state from its settings, once per app."""
    forwarder = Forwarder(
        settings.upstreams,
        connect_timeout=settings.proxy_connect_timeout,
        read_timeout=settings.proxy_read_timeout,
        idle_reuse=settings.proxy_idle_reuse,
    )
    return Gateway(
        keys=keys,
        passwords=Passwords(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
        ),
        issuer=TokenIssuer(
            keys,
            settings.access_token_ttl,
            settings.refresh_token_ttl,
            settings.refresh_reuse_grace,
        ),
        forwarder=forwarder,
        documents=ServiceDocuments(
            settings.upstreams,
            ttl=settings.openapi_cache_ttl,
            timeout=settings.proxy_connect_timeout,
        ),
        callbacks=callback_sources(settings),
        publisher=CallbackPublisher(
            settings.kafka_bootstrap_servers,
            timeout=settings.callback_publish_timeout,
        ),
        revocations=Revocations(
            # Autocommit: no BEGIN and ROLLBACK round trips around a database read.
            make_engine(
                settings.database_url,
                isolation_level="AUTOCOMMIT",
                connect_args=LISTENING,
            ),
            keep_sessions=settings.access_token_ttl + SESSION_MARGIN,
        ),
    )
