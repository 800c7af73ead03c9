"""Settings of the gateway: keys, token lifetimes, rate limits, upstream services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings, SettingsError, env

DEV_BANK_CALLBACK_SECRET = "dev-only-bank-callback-secret-change-me"
DEV_CARRIER_CALLBACK_SECRET = "dev-only-carrier-callback-secret-change-me"


@dataclass(frozen=True, kw_only=True)
class GatewaySettings(Settings):
    """The kit's settings plus the gateway's own fields."""

    APP: ClassVar[str] = "gateway"

    jwt_private_key_file: str = env(
        "JWT_PRIVATE_KEY_FILE",
        "",
        doc="PEM private key signing access tokens (development: made on first start)",
    )
    jwt_previous_public_key_file: str = env(
        "JWT_PREVIOUS_PUBLIC_KEY_FILE",
        "",
        doc="PEM public key of the previous signing key, still served in the JWKS",
    )
    data_dir: str = env(
        "CHOMIK_DATA_DIR", "", doc="where development state (keys) is kept"
    )
    access_token_ttl: int = env(
        "ACCESS_TOKEN_TTL", 300, doc="seconds an access token is valid"
    )
    refresh_token_ttl: int = env(
        "REFRESH_TOKEN_TTL", 30 * 24 * 3600, doc="seconds a refresh token is valid"
    )
    refresh_reuse_grace: int = env(
        "REFRESH_REUSE_GRACE",
        10,
        doc="seconds a spent refresh token still answers its same successor pair "
        "(a retry whose answer was lost); after that, reuse revokes the session",
    )
    refresh_token_retention: int = env(
        "REFRESH_TOKEN_RETENTION",
        24 * 3600,
        doc="seconds an expired refresh token or a revoked session is kept "
        "(at least ACCESS_TOKEN_TTL)",
    )
    password_hash_time_cost: int = env(
        "PASSWORD_HASH_TIME_COST", 3, doc="argon2 iterations"
    )
    password_hash_memory_kib: int = env(
        "PASSWORD_HASH_MEMORY_KIB", 65536, doc="argon2 memory in KiB"
    )
    login_rate_limit: str = env(
        "LOGIN_RATE_LIMIT",
        "5/minute",
        doc="failed logins allowed per account from one client address",
    )
    login_address_rate_limit: str = env(
        "LOGIN_ADDRESS_RATE_LIMIT",
        "20/minute",
        doc="failed logins allowed per client address, whatever the account",
    )
    login_account_rate_limit: str = env(
        "LOGIN_ACCOUNT_RATE_LIMIT",
        "100/hour",
        doc="failed logins per account from every address; past it only "
        "addresses without failures for the account may still try",
    )
    login_attempt_rate_limit: str = env(
        "LOGIN_ATTEMPT_RATE_LIMIT",
        "60/minute",
        doc="logins allowed per client address, correct ones too (each costs a "
        "password hash; a client keeps its session with /auth/refresh)",
    )
    trusted_proxy_hops: int = env(
        "TRUSTED_PROXY_HOPS",
        0,
        doc="proxies in front of the gateway whose X-Forwarded-For/-Proto are "
        "believed (0: the socket's peer is the client)",
    )
    register_rate_limit: str = env(
        "REGISTER_RATE_LIMIT", "20/hour", doc="registrations allowed per address"
    )
    ratelimit_storage_uri: str = env(
        "RATELIMIT_STORAGE_URI",
        "",
        doc="rate limit store (e.g. redis://host:6379); default the gateway database",
    )
    storage_url: str = env(
        "STORAGE_URL", "http://127.0.0.1:17001", doc="storage service base URL"
    )
    delivery_url: str = env(
        "DELIVERY_URL", "http://127.0.0.1:17002", doc="delivery service base URL"
    )
    orders_url: str = env(
        "ORDERS_URL", "http://127.0.0.1:17003", doc="orders service base URL"
    )
    payment_url: str = env(
        "PAYMENT_URL", "http://127.0.0.1:17004", doc="payment service base URL"
    )
    proxy_connect_timeout: float = env(
        "PROXY_CONNECT_TIMEOUT", 2.0, doc="seconds to connect to a service"
    )
    proxy_read_timeout: float = env(
        "PROXY_READ_TIMEOUT", 30.0, doc="seconds to wait for a service's bytes"
    )
    proxy_idle_reuse: float = env(
        "PROXY_IDLE_REUSE",
        2.0,
        doc="seconds a kept-alive connection to a service may sit idle and still be "
        "reused; keep it well under the services' keep-alive (gunicorn's, 5 s)",
    )
    openapi_cache_ttl: float = env(
        "OPENAPI_CACHE_TTL", 30.0, doc="seconds a service's OpenAPI document is cached"
    )
    bank_callback_secrets: str = env(
        "BANK_CALLBACK_SECRETS",
        DEV_BANK_CALLBACK_SECRET,
        secret=True,
        doc="HMAC keys of bank callbacks, comma-separated: the first signs, all verify",
    )
    carrier_callback_secrets: str = env(
        "CARRIER_CALLBACK_SECRETS",
        DEV_CARRIER_CALLBACK_SECRET,
        secret=True,
        doc="HMAC keys of carrier callbacks, comma-separated: the first signs, "
        "all verify",
    )
    callback_publish_timeout: float = env(
        "CALLBACK_PUBLISH_TIMEOUT",
        5.0,
        doc="seconds a callback edge waits for Kafka's ack before answering 503",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.environment == "production" and not self.metrics_port:
            # The gateway's port is the public route: its metrics (every route,
            # method and status counted) are for Prometheus only.
            raise SettingsError(
                "METRICS_PORT is not set: with ENVIRONMENT=production the gateway "
                "serves /metrics there only, never on its public port"
            )

    @property
    def upstreams(self) -> dict[str, str]:
        """Base URL of every service the gateway proxies to."""
        return {
            "storage": self.storage_url,
            "delivery": self.delivery_url,
            "orders": self.orders_url,
            "payment": self.payment_url,
        }
