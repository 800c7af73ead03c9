"""Accounts and tokens: register, login, refresh, logout, me, jwks."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from apps.gateway import services
from apps.gateway.context import gateway
from apps.gateway.metrics import TOKEN_REFRESHES
from apps.gateway.models import Role
from apps.gateway.schemas import (
    AccountCreateSchema,
    AccountSchema,
    JwksSchema,
    LoginSchema,
    LogoutSchema,
    RefreshSchema,
    TokenSchema,
)
from chomik.auth import current_user, require_refresh_token, require_role
from chomik.problems import ProblemSchema
from chomik.web import db_session, runtime

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Accounts and tokens")


@blp.after_request
def count_refreshes(response: Response) -> Response:
    """Count each refresh exchange by its answer: a token refused by the token check
    (revoked family, expired) and one refused by the rotation (spent) alike."""
    rule = request.url_rule
    if rule is not None and rule.rule.endswith("/auth/refresh"):
        if response.status_code == 200:
            TOKEN_REFRESHES.labels("success").inc()
        elif response.status_code == 401:
            TOKEN_REFRESHES.labels("refused").inc()
    return response


BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# RFC 6749 §5.1: no cache, shared or private, may keep an answer carrying tokens.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@blp.route("/register")
class Register(MethodView):
    @blp.arguments(AccountCreateSchema)
    @blp.response(201, AccountSchema)
    @blp.alt_response(
        409, schema=ProblemSchema, description="E-mail already registered"
    )
    @blp.alt_response(
        429,
        schema=ProblemSchema,
        description="Too many registrations from this address",
    )
    def post(self, data: dict[str, Any]) -> services.Account:
        """Register a buyer or seller account"""
        return services.register_account(
            db_session(),
            email=data["email"],
            password=data["password"],
            name=data["name"],
            role=Role(data["role"]),
            passwords=gateway().passwords,
        )


@blp.route("/login")
class Login(MethodView):
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="Wrong e-mail or password")
    @blp.alt_response(
        429,
        schema=ProblemSchema,
        description="Too many failed attempts, or logins from this address",
    )
    def post(
        self, data: dict[str, Any]
    ) -> tuple[services.TokenPair, int, dict[str, str]]:
        """Log in: an access token and a refresh token"""
        state = gateway()
        pair = services.log_in(
            db_session(),
            email=data["email"],
            password=data["password"],
            passwords=state.passwords,
            issuer=state.issuer,
        )
        return pair, 200, NO_STORE


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.arguments(RefreshSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(
        401,
        schema=ProblemSchema,
        description="Unknown, expired, spent or revoked token",
    )
    @require_refresh_token
    def post(
        self, data: dict[str, Any]
    ) -> tuple[services.TokenPair, int, dict[str, str]]:
        """Exchange a refresh token for a new pair

        The refresh token is spent: presenting it again revokes every token of
        its login session.
        """
        pair = services.rotate_refresh_token(
            runtime().sessions, data["refresh_token"], gateway().issuer
        )
        return pair, 200, NO_STORE


@blp.route("/logout")
class Logout(MethodView):
    @blp.arguments(LogoutSchema, required=False)
    @blp.response(204)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid access token")
    @blp.doc(security=BEARER)
    @require_role()
    def post(self, data: dict[str, Any] | None) -> None:
        """Log out: revoke the access token and its refresh tokens"""
        session, user = db_session(), current_user()
        services.log_out(session, user, refresh_token=(data or {}).get("refresh_token"))
        session.commit()
        # Answered once this gateway, and with it every other, has the logout in memory.
        gateway().revocations.wait_seen(user.jti)


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, AccountSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid access token")
    @blp.doc(security=BEARER)
    @require_role()
    def get(self) -> services.Account:
        """The account of the access token"""
        return services.get_account(db_session(), current_user().id)


@blp.route("/jwks")
class Jwks(MethodView):
    @blp.response(200, JwksSchema)
    def get(self) -> dict[str, Any]:
        """The public keys that verify access tokens"""
        return gateway().keys.jwks()
