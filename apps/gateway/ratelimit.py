"""Rate limits of the gateway, counted in a store every worker shares.

flask-limiter's `limits` has no PostgreSQL backend and `memory://` counts per
worker, so `DatabaseStorage` keeps fixed-window counters in the gateway's own
database (one upsert per hit). A Redis URL in RATELIMIT_STORAGE_URI replaces it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded
from limits.storage import Storage
from sqlalchemy.engine import Engine

from apps.gateway.errors import TooManyRequestsError
from apps.gateway.services import normalize_email
from apps.gateway.settings import GatewaySettings
from chomik.problems import render_problem

DATABASE_SCHEME = "gateway-db"

_INCR = sa.text(
    """
    INSERT INTO rate_limits (key, count, expires_at)
    VALUES (:key, :amount, now() + make_interval(secs => :expiry))
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN rate_limits.expires_at <= now() THEN excluded.count
                     ELSE rate_limits.count + excluded.count END,
        expires_at = CASE WHEN rate_limits.expires_at <= now() THEN excluded.expires_at
                          ELSE rate_limits.expires_at END
    RETURNING count
    """
)


class DatabaseStorage(Storage):
    """A `limits` storage over the gateway's PostgreSQL (fixed-window strategy).

    Each call runs on its own connection and commits at once, apart from the
    request's transaction: a refused login rolls the request back, yet its
    failed attempt must still count.
    """

    STORAGE_SCHEME = [DATABASE_SCHEME]
    SWEEP_EVERY = 500

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        engine: Engine,
        **options: Any,
    ) -> None:
        super().__init__(uri, wrap_exceptions, **options)
        self.engine = engine
        self._hits = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sa.exc.DBAPIError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self.engine.begin() as conn:
            count = conn.execute(
                _INCR, {"key": key, "amount": amount, "expiry": expiry}
            ).scalar_one()
            self._hits += 1
            if self._hits % self.SWEEP_EVERY == 0:
                conn.execute(
                    sa.text("DELETE FROM rate_limits WHERE expires_at < now()")
                )
        return int(count)

    def get(self, key: str) -> int:
        with self.engine.connect() as conn:
            count = conn.execute(
                sa.text(
                    "SELECT count FROM rate_limits "
                    "WHERE key = :key AND expires_at > now()"
                ),
                {"key": key},
            ).scalar()
        return int(count or 0)

    def get_expiry(self, key: str) -> float:
        with self.engine.connect() as conn:
            expires = conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM expires_at) FROM rate_limits "
                    "WHERE key = :key AND expires_at > now()"
                ),
                {"key": key},
            ).scalar()
        return float(expires) if expires is not None else time.time()

    def check(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as conn:
            return conn.execute(sa.text("DELETE FROM rate_limits")).rowcount

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM rate_limits WHERE key = :key"), {"key": key}
            )


def client_address() -> str:
    """The caller's address: the gateway is the edge, so the socket's peer."""
    return f"address:{request.remote_addr or 'unknown'}"


def login_account() -> str:
    """The account a login attempt is for, as the limiter's key."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    account = normalize_email(email) if isinstance(email, str) else "-"
    # Hashed: a key of bounded length, whatever the client sent.
    return "account:" + hashlib.sha256(account.encode()).hexdigest()


def install_rate_limits(
    app: Flask, settings: GatewaySettings, engine: Engine
) -> Limiter:
    """Give this app its own limiter and limit its login and registration views."""
    uri = settings.ratelimit_storage_uri or f"{DATABASE_SCHEME}://"
    options: dict[str, Any] = (
        {} if settings.ratelimit_storage_uri else {"engine": engine}
    )
    limiter = Limiter(
        client_address,
        storage_uri=uri,
        storage_options=options,
        strategy="fixed-window",
        key_prefix="gateway",
        headers_enabled=False,
    )
    limiter.init_app(app)
    # Every attempt counts before it runs: counting only failures after the
    # fact would let attempts already in flight all through at once.
    limits: dict[str, list[Callable[[Callable[..., Any]], Callable[..., Any]]]] = {
        "auth.Login": [
            limiter.limit(settings.login_rate_limit, key_func=login_account),
            limiter.limit(settings.login_address_rate_limit),
        ],
        "auth.Register": [limiter.limit(settings.register_rate_limit)],
    }  # fmt: skip
    for endpoint, decorators in limits.items():
        view = app.view_functions[endpoint]
        for decorate in decorators:
            view = decorate(view)
        app.view_functions[endpoint] = view

    def too_many_requests(_error: RateLimitExceeded) -> Response:
        current = limiter.current_limit
        if current is None:
            retry_after = 60
        else:
            # reset_at is rounded up to the next whole second: never beyond the window.
            window = current.limit.get_expiry()
            retry_after = min(window, max(1, math.ceil(current.reset_at - time.time())))
        return render_problem(
            TooManyRequestsError(
                f"Too many attempts: try again in {retry_after} s",
                retry_after=retry_after,
            )
        )

    app.register_error_handler(RateLimitExceeded, too_many_requests)
    return limiter
