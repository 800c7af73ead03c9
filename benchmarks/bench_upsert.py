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

import argparse
import datetime as dt
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from chomik.db import utcnow
from chomik.idempotency import _CLAIM, install_idempotency
from chomik.settings import embedded_database_url

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


def timed(
    connection: sa.Connection,
    run: Callable[[sa.Connection, str, dt.datetime], object],
    calls: int,
) -> tuple[float, float]:
    """CPU and wall milliseconds per call."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        run(connection, uuid.uuid4().hex, utcnow())
    per = 1000 / calls
    return (time.process_time() - cpu) * per, (time.perf_counter() - wall) * per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=embedded_database_url("postgres"),
        help="any PostgreSQL database (default: that of a running `chomik run`)",
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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
        print(f"idempotency key claim, {args.calls} calls per turn, one connection")
        print(f"{'turn':<5} {'way':<16} {'CPU ms/call':>12} {'wall ms/call':>13}")
        ratios = []
        for turn in range(1, args.rounds + 1):
            old = timed(connection, built_per_call, args.calls)
            new = timed(connection, compiled, args.calls)
            ratios.append(old[0] / new[0])
            for way, (cpu, wall) in (("built per call", old), ("compiled once", new)):
                print(f"{turn:<5} {way:<16} {cpu:12.3f} {wall:13.3f}")
        transaction.rollback()
    print(f"CPU per call, built per call / compiled once: x{min(ratios):.1f} to "
          f"x{max(ratios):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
