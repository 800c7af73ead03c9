"""Signing keys: made in development, required in production, rotated by kid."""

from __future__ import annotations

import pytest

from apps.gateway.keys import load_signing_keys
from apps.gateway.settings import GatewaySettings
from chomik.auth import generate_key_pair, key_id, public_jwk
from chomik.settings import SettingsError
from tests.conftest import AUDIENCE, ISSUER, auth, issue_access_token


def test_development_makes_a_key_pair_on_first_start_and_keeps_it(tmp_path):
    settings = GatewaySettings(data_dir=str(tmp_path))
    first = load_signing_keys(settings)
    assert (tmp_path / "keys" / "jwt-private.pem").exists()
    assert (tmp_path / "keys" / "jwt-public.pem").exists()
    assert load_signing_keys(settings).kid == first.kid
    (jwk,) = first.jwks()["keys"]
    assert jwk["kid"] == first.kid


def test_production_refuses_to_start_without_a_key(tmp_path):
    settings = GatewaySettings(
        environment="production",
        database_url="postgresql+psycopg2://db.internal/chomik_gateway",
        service_token_secret="a-real-secret-of-the-deployment-0123456789",
        bank_callback_secrets="a-real-bank-secret-0123456789",
        carrier_callback_secrets="a-real-carrier-secret-0123456789",
        jwt_private_key_file=str(tmp_path / "missing.pem"),
        metrics_port=9100,
    )
    with pytest.raises(SettingsError, match="JWT_PRIVATE_KEY_FILE"):
        load_signing_keys(settings)
    assert not (tmp_path / "missing.pem").exists()


def test_tokens_of_the_previous_key_still_verify_after_rotation(
    make_gateway, tmp_path, jwt_keys
):
    new_private, new_public = generate_key_pair()
    (tmp_path / "new.pem").write_bytes(new_private)
    app = make_gateway(
        jwt_private_key_file=str(tmp_path / "new.pem"),
        jwt_previous_public_key_file=str(jwt_keys.public_file),
    )
    client = app.test_client()
    kids = [k["kid"] for k in client.get("/api/v1/auth/jwks").get_json()["keys"]]
    assert kids == [public_jwk(new_public)["kid"], jwt_keys.kid]

    account = client.post(
        "/api/v1/auth/register",
        json={"email": "rot@example.com", "password": "long enough", "name": "R",
              "role": "buyer"},
    ).get_json()  # fmt: skip
    old_token, _ = issue_access_token(
        jwt_keys.private_pem, subject=account["id"], roles=["buyer"], issuer=ISSUER,
        audience=AUDIENCE, ttl=60, kid=jwt_keys.kid,
    )  # fmt: skip
    assert client.get("/api/v1/auth/me", headers=auth(old_token)).status_code == 200
    new_token = client.post(
        "/api/v1/auth/login",
        json={"email": "rot@example.com", "password": "long enough"},
    ).get_json()["access_token"]
    assert client.get("/api/v1/auth/me", headers=auth(new_token)).status_code == 200
    unknown_private, unknown_public = generate_key_pair()
    stranger, _ = issue_access_token(
        unknown_private, subject=account["id"], roles=["buyer"], issuer=ISSUER,
        audience=AUDIENCE, ttl=60, kid=key_id(unknown_public),
    )  # fmt: skip
    assert client.get("/api/v1/auth/me", headers=auth(stranger)).status_code == 401
