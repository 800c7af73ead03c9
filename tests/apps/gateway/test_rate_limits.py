"""Login and registration throttling, counted in the gateway's database."""

from __future__ import annotations

import pytest

from tests.apps.gateway.conftest import PASSWORD, Actors


def wrong_login(client, email):
    return client.post(
        "/api/v1/auth/login", json={"email": email, "password": "wrong-one"}
    )


def test_sixth_wrong_login_in_a_minute_is_429_with_retry_after(client, actors):
    actors.register("victim@example.com")
    for _ in range(5):
        assert wrong_login(client, "victim@example.com").status_code == 401
    limited = wrong_login(client, "VICTIM@example.com")
    assert limited.status_code == 429
    assert limited.mimetype == "application/problem+json"
    assert limited.get_json()["type"] == "too-many-requests"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    # Even the right password waits now, and another account is not affected.
    right = client.post(
        "/api/v1/auth/login", json={"email": "victim@example.com", "password": PASSWORD}
    )
    assert right.status_code == 429
    actors.register("bystander@example.com")
    assert actors.login("bystander@example.com")["access_token"]


def test_attempts_in_flight_together_never_pass_the_limit(
    gateway_settings, committed_db
):
    from concurrent.futures import ThreadPoolExecutor

    from apps.gateway import create_app

    app = create_app(gateway_settings())  # real commits: threads share no connection
    Actors(app.test_client()).register("rush@example.com")

    def attempt(_n):
        return wrong_login(app.test_client(), "rush@example.com").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(attempt, range(12)))
    app.extensions["chomik"].engine.dispose()
    assert statuses == [401] * 5 + [429] * 7


def test_a_long_unicode_email_is_counted_not_a_500(make_gateway):
    client = make_gateway(login_address_rate_limit="2/minute").test_client()
    statuses = [
        wrong_login(client, "\u0130" * 240 + "@x.io").status_code for _ in range(3)
    ]
    assert statuses[-1] == 429
    assert 500 not in statuses


def test_many_accounts_from_one_address_hit_the_address_limit(make_gateway):
    client = make_gateway(login_address_rate_limit="3/minute").test_client()
    for n in range(3):
        assert wrong_login(client, f"spray{n}@example.com").status_code == 401
    assert wrong_login(client, "spray9@example.com").status_code == 429


@pytest.mark.parametrize("store", ["", "memory://"])
def test_registration_is_limited_per_address(make_gateway, store):
    client = make_gateway(
        register_rate_limit="2/minute", ratelimit_storage_uri=store
    ).test_client()
    answers = [
        client.post(
            "/api/v1/auth/register",
            json={"email": f"r{n}@example.com", "password": PASSWORD, "name": "R",
                  "role": "buyer"},
        )
        for n in range(3)
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [201, 201, 429]
    refused = answers[-1]
    assert refused.content_type == "application/problem+json"
    assert "registrations" in refused.json["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("limit", ["1/minute"])
def test_database_storage_counts_expires_and_clears(app, limit):
    from limits import parse
    from limits.strategies import FixedWindowRateLimiter

    from apps.gateway.ratelimit import DatabaseStorage

    storage = DatabaseStorage("gateway-db://", engine=app.extensions["chomik"].engine)
    assert storage.check()
    assert storage.incr("k", expiry=60) == 1
    assert storage.incr("k", expiry=60, amount=2) == 3
    assert storage.get("k") == 3
    assert storage.get_expiry("k") > 0
    limiter = FixedWindowRateLimiter(storage)
    assert limiter.hit(parse(limit), "other")
    assert not limiter.hit(parse(limit), "other")
    storage.clear("k")
    assert storage.get("k") == 0
    assert storage.incr("short", expiry=0) == 1
    assert storage.get("short") == 0  # already expired
    assert storage.incr("short", expiry=60) == 1  # a new window starts from zero
