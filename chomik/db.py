"""Database plumbing: engines, sessions, the declarative base recipe, column types."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import logging
import math
import os
import select
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.engine.interfaces import BindTyping
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> sa.MetaData:
    """A MetaData with the house constraint naming convention (stable migrations)."""
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamptz that refuses naive datetimes and always returns UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: use datetime.now(UTC)")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else value.astimezone(dt.UTC)


# Money: exact decimal with two places (numeric(12, 2)), never float.
Money = sa.Numeric(12, 2, asdecimal=True)


def enum_by_value(kind: type[enum.Enum], length: int) -> sa.Enum:
    """An enum stored by value as a varchar (no PostgreSQL enum type to migrate)."""
    return sa.Enum(
        kind,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


TYPE_ANNOTATION_MAP: dict[Any, Any] = {
    dt.datetime: UTCDateTime,
    Decimal: Money,
    uuid.UUID: sa.Uuid(as_uuid=True),
}


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class TimestampMixin:
    """`created_at` and `updated_at` kept by the database and the ORM."""

    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, server_default=sa.func.now(), default=utcnow
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, server_default=sa.func.now(), default=utcnow, onupdate=utcnow
    )


# A connection idle longer than this is pinged before use (see make_engine).
PING_IDLE_AFTER = 5.0
# libpq's TCP keepalive: a server gone without a word (its host down, a NAT entry
# dropped) is noticed in about a minute, not the system's two hours; it matters
# most to a connection that only waits, such as a Listener's.
TCP_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                 "keepalives_count": 3}  # fmt: skip


def make_engine(
    url: str, *, ping_idle_after: float = PING_IDLE_AFTER, **kwargs: Any
) -> Engine:
    """Create a pooled engine that checks connections idle for a while before use.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: one more round trip to
    the server for every request and every short transaction. A connection
    handed back moments ago is as good as the ping would say, so only one idle
    for more than `ping_idle_after` seconds is pinged (the server or a firewall
    dropped it meanwhile: a fresh one is taken instead). A connection dropped
    while in use still fails that one use; the pool then replaces every
    connection it holds. Every connection keeps TCP alive (`TCP_KEEPALIVE`).
    """
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs["connect_args"] = {**TCP_KEEPALIVE, **kwargs.get("connect_args", {})}
    engine = sa.create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine, ping_idle_after)
    return engine


_IDLE_SINCE = "chomik_idle_since"


def _ping_when_idle(engine: Engine, after: float) -> None:
    @sa.event.listens_for(engine.pool, "checkin")
    def _idle(_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine.pool, "checkout")
    def _ping(connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < after:
            return
        try:
            engine.dialect.do_ping(connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool drops this connection and checks out another.
            raise sa.exc.DisconnectionError(str(exc)) from exc


# Renders bind parameters as `:name`, as `sa.text` reads them, without the casts
# the text's typed parameters render again when it runs.
_NAMED_POSTGRESQL = postgresql.psycopg2.dialect(paramstyle="named")  # type: ignore[no-untyped-call]
_NAMED_POSTGRESQL.bind_typing = BindTyping.NONE


def compiled_once(statement: sa.ClauseElement) -> sa.Executable:
    """`statement` compiled for PostgreSQL (psycopg2) now, as text SQLAlchemy caches.

    SQLAlchemy 2.0 compiles a PostgreSQL `INSERT ... ON CONFLICT` again on every
    execution: that construct has no cache key (sqlalchemy#10445). Built once, at
    import, with every value a `sa.bindparam` (a constant too: `sa.literal_column`),
    and passed through this, it is compiled once; its parameters keep their types,
    and its RETURNING columns theirs. It runs as plain SQL, so:

    - column defaults and `onupdate`s computed in Python are not applied (refused
      here: give those columns); `ON CONFLICT DO UPDATE` never applied `onupdate`;
    - `session.execute` does not autoflush the ORM's pending objects before it;
    - no RETURNING is added but the statement's own.

    For a statement on a hot path (every request, every event); elsewhere the
    statement itself is simpler to read.
    """
    if isinstance(statement, sa.Insert):
        statement = statement.inline()
    compiled = cast(SQLCompiler, statement.compile(dialect=_NAMED_POSTGRESQL))
    defaults = [c.name for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
    if defaults:
        raise ValueError(f"compiled_once: give {defaults} (Python-side defaults)")
    binds = []
    for bind, name in compiled.bind_names.items():
        if not bind.required:
            raise ValueError(f"compiled_once: {name!r} carries a value; bind it")
        binds.append(sa.bindparam(name, type_=bind.type))
    # `sa.text` reads `:name` as a parameter: a cast's `::` is escaped.
    text = sa.text(compiled.string.replace("::", r"\:\:")).bindparams(*binds)
    returning = list(getattr(statement, "exported_columns", ()))
    return text.columns(*returning) if returning else text


def in_two_phase(session: Session) -> bool:
    """Whether the session's transaction is a two-phase branch (txcoord's)."""
    return isinstance(
        session.connection().get_transaction(), sa.engine.TwoPhaseTransaction
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Run a block in one transaction: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the list's total: `{items, page, page_size, total}`."""

    items: Sequence[T]
    page: int
    page_size: int
    total: int


def paginate(
    session: Session, query: sa.Select[tuple[T]], *, page: int, page_size: int
) -> Page[T]:
    """Fetch page `page` (from 1) of an ordered query, and count the whole list.

    One statement: the count rides on each row of the page as a scalar subquery,
    which PostgreSQL runs once, apart (the page keeps its index scan and LIMIT).
    Only a page past the end, which has no row to carry it, counts in a second.
    """
    count = sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
    rows = session.execute(
        query.add_columns(count.scalar_subquery())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    if rows:
        return Page([row[0] for row in rows], page, page_size, rows[0][1])
    total = session.scalar(count) if page > 1 else 0
    return Page([], page, page_size, total or 0)


def listening_connection(engine: Engine, channels: Sequence[str]) -> Any:
    """Open a psycopg2 connection of its own (never the pool's) LISTENing on `channels`."""
    proxy = engine.raw_connection()
    connection: Any = proxy.dbapi_connection
    proxy.detach()
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for channel in channels:
                cursor.execute(f'LISTEN "{channel}"')
    except Exception:
        connection.close()
        raise
    return connection


def take_notifications(connection: Any) -> list[Any]:
    """Take the notifications arrived on a LISTENing connection, without waiting.

    Raises `ConnectionError` once the server has closed the connection (restarted,
    or the backend terminated): psycopg2's `poll()` takes the server's goodbye
    (a FATAL notice) and returns as if nothing had happened.
    """
    if readable(connection, 0):
        connection.poll()
        goodbye = [n for n in connection.notices if n.startswith("FATAL")]
        connection.notices.clear()
        if goodbye or (readable(connection, 0) and _at_end(connection)):
            raise ConnectionError(f"the database closed the connection: {goodbye}")
    notices = list(connection.notifies)
    connection.notifies.clear()
    return notices


def readable(connection: Any, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `connection` (anything with `fileno`) to be
    readable (`poll`, not `select`: a busy web worker's descriptors pass 1023)."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(timeout * 1000))))


def _at_end(connection: Any) -> bool:
    probe = socket.socket(fileno=connection.fileno())
    try:
        return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    finally:
        probe.detach()  # the descriptor stays the connection's


class Listener:
    """A thread that LISTENs on channels of a database and calls `wake(channel)`.

    It sleeps in `select` on its own connection (no polling); a lost connection
    is opened again after `retry` seconds, meanwhile its callers poll as they
    would anyway. Once listening (again) it calls `wake` for every channel: what
    was notified meanwhile is not lost.
    """

    def __init__(
        self,
        engine: Engine,
        channels: set[str],
        wake: Callable[[str], None],
        *,
        retry: float = 5.0,
    ) -> None:
        self.engine = engine
        self.channels = sorted(channels)
        self.wake = wake
        self.retry = retry
        self.listening = threading.Event()  # set while LISTENing
        self._stopping = threading.Event()
        self._stop_read, self._stop_write = -1, -1

    def start(self) -> None:
        """Listen in a daemon thread until `stop`."""
        self._stopping.clear()
        self._stop_read, self._stop_write = os.pipe()
        threading.Thread(target=self._run, name="listen", daemon=True).start()

    def stop(self) -> None:
        """Stop listening (the thread ends at once, its connection closed)."""
        self._stopping.set()
        write, self._stop_write = self._stop_write, -1
        if write >= 0:
            with contextlib.suppress(OSError):
                os.write(write, b"x")
            os.close(write)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._listen()
                except Exception as exc:  # noqa: BLE001 - retry; callers still poll
                    log.warning(
                        "LISTEN %s: %s; again shortly", self.channels, repr(exc)
                    )
                    select.select([self._stop_read], [], [], self.retry)
        finally:
            os.close(self._stop_read)

    def _listen(self) -> None:
        connection = listening_connection(self.engine, self.channels)
        try:
            self.listening.set()
            for channel in self.channels:  # what was notified while not listening
                self.wake(channel)
            while not self._stopping.is_set():
                readable, _, _ = select.select([connection, self._stop_read], [], [])
                if connection in readable:
                    woken = {n.channel for n in take_notifications(connection)}
                    for channel in sorted(woken):
                        self.wake(channel)
        finally:
            self.listening.clear()
            connection.close()


LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock wait past `lock_timeout`


class LockWaitTimeoutError(Exception):
    """A lock was not granted within the wait given to `lock_wait`."""


# Set `lock_timeout` until the transaction ends and answer the value before, in
# one round trip: the materialized CTE reads it before the projection sets it.
_SWAP_LOCK_TIMEOUT = sa.text(
    "WITH previous AS MATERIALIZED (SELECT current_setting('lock_timeout') AS value)"
    " SELECT value, set_config('lock_timeout', :value, true) FROM previous"
)

_RESTORE_LOCK_TIMEOUT = sa.text("SELECT set_config('lock_timeout', :value, true)")


@contextmanager
def lock_wait(session: Session, seconds: float) -> Iterator[None]:
    """Run the block in a savepoint where a lock is waited for `seconds` at most.

    `LockWaitTimeoutError` when one takes longer: the block is undone, the
    transaction goes on. The transaction's own `lock_timeout` is back after it.
    """
    try:
        with session.begin_nested():
            previous = session.execute(
                _SWAP_LOCK_TIMEOUT, {"value": f"{max(1, round(seconds * 1000))}ms"}
            ).scalar_one()
            yield
            session.execute(_RESTORE_LOCK_TIMEOUT, {"value": previous})
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
            raise
        raise LockWaitTimeoutError(str(exc.orig)) from exc


_TRY_ADVISORY_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:namespace, :key)")
_ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(:namespace, :key)")


def advisory_xact_lock(
    session: Session, namespace: int, key: int, *, wait: float
) -> None:
    """Take a transaction-level advisory lock, waiting `wait` seconds at most.

    One round trip when the lock is free; `LockWaitTimeoutError` when it is
    not granted in time (the transaction goes on without it).
    """
    if try_advisory_xact_lock(session, namespace, key):
        return
    with lock_wait(session, wait):
        session.execute(_ADVISORY_LOCK, {"namespace": namespace, "key": key})


def try_advisory_xact_lock(session: Session, namespace: int, key: int) -> bool:
    """Take a transaction-level advisory lock if it is free; False if it is not."""
    keys = {"namespace": namespace, "key": key}
    return bool(session.execute(_TRY_ADVISORY_LOCK, keys).scalar_one())


def lock_key(data: bytes) -> int:
    """An advisory lock's int4 key for `data`, the same in every process."""
    return zlib.crc32(data) - 2**31
