"""The kit's column types and pagination, on real PostgreSQL."""

import enum
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chomik.db import (
    TYPE_ANNOTATION_MAP,
    enum_by_value,
    make_engine,
    new_metadata,
    paginate,
)


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
