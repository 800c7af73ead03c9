"""Failed logins are throttled without locking the owner out; every login of an
address is bounded too."""

from __future__ import annotations

import sqlalchemy as sa

from tests.apps.gateway.conftest import PASSWORD, Actors
from tests.metrics import counted


def login(client, email, password, address):
    return client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_an_attacker_elsewhere_does_not_lock_the_owner_out(client, actors):
    actors.register("owner@example.com")
    outcomes = ("success", "failure", "throttled")
    before = {o: counted("gateway_logins_total", outcome=o) for o in outcomes}
    statuses = [
        login(client, "owner@example.com", "guess-guess", "127.0.0.2").status_code
        for _ in range(30)
    ]
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}
    owner = login(client, "owner@example.com", PASSWORD, "127.0.0.3")
    assert owner.status_code == 200, owner.get_json()
    assert {
        o: counted("gateway_logins_total", outcome=o) - before[o] for o in outcomes
    } == {"success": 1, "failure": 5, "throttled": 25}


def test_successful_logins_do_not_count(make_gateway):
    client = make_gateway(login_rate_limit="2/minute").test_client()
    Actors(client).register("often@example.com")
    for _ in range(6):
        assert (
            login(client, "often@example.com", PASSWORD, "127.0.0.2").status_code == 200
        )
    assert (
        login(client, "often@example.com", "wrong-wrong", "127.0.0.2").status_code
        == 401
    )


def test_every_login_of_an_address_counts_toward_its_attempt_bound(make_gateway):
    client = make_gateway(login_attempt_rate_limit="3/minute").test_client()
    Actors(client).register("busy@example.com")
    throttled = counted("gateway_logins_total", outcome="throttled")
    for _ in range(3):  # correct ones: each costs a password hash all the same
        assert (
            login(client, "busy@example.com", PASSWORD, "127.0.0.2").status_code == 200
        )

    refused = login(client, "busy@example.com", PASSWORD, "127.0.0.2")

    assert refused.status_code == 429
    assert refused.content_type == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Too many logins from this address" in refused.get_json()["detail"]
    assert counted("gateway_logins_total", outcome="throttled") == throttled + 1
    assert login(client, "busy@example.com", PASSWORD, "127.0.0.3").status_code == 200


def over_the_account_bound(make_gateway, email: str, account_limit: str):
    """A gateway where 127.0.0.2 and .3 failed twice each for `email`: 4 failures."""
    client = make_gateway(
        login_rate_limit="2/minute", login_account_rate_limit=account_limit
    ).test_client()
    Actors(client).register(email)
    for address in ("127.0.0.2", "127.0.0.3"):
        for _ in range(2):
            assert login(client, email, "nope-nope", address).status_code == 401
    return client


def test_past_the_account_bound_only_failing_addresses_are_refused(make_gateway):
    client = over_the_account_bound(make_gateway, "target@example.com", "4/minute")
    # 4 failures: the account is over its bound. A third address may try once...
    assert (
        login(client, "target@example.com", "nope-nope", "127.0.0.4").status_code == 401
    )
    # ...and is refused next time, even with the right password.
    assert login(client, "target@example.com", PASSWORD, "127.0.0.4").status_code == 429
    # The owner's address has not failed: in.
    assert login(client, "target@example.com", PASSWORD, "127.0.0.5").status_code == 200


def test_a_failing_address_stays_refused_when_its_own_minute_runs_out(
    make_gateway, infra
):
    client = over_the_account_bound(make_gateway, "kept@example.com", "4/hour")
    # The pair's minute (2/minute) runs out; the account's hour does not.
    with infra.engine("gateway").begin() as conn:  # counts commit apart from the test
        conn.execute(sa.text("DELETE FROM rate_limits WHERE key LIKE '%/2/1/minute'"))
    refused = login(client, "kept@example.com", "nope", "127.0.0.2")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 60  # until the hour ends: true
    assert login(client, "kept@example.com", PASSWORD, "127.0.0.5").status_code == 200


def test_forwarded_headers_are_ignored_without_trusted_hops(client, actors):
    actors.register("spoof@example.com")
    for n in range(5):
        response = client.post(
            "/api/v1/auth/login",
            json={"email": "spoof@example.com", "password": "wrong-wrong"},
            headers={"X-Forwarded-For": f"10.0.0.{n}"},
        )
        assert response.status_code == 401
    response = client.post(
        "/api/v1/auth/login",
        json={"email": "spoof@example.com", "password": "wrong-wrong"},
        headers={"X-Forwarded-For": "10.0.0.99"},
    )
    assert response.status_code == 429


def test_behind_a_trusted_router_each_client_is_counted_apart(make_gateway):
    client = make_gateway(trusted_proxy_hops=1).test_client()
    Actors(client).register("routed@example.com")

    def attempt(password, forwarded_for):
        return client.post(
            "/api/v1/auth/login",
            json={"email": "routed@example.com", "password": password},
            headers={"X-Forwarded-For": forwarded_for},
            environ_base={"REMOTE_ADDR": "10.128.0.1"},  # the router
        )

    for _ in range(5):
        assert attempt("wrong-wrong", "203.0.113.7").status_code == 401
    assert attempt("wrong-wrong", "203.0.113.7").status_code == 429
    # A client spoofing an earlier hop is still counted by the address the router saw.
    assert attempt("wrong-wrong", "198.51.100.1, 203.0.113.7").status_code == 429
    assert attempt(PASSWORD, "198.51.100.20").status_code == 200
