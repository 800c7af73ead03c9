"""The deny list in memory (`apps.gateway.revocations`), on committed rows.

Two `Revocations` on one database stand for two gateway processes. Their `connect`
fails the test: an answer from memory reads no table.
"""

from __future__ import annotations

import datetime as dt
import select
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from apps.gateway.models import RefreshFamily, RevokedToken, User
from apps.gateway.revocations import Revocations
from chomik.db import utcnow
from tests.chomik.messaging_helpers import wait_until

HOUR = dt.timedelta(hours=1)


def never_asked():
    pytest.fail("a check read the database instead of the list in memory")


@pytest.fixture
def engine(infra) -> Iterator[sa.Engine]:
    engine = infra.engine("gateway")
    yield engine
    with engine.begin() as conn:
        conn.execute(sa.delete(RevokedToken).where(RevokedToken.jti.like("test-%")))
        conn.execute(sa.delete(User).where(User.email.like("%@revocations.example")))


@pytest.fixture
def lists(engine) -> Iterator[list[Revocations]]:
    made: list[Revocations] = []
    yield made
    for revocations in made:
        revocations.close()


def in_memory(engine, lists, **options) -> Revocations:
    options = {"keep_sessions": 900, "connect": never_asked, **options}
    revocations = Revocations(engine, **options)
    lists.append(revocations)
    return revocations


def revoke_token(engine, jti: str, expires_at: dt.datetime | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(RevokedToken).values(
                jti=jti, expires_at=expires_at or utcnow() + HOUR
            )
        )


def new_family(engine, revoked_at: dt.datetime | None = None) -> str:
    with engine.begin() as conn:
        user = conn.scalar(
            sa.insert(User)
            .values(email=f"{uuid.uuid4().hex}@revocations.example", name="Ann",
                    role="buyer", password_hash="x")
            .returning(User.id)
        )  # fmt: skip
        family = conn.scalar(
            sa.insert(RefreshFamily)
            .values(id=uuid.uuid4(), user_id=user, revoked_at=revoked_at)
            .returning(RefreshFamily.id)
        )
    return str(family)


def revoke_family(engine, family: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(RefreshFamily)
            .where(RefreshFamily.id == uuid.UUID(family))
            .values(revoked_at=utcnow())
        )


def test_a_revocation_committed_elsewhere_is_seen_by_every_list_at_its_next_check(
    engine, lists
):
    one, two = in_memory(engine, lists), in_memory(engine, lists)
    family = new_family(engine)
    jti = f"test-{uuid.uuid4().hex}"
    assert not one.is_revoked(jti, family)
    assert not two.is_revoked(jti, family)
    assert one.listening
    assert two.listening

    revoke_token(engine, jti)  # a logout, committed by another process
    # Delivered as the logout commits (a moment later, on another connection).
    wait_until(lambda: one.is_revoked(jti, None) and two.is_revoked(jti, family), 5)
    assert not one.is_revoked(f"test-{uuid.uuid4().hex}", family)

    revoke_family(engine, family)  # a session revoked: all its access tokens
    other = f"test-{uuid.uuid4().hex}"
    wait_until(
        lambda: one.is_revoked(other, family) and two.is_revoked(other, family), 5
    )
    assert not one.is_revoked(other, new_family(engine))


def test_what_was_revoked_before_the_first_check_is_read_at_start(engine, lists):
    jti, expired = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    revoke_token(engine, jti)
    revoke_token(engine, expired, expires_at=utcnow() - HOUR)
    recent = new_family(engine, revoked_at=utcnow() - dt.timedelta(minutes=5))
    # Revoked before any access token still valid was issued in it.
    old = new_family(engine, revoked_at=utcnow() - 2 * HOUR)

    revocations = in_memory(engine, lists, keep_sessions=HOUR.total_seconds())
    assert revocations.is_revoked(jti, None)
    assert revocations.is_revoked("any", recent)
    assert not revocations.is_revoked(expired, None)  # expired: refused anyway
    assert not revocations.is_revoked("any", old)


def test_a_session_id_that_is_no_uuid_is_simply_not_revoked(engine, lists):
    revocations = in_memory(engine, lists)
    for sid in (None, "", "not-a-uuid", "0" * 200):
        assert not revocations.is_revoked(f"test-{uuid.uuid4().hex}", sid)


def test_the_lists_are_read_again_after_reload_every(engine, lists):
    jti = f"test-{uuid.uuid4().hex}"
    revoke_token(engine, jti)
    revocations = in_memory(engine, lists, reload_every=0.0)
    assert revocations.is_revoked(jti, None)
    with engine.begin() as conn:  # the cleanup job drops it once expired
        conn.execute(sa.delete(RevokedToken).where(RevokedToken.jti == jti))
    assert not revocations.is_revoked(jti, None)


def test_without_its_connection_a_check_asks_the_database_then_listens_again(
    engine, lists
):
    revocations = in_memory(engine, lists, connect=engine.connect, retry=0.0)
    assert not revocations.is_revoked("test-warm-up", None)
    pid = revocations._connection.info.backend_pid
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    select.select([revocations._connection], [], [], 10)  # its goodbye has come
    jti = f"test-{uuid.uuid4().hex}"
    revoke_token(engine, jti)  # notified while no one of ours listened

    assert revocations.is_revoked(jti, None)  # asked the database
    assert not revocations.listening
    assert revocations.is_revoked(jti, None)  # listening again, lists read anew
    assert revocations.listening
    assert revocations._connection.info.backend_pid != pid


def test_a_check_while_the_database_is_away_is_an_error_not_a_pass(lists):
    # Fail closed: neither the list nor the table can be read.
    dead = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:9/none")
    revocations = Revocations(dead, keep_sessions=900, retry=60.0)
    lists.append(revocations)
    with pytest.raises(sa.exc.OperationalError):
        revocations.is_revoked("test-any", None)
