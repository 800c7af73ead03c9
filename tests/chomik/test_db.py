"""The kit's column types and pagination, on real PostgreSQL."""

import datetime as dt
import enum
import os
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chomik.db import (
    TYPE_ANNOTATION_MAP,
    Listener,
    LockWaitTimeoutError,
    UTCDateTime,
    advisory_xact_lock,
    compiled_once,
    enum_by_value,
    make_engine,
    new_metadata,
    paginate,
)
from tests.chomik.messaging_helpers import wait_until


class Colour(enum.StrEnum):
    DEEP_RED = "deep-red"
    BLUE = "blue"


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class Swatch(Base):
    __tablename__ = "test_db_swatches"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    n: Mapped[int]
    colour: Mapped[Colour] = mapped_column(enum_by_value(Colour, 16))


@pytest.fixture
def session(dbs):
    """A session whose table lives only inside this test's rolled-back transaction."""
    dbs.connection("gateway").execute(
        sa.text(
            "CREATE TABLE test_db_swatches"
            " (id uuid PRIMARY KEY, n integer NOT NULL, colour varchar(16) NOT NULL)"
        )
    )
    return dbs.session("gateway")


def test_enum_by_value_stores_the_value_and_loads_the_member(session):
    session.add(Swatch(n=1, colour=Colour.DEEP_RED))
    session.flush()
    stored = session.execute(sa.text("SELECT colour FROM test_db_swatches")).scalar()
    assert stored == "deep-red"
    assert session.scalars(sa.select(Swatch.colour)).one() is Colour.DEEP_RED


def test_enum_by_value_is_a_plain_varchar():
    column = Swatch.__table__.c.colour
    assert column.type.native_enum is False
    assert column.type.length == 16
    assert not [
        c for c in Swatch.__table__.constraints if isinstance(c, sa.CheckConstraint)
    ]


def test_paginate_answers_one_page_and_the_total(session):
    session.add_all(Swatch(n=n, colour=Colour.BLUE) for n in range(7))
    session.add(Swatch(n=100, colour=Colour.DEEP_RED))
    session.flush()
    query = sa.select(Swatch).where(Swatch.colour == Colour.BLUE).order_by(Swatch.n)
    page = paginate(session, query, page=2, page_size=3)
    assert [s.n for s in page.items] == [3, 4, 5]
    assert (page.page, page.page_size, page.total) == (2, 3, 7)
    last = paginate(session, query, page=3, page_size=3)
    assert [s.n for s in last.items] == [6]
    beyond = paginate(session, query, page=9, page_size=3)
    assert (list(beyond.items), beyond.total) == ([], 7)
    none = sa.select(Swatch).where(Swatch.n < 0).order_by(Swatch.n)
    assert paginate(session, none, page=1, page_size=3).total == 0


def test_paginate_reads_a_page_and_its_total_in_one_statement(session):
    session.add_all(Swatch(n=n, colour=Colour.BLUE) for n in range(5))
    session.flush()
    statements = []

    def sent(conn, cursor, statement, *args):
        statements.append(statement)

    connection = session.connection()
    sa.event.listen(connection, "before_cursor_execute", sent)
    try:
        query = sa.select(Swatch).order_by(Swatch.n)
        page = paginate(session, query, page=1, page_size=2)
    finally:
        sa.event.remove(connection, "before_cursor_execute", sent)
    assert ([s.n for s in page.items], page.total) == ([0, 1], 5)
    assert len(statements) == 1


def _pings(engine):
    pings = []
    original = engine.dialect.do_ping

    def counted(connection):
        pings.append(connection)
        return original(connection)

    engine.dialect.do_ping = counted
    return pings


def test_a_connection_used_moments_ago_is_not_pinged_again(infra):
    engine = make_engine(infra.urls["gateway"], pool_size=1, max_overflow=0)
    pings = _pings(engine)
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    assert pings == []
    engine.dispose()


def test_a_connection_idle_too_long_is_pinged_and_replaced_when_dropped(infra):
    engine = make_engine(
        infra.urls["gateway"], ping_idle_after=0.0, pool_size=1, max_overflow=0
    )
    pings = _pings(engine)
    with engine.connect() as conn:
        first = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    with infra.engine("gateway").connect() as admin:
        admin.execute(sa.select(sa.func.pg_terminate_backend(first)))
    time.sleep(0.2)
    with engine.connect() as conn:  # the ping finds it dropped: a fresh one
        second = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    assert second != first
    assert len(pings) >= 1
    engine.dispose()


# -- compiled_once ---------------------------------------------------------------------

_stamps = sa.table(
    "test_db_stamps",
    sa.column("id", sa.Uuid()),
    sa.column("at", UTCDateTime()),
    sa.column("n", sa.Integer()),
)
_ADD = compiled_once(
    insert(_stamps)
    .values(
        id=sa.bindparam("id", type_=sa.Uuid()),
        at=sa.bindparam("at", type_=UTCDateTime()),
        n=sa.bindparam("n"),
    )
    .on_conflict_do_update(
        index_elements=["id"],
        set_={"n": _stamps.c.n + sa.literal_column("excluded.n::int")},
    )
    .returning(_stamps.c.id, _stamps.c.at, _stamps.c.n)
)


@pytest.fixture
def stamps(dbs):
    connection = dbs.connection("gateway")
    connection.execute(
        sa.text(
            "CREATE TABLE test_db_stamps"
            " (id uuid PRIMARY KEY, at timestamptz NOT NULL, n integer NOT NULL)"
        )
    )
    return connection


def test_a_statement_compiled_once_runs_with_its_types_and_is_cached(stamps):
    assert _ADD._generate_cache_key() is not None  # a PostgreSQL upsert has none
    key, at = uuid.uuid4(), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    first = stamps.execute(_ADD, {"id": key, "at": at, "n": 2}).one()
    again = stamps.execute(_ADD, {"id": key, "at": at, "n": 3}).one()
    assert first == (key, at, 2)
    assert again == (key, at, 5)  # the `::` of the cast reached the server
    assert isinstance(again.id, uuid.UUID)
    assert again.at.tzinfo is not None


def test_compiled_once_refuses_a_value_it_would_freeze_or_a_python_default():
    table = sa.Table(
        "test_db_defaults",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, default=lambda: 1, onupdate=lambda: 2),
    )
    with pytest.raises(ValueError, match="carries a value"):
        compiled_once(insert(table).values(id=5, n=sa.bindparam("n")))
    with pytest.raises(ValueError, match="Python-side defaults"):
        compiled_once(insert(table).values(id=sa.bindparam("id")))
    with pytest.raises(ValueError, match="Python-side defaults"):
        compiled_once(sa.update(table).values(id=sa.bindparam("new_id")))


def test_compiled_once_adds_no_returning_of_generated_keys():
    table = sa.Table(
        "test_db_generated",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(20)),
    )
    statement = compiled_once(insert(table).values(name=sa.bindparam("name")))
    assert "RETURNING" not in str(statement)


def test_connections_keep_tcp_alive(infra):
    import socket

    engine = make_engine(infra.urls["gateway"])
    try:
        with engine.connect() as connection:
            fd = connection.connection.dbapi_connection.fileno()
            sock = socket.socket(fileno=os.dup(fd))
            try:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            finally:
                sock.close()
    finally:
        engine.dispose()


def test_a_listener_whose_backend_was_terminated_listens_again(infra):
    # A restarted database, a backend terminated: it listens on a new connection.
    engine = infra.engine("storage")
    woken = []
    listener = Listener(engine, {"test_db_listener"}, woken.append, retry=0.2)

    def listening_pid():
        with engine.connect() as conn:
            return conn.scalar(
                sa.text("SELECT pid FROM pg_stat_activity"
                        " WHERE query = 'LISTEN \"test_db_listener\"'")
            )  # fmt: skip

    listener.start()
    try:
        first = wait_until(listening_pid, 10)
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        wait_until(lambda: listening_pid() not in (None, first), 10)
        woken.clear()
        with engine.begin() as conn:
            conn.execute(sa.text("NOTIFY test_db_listener"))
        wait_until(lambda: woken == ["test_db_listener"], 10)
    finally:
        listener.stop()


# -- advisory_xact_lock ----------------------------------------------------------------


def _statements(session) -> list[str]:
    seen: list[str] = []
    sa.event.listen(
        session.connection(),
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: seen.append(statement),
    )
    return seen


def _held(connection, key: int) -> bool:
    return (
        connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
                " AND classid = 7 AND objid = :objid AND objsubid = 2 AND granted"
            ),
            {"objid": key},
        ).scalar_one()
        == 1
    )


def test_a_free_advisory_lock_is_taken_in_one_round_trip_until_the_end(infra):
    engine = make_engine(infra.urls["gateway"])
    with sa.orm.Session(engine) as session, engine.connect() as watcher:
        statements = _statements(session)
        advisory_xact_lock(session, 7, 1234, wait=0.2)
        assert len(statements) == 1
        assert _held(watcher, 1234)
        session.commit()
        assert not _held(watcher, 1234)
    engine.dispose()


def test_a_held_advisory_lock_is_waited_for_then_refused_and_the_transaction_goes_on(
    infra,
):
    engine = make_engine(infra.urls["gateway"])
    with engine.connect() as other, other.begin():
        other.execute(sa.text("SELECT pg_advisory_xact_lock(7, 1235)"))
        with sa.orm.Session(engine) as session:
            session.execute(sa.text("SET LOCAL lock_timeout = '7s'"))
            started = time.monotonic()
            with pytest.raises(LockWaitTimeoutError):
                advisory_xact_lock(session, 7, 1235, wait=0.2)
            assert time.monotonic() - started >= 0.2
            timeout = session.execute(sa.text("SHOW lock_timeout")).scalar_one()
            assert timeout == "7s"  # the transaction's own, back
            session.rollback()
    engine.dispose()


def test_an_advisory_lock_let_go_within_the_wait_is_taken(infra):
    engine = make_engine(infra.urls["gateway"])
    with sa.orm.Session(engine) as session, engine.connect() as watcher:
        with engine.connect() as other:
            other.begin()
            other.execute(sa.text("SELECT pg_advisory_xact_lock(7, 1236)"))
            letting_go = threading.Timer(0.2, other.rollback)
            letting_go.start()
            advisory_xact_lock(session, 7, 1236, wait=5)
            letting_go.join()
        assert _held(watcher, 1236)
        session.rollback()
    engine.dispose()
