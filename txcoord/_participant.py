"""One participant's branch of a coordinated transaction, and SQL on prepared transactions.

A branch is one connection that ran ``begin_twophase(gid)`` and a Session bound
to it. The gid is ``<prefix>:<transaction id>:<participant>``; the names are
checked so the gid can be written into ``PREPARE TRANSACTION '...'`` as is.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, TwoPhaseTransaction
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from txcoord.errors import ConfigurationError

SEPARATOR = ":"
GID_MAX_BYTES = 199  # PostgreSQL: a gid is shorter than 200 bytes
TX_ID_LENGTH = 32  # uuid4().hex
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# ASCII names of at most 64 characters keep every gid within GID_MAX_BYTES:
# 64 + 1 + 32 + 1 + 64 = 162 bytes.

# SQLSTATEs that matter for prepared transactions.
UNDEFINED_OBJECT = "42704"  # COMMIT/ROLLBACK PREPARED: no such gid (already finished)
NOT_IN_PREREQUISITE_STATE = "55000"  # the gid is busy: another session is finishing it
CONFIGURATION_LIMIT_EXCEEDED = "53200"  # PREPARE: max_prepared_transactions reached


def check_name(kind: str, name: str) -> str:
    """Refuse a prefix or participant name that cannot go into a gid."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigurationError(
            f"txcoord {kind} {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
        )
    return name


def make_gid(prefix: str, tx_id: str, participant: str) -> str:
    """The global transaction id of one branch."""
    return SEPARATOR.join((prefix, tx_id, participant))


def parse_gid(prefix: str, gid: str) -> tuple[str, str] | None:
    """(transaction id, participant) of a gid with this prefix, else None."""
    head, sep, rest = gid.partition(SEPARATOR)
    tx_id, sep2, participant = rest.partition(SEPARATOR)
    if head != prefix or not sep or not sep2 or not tx_id:
        return None
    return tx_id, participant


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error wrapped by SQLAlchemy (psycopg2 or psycopg 3)."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    return code if isinstance(code, str) else None


def max_prepared_transactions(engine: Engine) -> int:
    """The server's max_prepared_transactions setting."""
    with engine.connect() as conn:
        value = conn.execute(sa.text("SHOW max_prepared_transactions")).scalar_one()
    return int(value)


class Finish(enum.Enum):
    """What COMMIT PREPARED / ROLLBACK PREPARED did."""

    DONE = "done"  # this call finished the branch
    GONE = "gone"  # no such branch: somebody finished it before
    BUSY = "busy"  # another session is finishing it right now


def _finish_sql(gid: str, *, commit: bool) -> sa.TextClause:
    verb = "COMMIT PREPARED" if commit else "ROLLBACK PREPARED"
    return sa.text(f"{verb} :gid").bindparams(
        sa.bindparam("gid", gid, literal_execute=True)
    )


def finish_prepared(engine: Engine, gid: str, *, commit: bool) -> Finish:
    """COMMIT PREPARED or ROLLBACK PREPARED `gid` on a fresh autocommit connection."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        try:
            conn.execute(_finish_sql(gid, commit=commit))
        except DBAPIError as exc:
            code = sqlstate(exc)
            if code == UNDEFINED_OBJECT:
                return Finish.GONE
            if code == NOT_IN_PREREQUISITE_STATE:
                return Finish.BUSY
            raise
    return Finish.DONE


@dataclass(frozen=True)
class PreparedBranch:
    """A row of pg_prepared_xacts that belongs to this coordinator."""

    gid: str
    tx_id: str
    participant: str
    age: float  # seconds since PREPARE TRANSACTION


def list_prepared(engine: Engine, prefix: str) -> list[PreparedBranch]:
    """The prepared branches with this prefix in the engine's own database.

    pg_prepared_xacts shows every database of the cluster: filter by database,
    since COMMIT PREPARED works only from a connection to the branch's database.
    """
    query = sa.text(
        "SELECT gid, EXTRACT(EPOCH FROM clock_timestamp() - prepared) AS age "
        "FROM pg_prepared_xacts "
        "WHERE database = current_database() AND starts_with(gid, :head) "
        "ORDER BY prepared"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"head": prefix + SEPARATOR}).all()
    branches = []
    for row in rows:
        parsed = parse_gid(prefix, row.gid)
        if parsed is not None:
            branches.append(PreparedBranch(row.gid, *parsed, age=float(row.age)))
    return branches


class Branch:
    """One participant's connection, two-phase transaction and Session."""

    def __init__(self, name: str, engine: Engine, gid: str) -> None:
        self.name = name
        self.engine = engine
        self.gid = gid
        self.prepared = False
        self.maybe_prepared = False  # PREPARE sent, its answer never came
        self.connection: Connection = engine.connect()
        try:
            self.twophase: TwoPhaseTransaction = self.connection.begin_twophase(gid)
        except BaseException:
            self.connection.close()
            raise
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The Session bound to the branch's connection (made on first use)."""
        if self._session is None:
            self._session = Session(bind=self.connection, expire_on_commit=False)
        return self._session

    def prepare(self) -> None:
        """Flush the Session, then PREPARE TRANSACTION (works on an empty one too)."""
        if self._session is not None:
            self._session.flush()
        try:
            self.twophase.prepare()
        except DBAPIError as exc:
            # An error the server answered carries a SQLSTATE and leaves nothing
            # prepared; without an answer the server may have prepared the branch.
            self.maybe_prepared = sqlstate(exc) is None
            raise
        except BaseException:
            self.maybe_prepared = True
            raise
        self.prepared = True

    def commit(self) -> Finish:
        """COMMIT PREPARED on the branch's own connection."""
        try:
            self.twophase.commit()
        except DBAPIError as exc:
            self.detach()
            code = sqlstate(exc)
            if code == UNDEFINED_OBJECT:
                return Finish.GONE
            if code == NOT_IN_PREREQUISITE_STATE:
                return Finish.BUSY
            raise
        return Finish.DONE

    def rollback(self) -> bool:
        """Roll the branch back; False when it may still be prepared.

        An unprepared branch ends rolled back: if the rollback fails the connection
        is dropped and the server rolls the transaction back itself. A branch whose
        PREPARE went unanswered may be prepared: its connection is dropped and it
        is left to recovery (False).
        """
        if self.maybe_prepared:
            self.detach()
            return False
        if not self.prepared:
            try:
                if self.twophase.is_active:
                    self.twophase.rollback()
            except DBAPIError:
                self.detach()
            return True
        try:
            self.twophase.rollback()  # ROLLBACK PREPARED
        except DBAPIError as exc:
            self.detach()
            if sqlstate(exc) == UNDEFINED_OBJECT:
                return True
            try:
                return (
                    finish_prepared(self.engine, self.gid, commit=False)
                    is not Finish.BUSY
                )
            except DBAPIError:
                return False
        return True

    def detach(self) -> None:
        """Drop the connection without touching a prepared branch (left to recovery)."""
        if self._session is not None:
            self._session.close()
        if not self.connection.closed:
            self.connection.invalidate()
            self.connection.close()

    def close(self) -> None:
        """Release the Session and return the connection to the pool."""
        if self.prepared and self.twophase.is_active:
            self.detach()  # closing would roll the prepared branch back
            return
        if self._session is not None:
            self._session.close()
        if not self.connection.closed:
            self.connection.close()
