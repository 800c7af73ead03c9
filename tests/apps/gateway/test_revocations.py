"""The deny list in memory (`apps.gateway.revocations`), on committed rows.

Two `Revocations` on one database stand for two gateway processes. Their `connect`
fails the test unless told otherwise: an answer from memory reads no table.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from apps.gateway.models import RefreshFamily, RevokedToken, User
from apps.gateway.revocations import CHANNEL, Revocations
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
    """A list kept for this process, once it has read the lists and confirmed them."""
    options = {"keep_sessions": 900, "connect": never_asked, **options}
    revocations = Revocations(engine, **options)
    lists.append(revocations)
    revocations.start()
    wait_until(lambda: revocations.fresh, 10, interval=0.01)
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


def test_a_revocation_committed_elsewhere_reaches_every_list(engine, lists):
    one, two = in_memory(engine, lists), in_memory(engine, lists)
    family = new_family(engine)
    jti = f"test-{uuid.uuid4().hex}"
    assert not one.is_revoked(jti, family)
    assert not two.is_revoked(jti, family)

    revoke_token(engine, jti)  # a logout, committed by another process
    # What a logout waits for before it answers: its own list has it.
    assert one.wait_seen(jti, timeout=5)
    wait_until(lambda: two.is_revoked(jti, None), 5, interval=0.001)
    assert one.is_revoked(jti, None)
    assert two.is_revoked(jti, family)
    assert not one.is_revoked(f"test-{uuid.uuid4().hex}", family)

    revoke_family(engine, family)  # a session revoked: all its access tokens
    other = f"test-{uuid.uuid4().hex}"
    wait_until(lambda: one.is_revoked(other, family), 5, interval=0.001)
    wait_until(lambda: two.is_revoked(other, family), 5, interval=0.001)
    assert not one.is_revoked(other, new_family(engine))


def test_what_was_revoked_before_the_start_is_read_at_start(engine, lists):
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
    # A refresh token's check asks the database, which keeps every session.
    asking = Revocations(engine, keep_sessions=900, connect=engine.connect)
    lists.append(asking)
    assert asking.is_revoked("any", old, ask_database=True)


def test_a_session_id_that_is_no_uuid_is_simply_not_revoked(engine, lists):
    revocations = in_memory(engine, lists)
    for sid in (None, "", "not-a-uuid", "0" * 200):
        assert not revocations.is_revoked(f"test-{uuid.uuid4().hex}", sid)


def test_a_notice_of_someone_elses_is_ignored(engine, lists):
    revocations = in_memory(engine, lists)
    with engine.begin() as conn:
        for payload in ("bogus", "", "jti", "x:y"):
            conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload)))
    jti = f"test-{uuid.uuid4().hex}"
    revoke_token(engine, jti)
    assert revocations.wait_seen(jti, timeout=5)
    assert revocations.fresh


def test_the_lists_are_read_again_after_reload_every(engine, lists):
    jti = f"test-{uuid.uuid4().hex}"
    revoke_token(engine, jti)
    revocations = in_memory(engine, lists, reload_every=0.0, confirm_every=0.05)
    assert revocations.is_revoked(jti, None)
    with engine.begin() as conn:  # the cleanup job drops it once expired
        conn.execute(sa.delete(RevokedToken).where(RevokedToken.jti == jti))
    wait_until(lambda: not revocations.is_revoked(jti, None), 5, interval=0.01)


def test_unconfirmed_lists_answer_nothing_and_a_check_asks_the_database(engine, lists):
    # The connection silent (a database gone without a word): no confirmation
    # comes, and after `fresh_for` every check asks the database, as without lists.
    asked = []

    def connect():
        asked.append(1)
        return engine.connect()

    revocations = in_memory(
        engine, lists, connect=connect, confirm_every=60.0, fresh_for=0.5
    )
    jti = f"test-{uuid.uuid4().hex}"
    assert not revocations.is_revoked(jti, None)
    assert asked == []
    wait_until(lambda: not revocations.fresh, 5, interval=0.05)
    assert not revocations.is_revoked(jti, None)
    assert asked == [1]


def test_without_its_connection_a_check_asks_the_database_then_listens_again(
    engine, lists
):
    revocations = in_memory(engine, lists, connect=engine.connect, retry=0.2)
    pid = revocations._connection.info.backend_pid
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    wait_until(lambda: not revocations.fresh, 5, interval=0.01)
    jti = f"test-{uuid.uuid4().hex}"
    revoke_token(engine, jti)  # notified while no one of ours listened
    assert revocations.is_revoked(jti, None)  # asked the database
    wait_until(lambda: revocations.fresh, 10, interval=0.01)  # listening again
    assert revocations._connection.info.backend_pid != pid
    assert revocations.is_revoked(jti, None)  # and read the lists anew


def test_a_check_while_the_database_is_away_is_an_error_not_a_pass(lists):
    dead = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:9/none")
    revocations = Revocations(dead, keep_sessions=900, retry=60.0)
    lists.append(revocations)
    with pytest.raises(sa.exc.OperationalError):
        revocations.is_revoked("test-any", None)
