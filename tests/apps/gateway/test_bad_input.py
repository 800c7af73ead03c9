"""Bad input to the auth endpoints: a problem document each time, nothing stored."""

from __future__ import annotations

import time

import jwt
import pytest
import sqlalchemy as sa

from apps.gateway.models import User
from chomik.auth import generate_key_pair, issue_access_token, key_id
from tests.apps.gateway.conftest import PASSWORD
from tests.conftest import AUDIENCE, ISSUER, auth

VALID = {"email": "bad@example.com", "password": PASSWORD, "name": "B", "role": "buyer"}


def users(dbs) -> int:
    return dbs.session("gateway").scalar(sa.select(sa.func.count()).select_from(User))


def assert_problem(response, status, type_=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    if type_:
        assert body["type"] == type_
    return body


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({k: v for k, v in VALID.items() if k != "email"}, 422, "email"),
        ({**VALID, "admin": True}, 422, "admin"),
        ({**VALID, "password": 12345678}, 422, "password"),
        ({**VALID, "email": "not-an-email"}, 422, "email"),
        ({**VALID, "password": "short"}, 422, "password"),
        ({**VALID, "role": "admin"}, 422, "role"),
        ({**VALID, "name": ""}, 422, "name"),
    ],
    ids=["missing", "unknown-field", "wrong-type", "bad-email", "weak-password",
         "admin-role", "empty-name"],
)  # fmt: skip
def test_registration_refuses_bad_fields(client, dbs, body, status, field):
    problem = assert_problem(
        client.post("/api/v1/auth/register", json=body), status, "validation-error"
    )
    assert field in problem["errors"]
    assert users(dbs) == 0


def test_malformed_json_is_a_problem(client, dbs):
    response = client.post(
        "/api/v1/auth/register", data="{not json", content_type="application/json"
    )
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"
    assert users(dbs) == 0


def test_ten_megabyte_body_is_413(client, dbs):
    body = b'{"email": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    response = client.post(
        "/api/v1/auth/register", data=body, content_type="application/json"
    )
    assert_problem(response, 413, "payload-too-large")
    assert users(dbs) == 0


def test_taken_email_is_409_whatever_its_case(client, actors, dbs):
    actors.register("taken@example.com")
    response = client.post(
        "/api/v1/auth/register", json={**VALID, "email": "TAKEN@Example.com"}
    )
    assert_problem(response, 409, "email-taken")
    assert users(dbs) == 1


def test_wrong_password_and_unknown_email_get_the_same_401(client, actors):
    actors.register("known@example.com")
    wrong = client.post(
        "/api/v1/auth/login",
        json={"email": "known@example.com", "password": "nope-nope"},
    )
    unknown = client.post(
        "/api/v1/auth/login",
        json={"email": "nobody@example.com", "password": "nope-nope"},
    )
    assert assert_problem(wrong, 401) == assert_problem(unknown, 401)
    assert wrong.get_json()["type"] == "invalid-credentials"


def test_unknown_email_costs_the_same_time_as_a_wrong_password(app, dbs):
    from apps.gateway import services
    from apps.gateway.errors import InvalidCredentialsError
    from apps.gateway.models import Role
    from apps.gateway.passwords import Passwords

    # Real-sized hashing (tens of ms), so the hash and not the noise is measured.
    passwords = Passwords(time_cost=2, memory_kib=32768)
    issuer = app.extensions["chomik.gateway"].issuer
    session = dbs.session("gateway")
    services.register_account(
        session, email="t@example.com", password=PASSWORD, name="T",
        role=Role.BUYER, passwords=passwords,
    )  # fmt: skip

    def attempt(email):
        start = time.perf_counter()
        with pytest.raises(InvalidCredentialsError):
            services.log_in(
                session, email=email, password="wrong-password",
                passwords=passwords, issuer=issuer,
            )  # fmt: skip
        return time.perf_counter() - start

    attempt("nobody@example.com")  # the dummy hash is made on first use
    unknown, wrong = [], []
    for _ in range(9):  # interleaved, so load on the machine hits both alike
        unknown.append(attempt("nobody@example.com"))
        wrong.append(attempt("t@example.com"))
    ratio = sorted(unknown)[4] / sorted(wrong)[4]
    assert 0.5 < ratio < 2.0


def test_refresh_token_is_not_an_access_token_and_vice_versa(client, actors):
    actors.register("swap@example.com")
    pair = actors.login("swap@example.com")
    me = client.get("/api/v1/auth/me", headers=auth(pair["refresh_token"]))
    assert_problem(me, 401)
    refresh = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]}
    )
    assert_problem(refresh, 401)


def test_token_signed_by_another_key_is_401(client, actors):
    account = actors.register("forged@example.com")
    private, public = generate_key_pair()
    forged, _ = issue_access_token(
        private, subject=account["id"], roles=["admin"], issuer=ISSUER,
        audience=AUDIENCE, ttl=300, kid=key_id(public),
    )  # fmt: skip
    assert_problem(client.get("/api/v1/auth/me", headers=auth(forged)), 401)
    assert_problem(client.get("/api/v1/products", headers=auth(forged)), 401)


def test_token_with_alg_none_is_401(client, actors, jwt_keys):
    account = actors.register("none@example.com")
    now = int(time.time())
    claims = {
        "sub": account["id"], "roles": ["admin"], "jti": "x", "iat": now,
        "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE, "type": "access",
    }  # fmt: skip
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": jwt_keys.kid})
    assert_problem(client.get("/api/v1/auth/me", headers=auth(unsigned)), 401)
    assert_problem(client.get("/api/v1/products", headers=auth(unsigned)), 401)


def test_expired_token_is_401(client, make_token):
    expired = make_token("00000000-0000-0000-0000-000000000001", "buyer", ttl=-10)
    assert_problem(client.get("/api/v1/auth/me", headers=auth(expired)), 401)


def test_logout_without_a_token_is_401(client):
    assert_problem(client.post("/api/v1/auth/logout"), 401)
