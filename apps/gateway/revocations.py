"""The deny list in memory: logged-out access tokens and revoked sessions.

Every authenticated request asks whether its access token was logged out (its
`jti` in `revoked_tokens`) or its session revoked (its `sid`, a refresh family,
with `revoked_at` set). Asking the database costs a round trip per request, the
largest part of the gateway's own work on a proxied call. A `Revocations` keeps
both lists in memory instead:

- triggers on the two tables (migration 0004) NOTIFY `CHANNEL` in the revoking
  transaction, `jti:<jti>` or `family:<uuid>`; PostgreSQL sends the notification
  to every listener as that transaction commits, whichever code revoked;
- a thread of each gateway process LISTENs on a connection of its own, reads both
  lists, and takes in each notification as it comes;
- every `confirm_every` seconds it runs a query on that connection: PostgreSQL
  sends what it has to notify before the answer, so once the answer is in, every
  revocation committed before the query was sent is in memory too. A check answers
  from memory only while the last such confirmation is under `fresh_for` seconds
  old; otherwise (not started yet, the connection lost or silent) it asks the
  database, as without the list, and fails with the database;
- the lists are read anew every `reload_every` seconds (dropping expired tokens);
  a session revoked longer ago than an access token lives (`keep_sessions`) is
  left out: no access token of it is still valid, since a revoked session is
  refreshed no more. A refresh token's check always asks the database.

The remaining window: a revocation committed in another process is in memory a
few microseconds after its commit is acknowledged. A logout therefore waits, after
its commit, until its own process has the notification (`wait_seen`): PostgreSQL
signals every listener at once, so by then the other gateways have it too, but for
scheduling delays.

Tests that never commit (their transaction rolls back, so nothing is notified)
build one with `listen=False` and their own `connect`: every check asks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from apps.gateway.services import as_uuid
from chomik.db import listening_connection, readable, take_notifications, utcnow

log = logging.getLogger(__name__)

CHANNEL = "chomik_revocations"

_REVOKED = sa.text(
    "SELECT EXISTS (SELECT FROM revoked_tokens WHERE jti = :jti)"
    " OR EXISTS (SELECT FROM refresh_families"
    " WHERE id = CAST(:family AS uuid) AND revoked_at IS NOT NULL)"
)
# Cut-offs from the gateway's clock, which also judges the tokens' expiry.
_LISTS = (
    "SELECT 'jti', jti FROM revoked_tokens WHERE expires_at > %(now)s"
    " UNION ALL SELECT 'family', id::text FROM refresh_families"
    " WHERE revoked_at > %(since)s"
)


class Revocations:
    """Tell whether an access token is denied, from memory kept up to date."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        keep_sessions: float,
        listen: bool = True,
        connect: Callable[[], AbstractContextManager[sa.Connection]] | None = None,
        confirm_every: float = 1.0,
        fresh_for: float = 2.5,
        reload_every: float = 60.0,
        retry: float = 5.0,
    ) -> None:
        self.engine = engine
        self.keep_sessions = keep_sessions
        self.listen = listen  # False: every check asks the database
        self.connect = connect or engine.connect  # for those checks
        self.confirm_every = confirm_every
        self.fresh_for = fresh_for
        self.reload_every = reload_every
        self.retry = retry
        self._seen = threading.Condition()  # guards the lists; told of additions
        self._jtis: set[str] = set()
        self._families: set[str] = set()
        self._confirmed_at = -float("inf")
        self._pid: int | None = None  # the process whose thread keeps the lists
        self._stopping = threading.Event()
        self._connection: Any = None  # the thread's, while it has one
        self._io = threading.Lock()  # held while the connection is used

    def is_revoked(
        self, jti: str, family_id: str | None, *, ask_database: bool = False
    ) -> bool:
        """Tell whether token `jti` of session `family_id` was logged out or revoked."""
        parsed = as_uuid(family_id)
        family = None if parsed is None else str(parsed)
        if self.listen and not ask_database:
            self.start()
            if self.fresh:
                self._drain()
                return jti in self._jtis or family in self._families
        with self.connect() as connection:
            return bool(connection.scalar(_REVOKED, {"jti": jti, "family": family}))

    @property
    def fresh(self) -> bool:
        """Whether the lists in memory may answer (confirmed recently enough)."""
        return time.monotonic() - self._confirmed_at < self.fresh_for

    def wait_seen(self, jti: str, timeout: float = 0.1) -> bool:
        """Wait until the logout of `jti`, just committed, is in this process's list."""
        if not (self.listen and self.fresh):
            return False
        with self._seen:
            return self._seen.wait_for(lambda: jti in self._jtis, timeout)

    def close(self) -> None:
        """Stop keeping the lists (the thread ends within `confirm_every`)."""
        self._stopping.set()
        self._confirmed_at = -float("inf")

    def start(self) -> None:
        """Start keeping the lists in this process (the first check does it too)."""
        if self._pid == os.getpid():
            return
        with self._seen:
            if self._pid == os.getpid():
                return
            # A forked child keeps nothing of its parent's: no thread, no socket.
            self._pid = os.getpid()
            self._confirmed_at = -float("inf")
            threading.Thread(target=self._run, name="deny-list", daemon=True).start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            connection = None
            try:
                connection = self._connection = listening_connection(
                    self.engine, [CHANNEL]
                )
                self._keep_up(connection)
            except Exception as exc:  # noqa: BLE001 - checks ask the database meanwhile
                log.warning("deny list: %s; checks ask the database", repr(exc))
            finally:
                self._confirmed_at = -float("inf")
                with self._io:  # no check is taking from it meanwhile
                    self._connection = None
                    if connection is not None:
                        with contextlib.suppress(Exception):
                            connection.close()
            self._stopping.wait(self.retry)

    def _keep_up(self, connection: Any) -> None:
        loaded_at = -float("inf")
        while not self._stopping.is_set():
            sent = time.monotonic()
            with self._io, connection.cursor() as cursor:
                if sent - loaded_at >= self.reload_every:
                    now = utcnow()
                    since = now - dt.timedelta(seconds=self.keep_sessions)
                    cursor.execute(_LISTS, {"now": now, "since": since})
                    rows = cursor.fetchall()
                    with self._seen:
                        self._jtis = {v for kind, v in rows if kind == "jti"}
                        self._families = {v for kind, v in rows if kind == "family"}
                    loaded_at = sent
                else:
                    cursor.execute("SELECT 1")
                self._take(connection)  # those that came before the answer
            self._confirmed_at = sent
            while (left := sent + self.confirm_every - time.monotonic()) > 0:
                if self._stopping.is_set():
                    return
                if readable(connection, left):
                    with self._io:
                        self._take(connection)

    def _drain(self) -> None:
        """Take what has arrived on the connection, unless the thread is using it.

        The thread takes each notification as it comes, but it may wait for the
        interpreter while a request that came right after a revocation is checked.
        """
        connection = self._connection
        if connection is None or not self._io.acquire(blocking=False):
            return
        try:
            self._take(connection)
        except Exception:  # noqa: BLE001 - the thread finds it out and reconnects
            self._confirmed_at = -float("inf")
        finally:
            self._io.release()

    def _take(self, connection: Any) -> None:
        notices = take_notifications(connection)
        if not notices:
            return
        with self._seen:
            for notice in notices:
                kind, _, value = notice.payload.partition(":")
                if kind == "jti":
                    self._jtis.add(value)
                elif kind == "family":
                    self._families.add(value)
                else:  # not a trigger's: it can only have added, never removed
                    log.warning("deny list: unknown notice %r", notice.payload[:100])
            self._seen.notify_all()
