"""One PostgreSQL upsert, built and compiled per call against `chomik.db.compiled_once`.

SQLAlchemy 2.0 gives a PostgreSQL `INSERT ... ON CONFLICT` no cache key, so it is
compiled again on every execution. This runs the idempotency key claim (the upsert
of every `POST /orders`) both ways on one connection, in turns, inside a transaction
that is rolled back (the table is a temporary copy), and prints the CPU and wall
time per statement and their ratio.

Run: .venv/bin/python benchmarks/bench_upsert.py [--database-url URL] [--calls 2000]
(the default URL is the cluster `chomik run` starts)
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from harness import in_turns, statement_args
from sqlalchemy.dialects.postgresql import insert

from chomik.db import utcnow
from chomik.idempotency import _CLAIM, install_idempotency

KEYS = install_idempotency(sa.MetaData())
TTL = dt.timedelta(hours=1)


def built_per_call(connection: sa.Connection, key: str, now: dt.datetime) -> object:
    """The claim as it was written before `compiled_once`: a new statement per call."""
    statement = insert(KEYS).values(
        scope="bench", key=key, fingerprint="f" * 64, created_at=now,
        expires_at=now + TTL,
    )  # fmt: skip
    upsert = statement.on_conflict_do_update(
        index_elements=[KEYS.c.scope, KEYS.c.key],
        set_={
            "fingerprint": statement.excluded.fingerprint,
            "response_status": None,
            "response_body": None,
            "created_at": statement.excluded.created_at,
            "expires_at": statement.excluded.expires_at,
        },
        where=KEYS.c.expires_at <= now,
    ).returning(KEYS.c.key)
    return connection.execute(upsert).first()


def compiled(connection: sa.Connection, key: str, now: dt.datetime) -> object:
    """The claim as `chomik.idempotency` runs it: compiled once, at import."""
    values = {"scope": "bench", "key": key, "fingerprint": "f" * 64}
    return connection.execute(
        _CLAIM, {**values, "now": now, "expires_at": now + TTL}
    ).first()


def main() -> None:
    args = statement_args(__doc__, calls=2000)
    engine = sa.create_engine(args.database_url)
    with engine.connect() as connection, connection.begin() as transaction:
        connection.execute(
            sa.text(
                "CREATE TEMPORARY TABLE idempotency_keys (scope varchar(300), "
                "key varchar(255), fingerprint varchar(64) NOT NULL, "
                "response_status smallint, response_body json, "
                "created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, "
                "PRIMARY KEY (scope, key))"
            )
        )
        in_turns(
            "idempotency key claim",
            {
                "built per call": lambda: built_per_call(
                    connection, uuid.uuid4().hex, utcnow()
                ),
                "compiled once": lambda: compiled(
                    connection, uuid.uuid4().hex, utcnow()
                ),
            },
            calls=args.calls,
            rounds=args.rounds,
        )
        transaction.rollback()


if __name__ == "__main__":
    main()
