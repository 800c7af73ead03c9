"""The gateway: accounts and tokens, the reverse proxy to every service, API docs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_smorest import Blueprint
from werkzeug.middleware.proxy_fix import ProxyFix

from apps.gateway.context import build_gateway, gateway
from apps.gateway.keys import load_signing_keys
from apps.gateway.ratelimit import install_rate_limits
from apps.gateway.settings import GatewaySettings
from apps.gateway.views import auth, callbacks, docs, proxy
from chomik.auth import SigningKey, VerifyingKeys, init_tokens
from chomik.web import create_app as create_web_app
from chomik.web import runtime

BLUEPRINTS: list[Blueprint] = [auth.blp, callbacks.blp]
# Not part of the gateway's own OpenAPI paths: the proxy's paths come from the
# services' documents, and the docs are the documentation itself.
PLAIN_BLUEPRINTS = [docs.bp, proxy.bp]


def create_app(settings: GatewaySettings | None = None) -> Flask:
    """Build the gateway web app."""
    settings = settings or GatewaySettings.from_env()
    keys = load_signing_keys(settings)
    app = create_web_app(
        "gateway",
        settings,
        BLUEPRINTS,
        title="Chomik API",
        description="The public API of Chomik, the sneakers marketplace. "
        "Log in, then use Authorize with the access token.",
    )
    app.url_map.converters["public_path"] = proxy.public_path_converter(
        [blueprint.url_prefix or "" for blueprint in BLUEPRINTS]
    )
    for blueprint in PLAIN_BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.view_functions["api-docs.openapi_json"] = docs.merged_openapi
    # The gateway verifies with its own keys, signs, and refuses revoked tokens.
    init_tokens(
        app,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        keys=VerifyingKeys(public_keys=keys.public_pems),
        service_secret=settings.service_token_secret,
        is_revoked=_deny_list,
        signing=SigningKey(keys.private_pem, keys.kid),
    )
    app.extensions["chomik.gateway"] = build_gateway(settings, keys)
    install_rate_limits(app, settings, runtime(app).engine)
    if settings.trusted_proxy_hops:
        # Behind a router every client shares its address: the client is the
        # address the trusted hops forwarded. Without hops forwarded headers are
        # ignored, or anyone could pick the address their attempts count under.
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app


def _deny_list(claims: Mapping[str, Any]) -> bool:
    # A refresh token (rare) is checked in the database: its session may have
    # been revoked longer ago than the list in memory keeps sessions.
    return gateway().revocations.is_revoked(
        str(claims["jti"]),
        claims.get("sid"),
        ask_database=claims.get("type") == "refresh",
    )
