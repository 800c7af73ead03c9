"""Shared pieces of the job tests: the due-items table, a row handler, readers."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from chomik.db import utcnow
from tests.chomik.messaging_helpers import DUE_ITEMS

LEASE = dt.timedelta(seconds=30)


def due_rows(engine):
    with engine.connect() as conn:
        return {
            row.id: row
            for row in conn.execute(sa.select(DUE_ITEMS).order_by(DUE_ITEMS.c.id))
        }


def runs(engine):
    with engine.connect() as conn:
        return (
            conn.execute(sa.text("SELECT item_id FROM test_item_runs ORDER BY serial"))
            .scalars()
            .all()
        )


def record_run(session, row):
    """A row handler: one run row per call, due again in an hour."""
    session.execute(
        sa.text(
            "INSERT INTO test_item_runs (item_id, round, replica, token)"
            " VALUES (:id, :round, 'test', :token)"
        ),
        {"id": row.id, "round": row.round, "token": row.claim_token},
    )
    return utcnow() + dt.timedelta(hours=1)


def add_items(engine, count, *, due=True):
    when = "now() - interval '1 second'" if due else "now() + interval '1 hour'"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO test_due_items (id, next_check_at)"
                f" SELECT g, {when} FROM generate_series(1, :n) g"
            ),
            {"n": count},
        )
