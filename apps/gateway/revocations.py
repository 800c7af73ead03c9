"""The deny list in memory: logged-out access tokens and revoked sessions.

Every authenticated request asks whether its access token was logged out (its
`jti` in `revoked_tokens`) or its session revoked (its `sid`, a refresh family,
with `revoked_at` set). Asking the database costs a round trip per request, the
largest part of the gateway's own work on a proxied call. A `Revocations` keeps
both lists in memory instead:

- triggers on the two tables (migration 0004) NOTIFY `CHANNEL` in the revoking
  transaction, `jti:<jti>` or `family:<uuid>`; PostgreSQL delivers the
  notification when that transaction commits, whichever code revoked;
- a `Revocations` LISTENs on a connection of its own, then reads both lists;
- every check first takes in the notifications already arrived on that connection
  (without waiting for any), so a revocation committed before the request came is
  seen, whichever gateway process it came to;
- both lists are read again every `reload_every` seconds, which drops tokens
  expired since; a session revoked longer ago than an access token lives
  (`keep_sessions`) is left out: no access token of it is still valid, since a
  revoked session is refreshed no more;
- without its connection (not opened yet, lost) a check asks the database, as
  before, and the connection is opened again at most every `retry` seconds.

Tests that never commit (their transaction rolls back, so nothing is notified)
build one with `listen=False` and their own `connect`: every check asks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from apps.gateway.services import as_uuid
from chomik.db import listening_connection, take_notifications

log = logging.getLogger(__name__)

CHANNEL = "chomik_revocations"

_REVOKED = sa.text(
    "SELECT EXISTS (SELECT FROM revoked_tokens WHERE jti = :jti)"
    " OR EXISTS (SELECT FROM refresh_families"
    " WHERE id = CAST(:family AS uuid) AND revoked_at IS NOT NULL)"
)
_LISTS = (
    "SELECT 'jti', jti FROM revoked_tokens WHERE expires_at > now()"
    " UNION ALL SELECT 'family', id::text FROM refresh_families"
    " WHERE revoked_at > now() - make_interval(secs => %(keep)s)"
)


class Revocations:
    """Tells whether an access token is denied, from memory kept up to date."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        keep_sessions: float,
        listen: bool = True,
        connect: Callable[[], AbstractContextManager[sa.Connection]] | None = None,
        reload_every: float = 60.0,
        retry: float = 5.0,
    ) -> None:
        self.engine = engine
        self.listen = listen  # False: every check asks the database
        self.connect = connect or engine.connect  # for those checks
        self.keep_sessions = keep_sessions
        self.reload_every = reload_every
        self.retry = retry
        self._lock = threading.Lock()
        self._connection: Any = None  # the LISTENing psycopg2 connection
        self._jtis: set[str] = set()
        self._families: set[str] = set()
        self._loaded_at = 0.0
        self._failed_at = -float("inf")

    def is_revoked(self, jti: str, family_id: str | None) -> bool:
        """Whether the token `jti` of session `family_id` was logged out or revoked."""
        parsed = as_uuid(family_id)
        family = None if parsed is None else str(parsed)
        if self.listen:
            with self._lock:
                if self._up_to_date():
                    return jti in self._jtis or family in self._families
        with self.connect() as connection:
            return bool(connection.scalar(_REVOKED, {"jti": jti, "family": family}))

    @property
    def listening(self) -> bool:
        return self._connection is not None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _up_to_date(self) -> bool:
        """Take in what was notified (opening and loading first if need be)."""
        now = time.monotonic()
        try:
            if self._connection is None:
                if now - self._failed_at < self.retry:
                    return False
                self._listen()
            elif now - self._loaded_at >= self.reload_every:
                self._load()
            self._take_notifications()
        except Exception as exc:  # noqa: BLE001 - the database answers meanwhile
            log.warning("deny list: %s; reading the database meanwhile", repr(exc))
            self._drop()
            self._failed_at = now
            return False
        return True

    def _listen(self) -> None:
        self._connection = listening_connection(self.engine, [CHANNEL])
        self._load()  # after LISTEN: nothing revoked in between is missed

    def _load(self) -> None:
        with self._connection.cursor() as cursor:
            cursor.execute(_LISTS, {"keep": self.keep_sessions})
            rows = cursor.fetchall()
        self._jtis = {value for kind, value in rows if kind == "jti"}
        self._families = {value for kind, value in rows if kind == "family"}
        self._loaded_at = time.monotonic()

    def _take_notifications(self) -> None:
        for notice in take_notifications(self._connection):
            kind, _, value = notice.payload.partition(":")
            (self._jtis if kind == "jti" else self._families).add(value)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # it is gone either way
                connection.close()
