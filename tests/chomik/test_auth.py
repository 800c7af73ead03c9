"""Every service verifies access tokens itself; roles and service tokens."""

import base64
import json
import threading
import time
import uuid

import jwt
import marshmallow as ma
import pytest
from flask.views import MethodView
from flask_smorest import Blueprint

from chomik import auth as auth_module
from chomik.auth import (
    Access,
    Principal,
    access_of,
    authority,
    current_user,
    generate_key_pair,
    issue_service_token,
    optional_token,
    optional_user,
    require_role,
    require_service,
    user_uuid,
)
from chomik.problems import ForbiddenError
from chomik.settings import Settings
from chomik.web import create_app
from tests.conftest import (
    AUDIENCE,
    ISSUER,
    TEST_SERVICE_SECRET,
    auth,
    issue_access_token,
)

blp = Blueprint("secured", __name__, url_prefix="/secured")


@blp.route("/me")
class Me(MethodView):
    @require_role()
    def get(self):
        user = current_user()
        return {"id": user.id, "roles": sorted(user.roles)}


@blp.route("/sellers")
class SellersOnly(MethodView):
    @require_role("seller", "admin")
    def get(self):
        return {"ok": True}


@blp.route("/internal")
class Internal(MethodView):
    @require_service
    def get(self):
        return {"ok": True}


@pytest.fixture
def client(settings_for):
    return create_app("secured", settings_for(Settings), [blp]).test_client()


def status(client, path, token):
    headers = auth(token) if token is not None else {}
    response = client.get(f"/api/v1/secured/{path}", headers=headers)
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
    return response.status_code


def test_valid_token_is_accepted(client, make_token):
    response = client.get("/api/v1/secured/me", headers=auth(make_token("u1", "buyer")))
    assert response.status_code == 200
    assert response.get_json() == {"id": "u1", "roles": ["buyer"]}


def test_missing_token_is_401(client):
    assert status(client, "me", None) == 401


def test_expired_token_is_401(client, make_token):
    assert status(client, "me", make_token("u1", "buyer", ttl=-10)) == 401


def test_token_signed_by_another_key_is_401(client, jwt_keys):
    other_private, _ = generate_key_pair()
    token, _ = issue_access_token(
        other_private, subject="u1", roles=["admin"], issuer=ISSUER, audience=AUDIENCE,
        ttl=300, kid=jwt_keys.kid,
    )  # fmt: skip
    assert status(client, "me", token) == 401


def test_alg_none_token_is_401(client):
    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": "u1", "roles": ["admin"], "jti": "x", "iat": now, "exp": now + 300,
              "iss": ISSUER, "aud": AUDIENCE, "type": "access"}  # fmt: skip
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert status(client, "me", token) == 401


def test_hs256_token_made_with_the_public_key_is_401(client, jwt_keys):
    # The classic algorithm-confusion attack: HMAC keyed with the public key.
    now = int(time.time())
    claims = {"sub": "u1", "roles": ["admin"], "jti": "x", "iat": now, "exp": now + 300,
              "iss": ISSUER, "aud": AUDIENCE, "type": "access"}  # fmt: skip
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    import hashlib
    import hmac

    signature = hmac.new(
        jwt_keys.public_pem, f"{header}.{payload}".encode(), hashlib.sha256
    )
    token = f"{header}.{payload}.{b64url(signature.digest())}"
    assert status(client, "me", token) == 401


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "", "Bearer"])
def test_malformed_token_is_401(client, token):
    response = client.get(
        "/api/v1/secured/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_wrong_audience_or_issuer_is_401(client, jwt_keys):
    for issuer, audience in ((ISSUER, "someone-else"), ("evil", AUDIENCE)):
        token, _ = issue_access_token(
            jwt_keys.private_pem, subject="u1", roles=["buyer"], issuer=issuer,
            audience=audience, ttl=300, kid=jwt_keys.kid,
        )  # fmt: skip
        assert status(client, "me", token) == 401


def test_refresh_style_token_is_not_an_access_token(client, make_token):
    token = make_token("u1", "buyer", type="refresh")
    for _ in range(2):  # the second time its claims are remembered
        assert status(client, "me", token) == 401


def test_wrong_role_is_403_and_right_role_is_200(client, make_token):
    assert status(client, "sellers", make_token("u1", "buyer")) == 403
    assert status(client, "sellers", make_token("u1", "seller")) == 200
    assert status(client, "sellers", make_token("u1", "admin")) == 200


def test_internal_endpoint_takes_only_service_tokens(client, make_token):
    assert status(client, "internal", None) == 401
    assert status(client, "internal", make_token("u1", "admin")) == 401
    assert (
        status(
            client,
            "internal",
            issue_service_token("wrong-secret-0123456789abcdef0123456789", "orders"),
        )
        == 401
    )
    assert (
        status(client, "internal", issue_service_token(TEST_SERVICE_SECRET, "orders"))
        == 200
    )


def test_service_token_is_not_a_user_token(client):
    assert (
        status(client, "me", issue_service_token(TEST_SERVICE_SECRET, "orders")) == 401
    )


def test_tokens_verify_against_a_jwks_url(settings_for, make_token, jwt_keys):
    from chomik.auth import public_jwk

    jwks_app_keys = {"keys": [public_jwk(jwt_keys.public_pem)]}
    fetched = []

    class FakeJwks(jwt.PyJWKClient):  # the gateway is an outside process here
        def fetch_data(self):
            fetched.append(1)
            return jwks_app_keys

    app = create_app(
        "secured",
        settings_for(Settings, jwt_public_key_file="", jwks_url="http://jwks"),
        [blp],
    )
    authority(app).keys._jwks = FakeJwks("http://jwks", cache_keys=True)
    client = app.test_client()
    for _ in range(3):
        assert status(client, "me", make_token("u1", "buyer")) == 200
    assert len(fetched) == 1  # cached by kid


@pytest.mark.parametrize("answer", ["down", "not-json", "not-a-key-set"])
def test_a_jwks_that_cannot_be_fetched_is_503_not_401(settings_for, make_token, answer):
    from werkzeug.serving import make_server

    from chomik.infra import free_port

    def jwks_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"<html>" if answer == "not-json" else b'{"keys": "nope"}']

    port = free_port()
    server = None if answer == "down" else make_server("127.0.0.1", port, jwks_app)
    if server is not None:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = create_app(
            "secured",
            settings_for(
                Settings,
                jwt_public_key_file="",
                jwks_url=f"http://127.0.0.1:{port}/jwks",
            ),
            [blp],
        )
        response = app.test_client().get(
            "/api/v1/secured/me", headers=auth(make_token("u1", "buyer"))
        )
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "unavailable"
    assert response.headers["Retry-After"]


class NoteSchema(ma.Schema):
    text = ma.fields.String(required=True)


@blp.route("/notes")
class Notes(MethodView):
    @blp.arguments(NoteSchema)
    @require_role("seller")
    def post(self, note):
        return note

    @blp.arguments(NoteSchema, location="query")
    @optional_token
    def get(self, note):
        return {"user": None if optional_user() is None else optional_user().id}


@blp.route("/internal/notes")
class InternalNotes(MethodView):
    @require_service
    @blp.arguments(NoteSchema)
    def post(self, note):
        return note


def test_missing_token_is_401_before_the_body_is_validated(client):
    response = client.post("/api/v1/secured/notes", json={"text": 5})
    assert response.status_code == 401
    assert client.post("/api/v1/secured/internal/notes", json={}).status_code == 401


def test_wrong_role_is_403_before_the_body_is_validated(client, make_token):
    response = client.post(
        "/api/v1/secured/notes", json={}, headers=auth(make_token("u1", "buyer"))
    )
    assert response.status_code == 403


def test_a_valid_token_then_gets_its_body_validated(client, make_token, service_token):
    seller = auth(make_token("u1", "seller"))
    assert (
        client.post("/api/v1/secured/notes", json={}, headers=seller).status_code == 422
    )
    ok = client.post("/api/v1/secured/notes", json={"text": "hi"}, headers=seller)
    assert ok.status_code == 200
    internal = client.post(
        "/api/v1/secured/internal/notes", json={}, headers=auth(service_token)
    )
    assert internal.status_code == 422


def test_optional_token_lets_anonymous_through_but_refuses_a_bad_token(
    client, make_token
):
    assert client.get("/api/v1/secured/notes?text=x").get_json() == {"user": None}
    assert client.get("/api/v1/secured/notes").status_code == 422
    bad = client.get("/api/v1/secured/notes", headers=auth("garbage"))
    assert bad.status_code == 401
    good = client.get(
        "/api/v1/secured/notes?text=x", headers=auth(make_token("u7", "buyer"))
    )
    assert good.get_json() == {"user": "u7"}


def test_access_is_recorded_on_the_view_through_smorest_decorators():
    assert access_of(Notes.post) == Access("user", ("seller",))
    assert access_of(Notes.get) == Access("optional")
    assert access_of(InternalNotes.post) == Access("service")
    assert access_of(Me.get) == Access("user")


def test_user_uuid_is_the_subject_or_403():
    subject = uuid.uuid4()
    assert user_uuid(Principal(str(subject), frozenset({"buyer"}))) == subject
    with pytest.raises(ForbiddenError):
        user_uuid(Principal("service:orders", frozenset({"service"})))


@pytest.mark.parametrize("missing", ["exp", "iat", "jti"])
def test_a_signed_token_lacking_a_required_claim_is_401(client, jwt_keys, missing):
    # flask-jwt-extended would take a token without `exp` as never expiring.
    now = int(time.time())
    claims = {"sub": "u1", "roles": ["buyer"], "jti": "x", "iat": now, "exp": now + 60,
              "iss": ISSUER, "aud": AUDIENCE, "type": "access"}  # fmt: skip
    del claims[missing]
    token = jwt.encode(
        claims, jwt_keys.private_pem, algorithm="RS256", headers={"kid": jwt_keys.kid}
    )
    for _ in range(2):  # the second time its claims are remembered
        assert status(client, "me", token) == 401


def test_a_token_without_a_kid_is_401_when_keys_are_chosen_by_kid(
    settings_for, make_token, jwt_keys
):
    from chomik.auth import public_jwk

    app = create_app(
        "secured",
        settings_for(Settings, jwt_public_key_file="", jwks_url="http://jwks"),
        [blp],
    )

    class FakeJwks(jwt.PyJWKClient):
        def fetch_data(self):
            return {"keys": [public_jwk(jwt_keys.public_pem)]}

    authority(app).keys._jwks = FakeJwks("http://jwks", cache_keys=True)
    now = int(time.time())
    claims = {"sub": "u1", "roles": ["buyer"], "jti": "x", "iat": now, "exp": now + 60,
              "iss": ISSUER, "aud": AUDIENCE, "type": "access"}  # fmt: skip
    kidless = jwt.encode(claims, jwt_keys.private_pem, algorithm="RS256")
    assert status(app.test_client(), "me", kidless) == 401
    assert status(app.test_client(), "me", make_token("u1", "buyer")) == 200


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(client, make_token, scheme):
    response = client.get(
        "/api/v1/secured/me",
        headers={"Authorization": f"{scheme} {make_token('u1', 'buyer')}"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "claims",
    [{"roles": 5}, {"roles": ["buyer", 5]}, {"roles": "buyer"}, {"sid": ["s"]},
     {"sid": 7}],
)  # fmt: skip
def test_signed_claims_of_the_wrong_shape_are_401_not_500(client, jwt_keys, claims):
    now = int(time.time())
    token = jwt.encode(
        {"sub": "u1", "roles": ["buyer"], "jti": "x", "iat": now, "exp": now + 60,
         "iss": ISSUER, "aud": AUDIENCE, "type": "access", **claims},
        jwt_keys.private_pem, algorithm="RS256", headers={"kid": jwt_keys.kid},
    )  # fmt: skip
    assert status(client, "me", token) == 401


def test_a_token_is_verified_once_then_remembered_until_it_expires(
    client, make_token, monkeypatch
):
    token = make_token("u1", "buyer", ttl=60)
    verified = authority(client.application).verified
    decoded = []
    original = jwt.decode

    def counting(*args, **kwargs):
        decoded.append(kwargs.get("options"))
        return original(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    for _ in range(3):
        assert status(client, "me", token) == 200
    # The first request decodes it (its claims unverified, then verified).
    assert len(decoded) == 2
    assert verified.get(token) is not None
    # Once past its expiry the remembered token is dropped: the next request
    # has it checked again by PyJWT (whose own clock still says it is valid).
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert verified.get(token) is None
    assert status(client, "me", token) == 200
    assert len(decoded) == 4


def test_a_remembered_access_token_skips_all_but_the_revocation_check(
    settings_for, make_token, monkeypatch
):
    revoked: set[str] = set()
    app = create_app("secured", settings_for(Settings), [blp])
    authority(app).is_revoked = lambda claims: claims["jti"] in revoked
    client = app.test_client()
    checked = []
    original = auth_module.verify_jwt_in_request

    def counting(*args, **kwargs):
        checked.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(auth_module, "verify_jwt_in_request", counting)
    token = make_token("u1", "buyer")
    for _ in range(3):
        assert status(client, "me", token) == 200
    assert len(checked) == 1
    revoked.add(jwt.decode(token, options={"verify_signature": False})["jti"])
    response = client.get("/api/v1/secured/me", headers=auth(token))
    assert response.status_code == 401
    assert response.get_json()["detail"] == "The access token has been revoked"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_only_the_exact_token_verified_is_remembered(client, make_token):
    token = make_token("u1", "buyer")
    assert status(client, "me", token) == 200
    header, payload, signature = token.split(".")
    forged_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_claims["roles"] = ["admin"]
    forged = ".".join([header, b64url(json.dumps(forged_claims).encode()), signature])
    assert status(client, "me", forged) == 401
    assert status(client, "sellers", forged) == 401
    assert status(client, "sellers", token) == 403


def test_remembered_tokens_are_bounded():
    from chomik.auth import VerifiedTokens

    verified = VerifiedTokens(size=2)
    exp = int(time.time()) + 60
    for name in ("a", "b", "c"):
        verified.put(name, {"exp": exp, "sub": name})
    assert verified.get("a") is None
    assert verified.get("b") == {"exp": exp, "sub": "b"}
    verified.put("d", {"exp": exp})  # "c" is now the least recently used
    assert verified.get("c") is None
    assert verified.get("b") is not None
    verified.put("no-expiry", {"sub": "x"})
    assert verified.get("no-expiry") is None


def test_a_remembered_token_is_verified_again_after_a_while(monkeypatch):
    """A key withdrawn from the JWKS must not keep its tokens valid until expiry."""
    from chomik.auth import VerifiedTokens

    verified = VerifiedTokens(recheck=300)
    now = time.time()
    verified.put("t", {"exp": int(now) + 3600, "sub": "u"})
    monkeypatch.setattr(time, "time", lambda: now + 299)
    assert verified.get("t") == {"exp": int(now) + 3600, "sub": "u"}
    monkeypatch.setattr(time, "time", lambda: now + 301)
    assert verified.get("t") is None
