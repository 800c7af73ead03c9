"""The gateway's signing keys: load them, or in development make them on first start."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from apps.gateway.settings import GatewaySettings
from chomik.auth import generate_key_pair, public_jwk
from chomik.infra import default_base_dir
from chomik.settings import SettingsError

PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SigningKeys:
    """The current private key and every public key that still verifies tokens."""

    private_pem: bytes
    kid: str
    public_pems: dict[str, bytes]

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: current key first, then the previous one."""
        return {"keys": [public_jwk(pem) for pem in self.public_pems.values()]}


def private_key_path(settings: GatewaySettings) -> Path:
    """Where the signing key lives: the setting, else the data directory."""
    if settings.jwt_private_key_file:
        return Path(settings.jwt_private_key_file)
    base = (
        Path(settings.data_dir) if settings.data_dir else default_base_dir(PROJECT_DIR)
    )
    return base / "keys" / "jwt-private.pem"


def load_signing_keys(settings: GatewaySettings) -> SigningKeys:
    """Read the key pair; in development make it on first start.

    With ENVIRONMENT=production a missing key is a start-up error: a key made on
    the spot would differ per replica and sign tokens nobody else trusts.
    """
    path = private_key_path(settings)
    if not path.exists():
        if settings.environment == "production":
            raise SettingsError(
                f"JWT_PRIVATE_KEY_FILE {path} does not exist: with "
                "ENVIRONMENT=production the signing key must be provided"
            )
        _create_key_pair(path)
    private_pem = path.read_bytes()
    current = _public_pem(private_pem)
    kid = public_jwk(current)["kid"]
    public_pems = {kid: current}
    if settings.jwt_previous_public_key_file:
        previous = Path(settings.jwt_previous_public_key_file).read_bytes()
        public_pems.setdefault(public_jwk(previous)["kid"], previous)
    return SigningKeys(private_pem, kid, public_pems)


def _public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _create_key_pair(path: Path) -> None:
    # Several workers may start at once: write aside, then link into place, so
    # exactly one key wins and every worker reads that one.
    path.parent.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_key_pair()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".jwt-")
    try:
        os.write(fd, private_pem)
        os.close(fd)
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            path.with_name("jwt-public.pem").write_bytes(public_pem)
    finally:
        os.unlink(tmp)
