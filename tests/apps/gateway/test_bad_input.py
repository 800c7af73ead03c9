"""Bad input to the auth endpoints: a problem document each time, nothing stored."""

from __future__ import annotations

import io
import time

import jwt
import pytest
import sqlalchemy as sa
from gunicorn.http.errors import InvalidChunkSize

from apps.gateway import services
from apps.gateway.errors import InvalidCredentialsError
from apps.gateway.models import Role, User
from apps.gateway.passwords import Passwords
from chomik.auth import generate_key_pair, key_id
from chomik.web import MAX_BODY_BYTES
from tests.apps.gateway.conftest import PASSWORD
from tests.chomik.test_hostile_json import BrokenChunks
from tests.conftest import AUDIENCE, ISSUER, auth, issue_access_token

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


class RecordingPasswords(Passwords):
    """Real argon2 hashing that also notes each hash it verifies against."""

    def __init__(self, **costs):
        super().__init__(**costs)
        self.verified = []

    def verify(self, password_hash, password):
        self.verified.append(password_hash)
        return super().verify(password_hash, password)


def test_unknown_email_does_the_same_work_as_a_wrong_password(app, dbs):
    # The timing itself is measured by benchmarks/bench_bad_input.py: a ratio of
    # times is noise on a busy machine, while the work done is exact.
    passwords = RecordingPasswords(time_cost=1, memory_kib=1024)
    issuer = app.extensions["chomik.gateway"].issuer
    session = dbs.session("gateway")
    services.register_account(
        session, email="t@example.com", password=PASSWORD, name="T",
        role=Role.BUYER, passwords=passwords,
    )  # fmt: skip

    def verified_for(email):
        passwords.verified.clear()
        with pytest.raises(InvalidCredentialsError):
            services.log_in(
                session, email=email, password="wrong-password",
                passwords=passwords, issuer=issuer,
            )  # fmt: skip
        return list(passwords.verified)

    [stored] = verified_for("t@example.com")
    [dummy] = verified_for("nobody@example.com")
    assert dummy != stored
    # One verification each, against hashes of the same cost.
    assert not passwords.needs_rehash(dummy)
    assert not passwords.needs_rehash(stored)
    assert dummy.split("$")[:4] == stored.split("$")[:4]  # algorithm and costs


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


@pytest.mark.parametrize(
    "body",
    ["[" * 1000 + "]" * 1000, '{"price": ' + "9" * 5000 + "}"],
    ids=["deep", "long-number"],
)
def test_hostile_json_through_the_proxy_is_a_400_problem(
    make_gateway, storage_service, body
):
    client = make_gateway(storage_url=storage_service).test_client()
    response = client.post(
        "/api/v1/products", data=body, content_type="application/json"
    )
    assert_problem(response, 400, "bad-request")


@pytest.mark.parametrize(
    "body",
    ["[" * 1000 + "]" * 1000, '{"email": ' + "9" * 5000 + "}"],
    ids=["deep", "long-number"],
)
def test_hostile_json_to_login_is_a_400_problem_before_the_limiter(client, body):
    response = client.post(
        "/api/v1/auth/login", data=body, content_type="application/json"
    )
    assert_problem(response, 400, "bad-request")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("login", '{"email": "\\ud800@x.example", "password": "aaaaaaaaa"}', "email"),
        ("login", '{"email": "a@x.example", "password": "\\udc00aaaaaaa"}', "password"),
        ("logout", '{"refresh_token": "\\ud800"}', "refresh_token"),
    ],
    ids=["login-email", "login-password", "logout"],
)
def test_a_lone_surrogate_to_the_auth_endpoints_is_a_422_problem(
    client, actors, path, body, field
):
    response = client.post(
        f"/api/v1/auth/{path}",
        data=body,
        content_type="application/json",
        headers=auth(actors.token("s@x.example")) if path == "logout" else {},
    )
    assert field in assert_problem(response, 422, "validation-error")["errors"]


def test_a_refresh_token_that_is_not_ascii_is_401_not_a_500(client):
    response = client.post(
        "/api/v1/auth/refresh",
        data='{"refresh_token": "\\ud800"}',
        content_type="application/json",
    )
    assert_problem(response, 401)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": "Eve\u202e"}, "name"),
        ({"name": "Ev\u200be"}, "name"),
        ({"email": "seller\u0430@example.com"}, "email"),
        ({"email": "\u0430dmin@example.com"}, "email"),
    ],
    ids=["blank-name", "bidi-name", "zero-width-name", "cyrillic-a", "cyrillic-first"],
)
def test_registration_refuses_lookalike_names_and_emails(client, dbs, change, field):
    problem = assert_problem(
        client.post("/api/v1/auth/register", json={**VALID, **change}),
        422,
        "validation-error",
    )
    assert field in problem["errors"]
    assert users(dbs) == 0


def test_an_email_in_one_other_script_is_accepted(client, dbs):
    response = client.post(
        "/api/v1/auth/register",
        json={
            **VALID,
            "email": "\u043f\u0440\u043e\u0434\u0430\u0432\u0435\u0446@example.com",
        },
    )
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize(
    "email",
    [
        "victim@exa\u200bmple.com",  # zero-width space
        "victim@example.com\u200b",
        "victim@exa\u202emple.com",  # right-to-left override
        "victim@exa\u00admple.com",  # soft hyphen
        "victim@exa\u2060mple.com",  # word joiner
        "victim@\ufeffexample.com",  # byte-order mark
    ],
)
def test_an_email_with_invisible_or_bidi_characters_is_refused(
    client, actors, dbs, email
):
    # Each would be a second account that reads as victim@example.com.
    actors.register("victim@example.com")
    response = client.post("/api/v1/auth/register", json={**VALID, "email": email})
    assert_problem(response, 422, "validation-error")
    assert "email" in response.get_json()["errors"]
    assert users(dbs) == 1


def test_a_full_width_spelling_of_a_taken_email_is_the_same_account(
    client, actors, dbs
):
    actors.register("seller@example.com")
    response = client.post(
        "/api/v1/auth/register",
        json={**VALID, "email": "\uff33\uff45\uff4c\uff4c\uff45\uff52@example.com"},
    )
    assert_problem(response, 409, "email-taken")
    assert users(dbs) == 1
    login = client.post(
        "/api/v1/auth/login",
        json={"email": "\uff53eller@EXAMPLE.com", "password": PASSWORD},
    )
    assert login.status_code == 200


def test_a_chunked_body_over_the_limit_through_the_proxy_is_413(client):
    body = b'{"title": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    response = client.post(
        "/api/v1/products/echo",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_problem(response, 413, "payload-too-large")


@pytest.mark.parametrize("body", ["-4419325787195301.0", "[1]", '"token"', "null", "{"])
def test_a_refresh_body_that_is_no_object_is_a_problem_not_a_500(client, body):
    # Found by schema fuzzing: a JSON number as the body answered 500.
    response = client.post(
        "/api/v1/auth/refresh", data=body, content_type="application/json"
    )
    assert response.status_code in (400, 401), response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"


def test_a_body_cut_short_through_the_proxy_is_a_400_at_once(client):
    # gunicorn ends a body where its client half-closes, without an error; the
    # proxy stops sending it on, so the service sees it cut short as well.
    body = b'{"title": "Air"}'
    response = client.post(
        "/api/v1/products/echo",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={
            "wsgi.input_terminated": True,
            "CONTENT_LENGTH": str(len(body) + 10),
        },
    )
    assert_problem(response, 400, "bad-request")
    assert "ended after 16 of its 26 bytes" in response.get_json()["detail"]


def test_broken_chunked_framing_through_the_proxy_is_a_400(client):
    response = client.post(
        "/api/v1/products/echo",
        input_stream=BrokenChunks(InvalidChunkSize(b"zz")),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_problem(response, 400, "bad-request")


@pytest.mark.parametrize(
    "value",
    ["Bearer {token}, Bearer not-a-token", "Bearer not-a-token, Bearer {token}",
     "Basic dXNlcjpwYXNz", "Bearer {token},garbage", "Basic Zm9vOmJhcg==,Bearer {token}",
     "Bearer {token}, {token}"],
    ids=["bad-after-good", "bad-before-good", "basic", "garbage-after",
         "basic-before", "two-tokens"],
)  # fmt: skip
def test_credentials_that_are_not_one_bearer_token_are_a_401(client, make_token, value):
    # Read as no token at all, a bad token beside a good one passed as anonymous.
    token = make_token("00000000-0000-0000-0000-0000000000aa", "buyer")
    response = client.get(
        "/api/v1/products", headers={"Authorization": value.format(token=token)}
    )
    assert_problem(response, 401, "unauthorized")
    alone = client.get("/api/v1/products", headers=auth(token))
    assert alone.status_code == 200


@pytest.mark.parametrize("token", [[1], {"a": 1}, {}, 5])
def test_a_refresh_token_that_is_no_string_is_a_401_not_a_500(client, token):
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert_problem(response, 401, "unauthorized")
    assert response.get_json()["detail"] == "A refresh token is required"
