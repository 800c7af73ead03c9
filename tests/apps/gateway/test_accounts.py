"""Accounts and tokens through the gateway's HTTP API."""

from __future__ import annotations

import datetime as dt

import jwt
import sqlalchemy as sa

from apps.gateway import services
from apps.gateway.models import User
from tests.apps.gateway.conftest import PASSWORD, Actors
from tests.conftest import auth
from tests.metrics import counted


def test_whole_account_flow_from_register_to_logout(client, actors, monkeypatch):
    refreshes = {
        o: counted("gateway_token_refreshes_total", outcome=o)
        for o in ("success", "refused")
    }
    created = actors.register("Alice@Example.com", "buyer")
    assert created["email"] == "alice@example.com"
    assert created["roles"] == ["buyer"]

    first = actors.login("ALICE@example.com")
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] == 300
    me = client.get("/api/v1/auth/me", headers=auth(first["access_token"]))
    assert me.status_code == 200
    assert me.get_json() == created

    second = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        client.get("/api/v1/auth/me", headers=auth(second["access_token"])).status_code
        == 200
    )

    # The spent token again, past the retry grace window: refused, and its
    # whole family with it.
    later = services.utcnow() + dt.timedelta(seconds=11)
    monkeypatch.setattr(services, "utcnow", lambda: later)
    reused = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 401
    assert reused.mimetype == "application/problem+json"
    assert reused.get_json()["type"] == "invalid-refresh-token"
    after = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert after.status_code == 401
    assert {
        o: counted("gateway_token_refreshes_total", outcome=o) - refreshes[o]
        for o in refreshes
    } == {"success": 1, "refused": 2}
    assert (
        client.get("/api/v1/auth/me", headers=auth(second["access_token"])).status_code
        == 401
    )

    # A fresh login, then logout: the access token is refused at once,
    # by the gateway's own endpoints and at the proxy's edge alike.
    third = actors.login("alice@example.com")
    headers = auth(third["access_token"])
    assert client.get("/api/v1/products", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    edge = client.get("/api/v1/products", headers=headers)
    assert edge.status_code == 401
    assert edge.mimetype == "application/problem+json"
    refresh = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]}
    )
    assert refresh.status_code == 401


def test_access_token_carries_the_agreed_claims(client, actors, jwt_keys):
    actors.register("claims@example.com", "seller")
    token = actors.login("claims@example.com")["access_token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, jwt_keys.public_pem, algorithms=["RS256"], audience="chomik"
    )
    assert header["kid"] == jwt_keys.kid
    assert header["alg"] == "RS256"
    assert claims["roles"] == ["seller"]
    assert claims["type"] == "access"
    assert claims["iss"] == "chomik-gateway"
    assert claims["exp"] - claims["iat"] == 300
    assert {"sub", "jti", "sid"} <= set(claims)


def test_logout_with_a_refresh_token_revokes_that_family_too(client, actors):
    actors.register("two@example.com")
    phone = actors.login("two@example.com")
    laptop = actors.login("two@example.com")
    response = client.post(
        "/api/v1/auth/logout",
        headers=auth(phone["access_token"]),
        json={"refresh_token": laptop["refresh_token"]},
    )
    assert response.status_code == 204
    for pair in (phone, laptop):
        refreshed = client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 401


def test_logout_leaves_other_sessions_alone(client, actors):
    actors.register("keep@example.com")
    phone = actors.login("keep@example.com")
    laptop = actors.login("keep@example.com")
    assert (
        client.post(
            "/api/v1/auth/logout", headers=auth(phone["access_token"])
        ).status_code
        == 204
    )
    assert (
        client.get("/api/v1/auth/me", headers=auth(laptop["access_token"])).status_code
        == 200
    )


def test_login_rehashes_a_password_hashed_with_old_parameters(make_gateway, dbs):
    old = make_gateway().test_client()
    old.post(
        "/api/v1/auth/register",
        json={
            "email": "re@example.com",
            "password": PASSWORD,
            "name": "R",
            "role": "buyer",
        },
    )
    session = dbs.session("gateway")
    before = session.scalar(
        sa.select(User.password_hash).where(User.email == "re@example.com")
    )
    assert "t=1" in before

    new = make_gateway(password_hash_time_cost=2).test_client()
    response = new.post(
        "/api/v1/auth/login", json={"email": "re@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    session.expire_all()
    after = session.scalar(
        sa.select(User.password_hash).where(User.email == "re@example.com")
    )
    assert "t=2" in after
    assert (
        new.post(
            "/api/v1/auth/login", json={"email": "re@example.com", "password": PASSWORD}
        ).status_code
        == 200
    )


def test_jwks_serves_the_key_that_verifies_tokens(client, jwt_keys):
    response = client.get("/api/v1/auth/jwks")
    assert response.status_code == 200
    (key,) = response.get_json()["keys"]
    assert key["kid"] == jwt_keys.kid
    assert key["alg"] == "RS256"
    assert "d" not in key


def test_logout_cannot_revoke_another_persons_session(client, actors):
    actors.register("mallory@example.com")
    actors.register("victim2@example.com")
    mallory = actors.login("mallory@example.com")
    victim = actors.login("victim2@example.com")
    response = client.post(
        "/api/v1/auth/logout",
        headers=auth(mallory["access_token"]),
        json={"refresh_token": victim["refresh_token"]},
    )
    assert response.status_code == 204
    refreshed = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": victim["refresh_token"]}
    )
    assert refreshed.status_code == 200


def test_expired_refresh_token_is_refused(make_gateway):
    client = make_gateway(refresh_token_ttl=0).test_client()
    people = Actors(client)
    people.register("late@example.com")
    pair = people.login("late@example.com")
    response = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert response.status_code == 401
    assert response.get_json()["detail"] == "The refresh token has expired"
