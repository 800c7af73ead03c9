"""A refresh retried within the grace window gets the same pair; later, reuse revokes."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.gateway import services
from tests.conftest import auth


@pytest.fixture
def clock(monkeypatch):
    """Move the gateway's clock forward by a number of seconds."""
    start = services.utcnow()

    def advance(seconds: float) -> None:
        moved = start + dt.timedelta(seconds=seconds)
        monkeypatch.setattr(services, "utcnow", lambda: moved)

    advance(0)
    return advance


def refresh(client, token):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def test_a_retry_within_the_grace_window_gets_the_same_pair(client, actors, clock):
    actors.register("retry@example.com")
    first = actors.login("retry@example.com")
    answered = refresh(client, first["refresh_token"])  # its answer is "lost"
    assert answered.status_code == 200
    clock(9)
    retried = refresh(client, first["refresh_token"])
    assert retried.status_code == 200
    assert retried.get_json() == answered.get_json()
    assert retried.headers["Cache-Control"] == "no-store"
    # The session goes on: the successor works, once.
    successor = answered.get_json()
    me = client.get("/api/v1/auth/me", headers=auth(successor["access_token"]))
    assert me.status_code == 200
    assert refresh(client, successor["refresh_token"]).status_code == 200


def test_reuse_after_the_grace_window_revokes_the_session(client, actors, clock):
    actors.register("late@example.com")
    first = actors.login("late@example.com")
    second = refresh(client, first["refresh_token"]).get_json()
    clock(11)
    reused = refresh(client, first["refresh_token"])
    assert reused.status_code == 401
    assert reused.get_json()["type"] == "invalid-refresh-token"
    assert refresh(client, second["refresh_token"]).status_code == 401
    me = client.get("/api/v1/auth/me", headers=auth(second["access_token"]))
    assert me.status_code == 401


def test_the_grace_window_is_a_setting(make_gateway, clock):
    from tests.apps.gateway.conftest import Actors

    client = make_gateway(refresh_reuse_grace=0).test_client()
    people = Actors(client)
    people.register("strict@example.com")
    first = people.login("strict@example.com")
    assert refresh(client, first["refresh_token"]).status_code == 200
    clock(1)
    assert refresh(client, first["refresh_token"]).status_code == 401


def test_a_revoked_session_is_not_revived_by_a_retry(client, actors, clock):
    actors.register("gone@example.com")
    first = actors.login("gone@example.com")
    second = refresh(client, first["refresh_token"]).get_json()
    logout = client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": second["refresh_token"]},
        headers=auth(second["access_token"]),
    )
    assert logout.status_code == 204
    clock(1)
    assert refresh(client, first["refresh_token"]).status_code == 401
