"""Fixtures for txcoord: two participant databases, a third bystander, the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from txcoord import Coordinator

PARTICIPANT_DBS = {"a": "txtest_a", "b": "txtest_b"}
BYSTANDER_DB = "txtest_c"  # same cluster, not a participant
ROWS = 20
CHILD = Path(__file__).with_name("child.py")
REPO = Path(__file__).resolve().parents[2]

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS item (id int PRIMARY KEY, qty int NOT NULL DEFAULT 0)",
    # Deferred: a dangling item_id is only refused at PREPARE TRANSACTION.
    "CREATE TABLE IF NOT EXISTS note (id serial PRIMARY KEY, tx text NOT NULL, "
    "item_id int NOT NULL REFERENCES item (id) DEFERRABLE INITIALLY DEFERRED)",
]


@dataclass
class TxDatabases:
    """The participant engines, the bystander engine, the log engine and their URLs."""

    engines: dict[str, Engine]
    bystander: Engine
    log: Engine
    urls: dict[str, str]

    def coordinator(self, prefix: str, **options: Any) -> Coordinator:
        return Coordinator(self.engines, self.log, prefix=prefix, **options)

    def qty(self, participant: str, item_id: int = 1) -> int:
        with self.engines[participant].connect() as conn:
            query = sa.text("SELECT qty FROM item WHERE id = :id")
            return int(conn.execute(query, {"id": item_id}).scalar_one())

    def total(self, participant: str) -> int:
        with self.engines[participant].connect() as conn:
            return int(conn.execute(sa.text("SELECT sum(qty) FROM item")).scalar_one())

    def notes(self, participant: str) -> set[str]:
        with self.engines[participant].connect() as conn:
            return set(conn.execute(sa.text("SELECT tx FROM note")).scalars())

    def prepared(self, prefix: str) -> dict[str, list[str]]:
        """gids with this prefix per participant database."""
        out: dict[str, list[str]] = {}
        for name, engine in self.engines.items():
            with engine.connect() as conn:
                out[name] = list(
                    conn.execute(
                        sa.text(
                            "SELECT gid FROM pg_prepared_xacts WHERE database = "
                            "current_database() AND starts_with(gid, :p) ORDER BY gid"
                        ),
                        {"p": prefix + ":"},
                    ).scalars()
                )
        return out

    def decision_row(self, tx_id: str) -> Any:
        with self.log.connect() as conn:
            return conn.execute(
                sa.text("SELECT * FROM txcoord_decision WHERE tx_id = :t"), {"t": tx_id}
            ).one_or_none()

    def assert_unlocked(self, item_id: int = 1) -> None:
        """Every participant's row can be updated at once: no lock is left."""
        for engine in self.engines.values():
            with engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                conn.execute(
                    sa.text("SELECT 1 FROM item WHERE id = :i FOR UPDATE"),
                    {"i": item_id},
                )

    def is_locked(self, participant: str, item_id: int = 1) -> bool:
        with self.engines[participant].connect() as conn:
            conn.exec_driver_sql("SET lock_timeout = '100ms'")
            try:
                conn.execute(
                    sa.text("SELECT 1 FROM item WHERE id = :i FOR UPDATE"),
                    {"i": item_id},
                )
            except sa.exc.OperationalError:
                return True
            finally:
                conn.rollback()
        return False


def leave_prepared(engine: Engine, gid: str, *statements: str) -> None:
    """Leave a prepared transaction behind, as a crashed coordinator would."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(f"PREPARE TRANSACTION '{gid}'")


def rollback_all_prepared(engine: Engine) -> None:
    """Roll back every prepared transaction of the engine's database."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        gids = (
            conn.exec_driver_sql(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
            )
            .scalars()
            .all()
        )
        for gid in gids:
            conn.exec_driver_sql(f"ROLLBACK PREPARED '{gid}'")


@pytest.fixture(scope="session")
def tx_session_dbs(infra: Any) -> Iterator[TxDatabases]:
    names = [*PARTICIPANT_DBS.values(), BYSTANDER_DB]
    infra.cluster.create_databases(names)
    urls = {name: infra.cluster.url(db) for name, db in PARTICIPANT_DBS.items()}
    urls["log"] = infra.urls["txcoord"]
    engines = {
        name: sa.create_engine(urls[name], pool_size=20) for name in PARTICIPANT_DBS
    }
    bystander = sa.create_engine(infra.cluster.url(BYSTANDER_DB))
    for engine in [*engines.values(), bystander]:
        with engine.begin() as conn:
            for statement in SCHEMA:
                conn.exec_driver_sql(statement)
    yield TxDatabases(engines, bystander, infra.engine("txcoord"), urls)
    for engine in [*engines.values(), bystander]:
        rollback_all_prepared(engine)
        engine.dispose()


@pytest.fixture
def txdb(tx_session_dbs: TxDatabases) -> Iterator[TxDatabases]:
    """Fresh rows (qty 0) in each participant; nothing left prepared afterwards."""
    for engine in [*tx_session_dbs.engines.values(), tx_session_dbs.bystander]:
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE item, note RESTART IDENTITY")
            conn.exec_driver_sql(
                f"INSERT INTO item (id, qty) SELECT g, 0 FROM generate_series(1, {ROWS}) g"
            )
    yield tx_session_dbs
    for engine in [*tx_session_dbs.engines.values(), tx_session_dbs.bystander]:
        rollback_all_prepared(engine)


@pytest.fixture
def prefix() -> str:
    """A gid prefix of this test only, so recovery passes never see another test's."""
    return f"t{uuid.uuid4().hex[:8]}"


def run_child(
    args: dict[str, Any], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run tests/txcoord/child.py with a JSON argument."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(CHILD), json.dumps(args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False,
    )  # fmt: skip


def start_child(args: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip


Hook = Callable[[str, str], None]
