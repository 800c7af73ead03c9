"""Rate limits of the gateway, counted in a store every worker shares.

Only two views are limited (logins and registrations), so they are wrapped one
by one with `limits`' fixed-window counters; the proxied requests, nearly all of
the gateway's traffic, pass no limiter hook at all. `limits` has no PostgreSQL
backend and `memory://` counts per worker, so `DatabaseStorage` keeps the
counters in the gateway's own database (one upsert per hit). A Redis URL in
RATELIMIT_STORAGE_URI replaces it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask, request
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy.engine import Engine

from apps.gateway.errors import InvalidCredentialsError, TooManyRequestsError
from apps.gateway.metrics import LOGINS
from apps.gateway.services import normalize_email
from apps.gateway.settings import GatewaySettings

DATABASE_SCHEME = "gateway-db"
log = logging.getLogger(__name__)

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

    def decr(self, key: str, amount: int = 1) -> int:
        """Give back `amount` of a live window's count (never below zero)."""
        with self.engine.begin() as conn:
            count = conn.execute(
                sa.text(
                    "UPDATE rate_limits SET count = greatest(count - :amount, 0) "
                    "WHERE key = :key AND expires_at > now() RETURNING count"
                ),
                {"key": key, "amount": amount},
            ).scalar()
        return int(count or 0)

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM rate_limits WHERE key = :key"), {"key": key}
            )


def client_address() -> str:
    """The caller's address: the socket's peer, or as TRUSTED_PROXY_HOPS tell."""
    return f"address:{request.remote_addr or 'unknown'}"


def login_account() -> str:
    """The account a login attempt is for, as the limiter's key."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    account = normalize_email(email) if isinstance(email, str) else "-"
    # Hashed: a key of bounded length, whatever the client sent.
    return "account:" + hashlib.sha256(account.encode()).hexdigest()


@dataclass(frozen=True)
class LoginLimits:
    """The three bounds on failed logins, and one on every login of an address."""

    pair: RateLimitItem  # one account from one address: tight
    address: RateLimitItem  # one address, whatever the account
    account: RateLimitItem  # one account from everywhere: looser
    # Every login from one address, correct ones too: each costs a password hash.
    attempts: RateLimitItem


class LoginThrottle:
    """Count failed logins per (account, address), address and account, and every
    login per address.

    An attempt reserves one count of each before it runs, so attempts in flight
    together cannot all pass; a success (or a request refused for another reason)
    gives its reservation back, so only failures stay counted. Over the account's
    bound only addresses already failing for it are refused: the owner, from an
    address that has not been guessing, still gets in.
    """

    def __init__(self, storage: Storage, limits: LoginLimits) -> None:
        self.storage = storage
        self.strategy = FixedWindowRateLimiter(storage)
        self.limits = limits

    def admit(self, account: str, address: str) -> list[tuple[RateLimitItem, str]]:
        """Reserve one attempt; raise 429 when a bound is reached."""
        key = f"attempts/{address}"
        if not self.strategy.hit(self.limits.attempts, key):
            raise too_many(self.strategy, self.limits.attempts, key, LOGINS_HERE)
        counters = [
            (self.limits.address, address),
            (self.limits.pair, f"{account}/{address}"),
        ]
        reserved: list[tuple[RateLimitItem, str]] = []
        for item, key in counters:
            reserved.append((item, key))
            if not self.strategy.hit(item, key):
                self.give_back(reserved)
                raise too_many(self.strategy, item, key, LOGIN_ATTEMPTS)
        # This address's failures for this account over the account's own window
        # (the pair's is short: judged by it, a failing address got one more
        # guess each time its minute ran out).
        history = f"{account}/{address}"
        failing_here = (
            self.strategy.get_window_stats(self.limits.account, history).remaining
            < self.limits.account.amount
        )
        reserved.append((self.limits.account, history))
        self.strategy.hit(self.limits.account, history)
        reserved.append((self.limits.account, account))
        if not self.strategy.hit(self.limits.account, account) and failing_here:
            self.give_back(reserved)
            raise too_many(self.strategy, self.limits.account, account, LOGIN_ATTEMPTS)
        return reserved

    def give_back(self, reserved: list[tuple[RateLimitItem, str]]) -> None:
        """Return the counts of an attempt that did not fail."""
        for item, key in reserved:
            name = item.key_for(key)
            decr = getattr(self.storage, "decr", None)
            if decr is not None:
                decr(name, 1)
            else:
                self.storage.incr(name, item.get_expiry(), amount=-1)


# A login counts while it runs, so parallel correct ones can meet the bound too.
LOGIN_ATTEMPTS = "Too many login attempts, failed or in flight"
LOGINS_HERE = "Too many logins from this address"


def too_many(
    strategy: FixedWindowRateLimiter, item: RateLimitItem, key: str, what: str
) -> TooManyRequestsError:
    """The 429 of a full window, with the seconds until it ends (never beyond it)."""
    reset_at = strategy.get_window_stats(item, key).reset_time
    retry_after = min(item.get_expiry(), max(1, math.ceil(reset_at - time.time())))
    return TooManyRequestsError(
        f"{what}: try again in {retry_after} s", retry_after=retry_after
    )


def throttled(view: Callable[..., Any], throttle: LoginThrottle) -> Callable[..., Any]:
    """The login view, with its failures counted by `throttle`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            reserved = throttle.admit(login_account(), client_address())
        except TooManyRequestsError:
            LOGINS.labels("throttled").inc()
            raise
        try:
            response = view(*args, **kwargs)
        except InvalidCredentialsError:
            raise  # a failure: its counts stay
        except BaseException:
            throttle.give_back(reserved)
            raise
        throttle.give_back(reserved)
        return response

    return wrapper


def limited(
    view: Callable[..., Any], storage: Storage, item: RateLimitItem, what: str
) -> Callable[..., Any]:
    """`view`, refused (429) past `item` calls per window from one address."""
    strategy = FixedWindowRateLimiter(storage)
    name = view.__name__

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        address = client_address()
        key = f"{name}/{address}"
        if not strategy.hit(item, key):
            log.info("%s refused: over %s from %s", name, item, address)
            raise too_many(strategy, item, key, what)
        return view(*args, **kwargs)

    return wrapper


def install_rate_limits(app: Flask, settings: GatewaySettings, engine: Engine) -> None:
    """Throttle logins and registrations, in one store for every worker."""
    storage = (
        storage_from_string(settings.ratelimit_storage_uri)
        if settings.ratelimit_storage_uri
        else DatabaseStorage(engine=engine)
    )
    if not isinstance(storage, Storage):  # an async one (`async+redis://`)
        raise ValueError("RATELIMIT_STORAGE_URI must name a synchronous storage")
    throttle = LoginThrottle(
        storage,
        LoginLimits(
            pair=parse(settings.login_rate_limit),
            address=parse(settings.login_address_rate_limit),
            account=parse(settings.login_account_rate_limit),
            attempts=parse(settings.login_attempt_rate_limit),
        ),
    )
    views = app.view_functions
    views["auth.Login"] = throttled(views["auth.Login"], throttle)
    views["auth.Register"] = limited(
        views["auth.Register"],
        storage,
        parse(settings.register_rate_limit),
        "Too many registrations from this address",
    )
