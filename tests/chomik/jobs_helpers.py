"""Shared pieces of the job tests: the due-items table, a row handler, readers."""

from __future__ import annotations

import contextlib
import datetime as dt
import queue

import sqlalchemy as sa

from chomik.db import Listener, utcnow
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


@contextlib.contextmanager
def wake_ups(engine, channel):
    """Listen on `channel` with the kit's `Listener`; yield `woken()`, which waits up
    to 2 s for a wake-up (a notification arrives after its commit, not with it) and
    says how many came."""
    calls = queue.SimpleQueue()
    listener = Listener(engine, {channel}, calls.put)
    listener.start()
    try:
        calls.get(timeout=10)  # the wake-up every start of listening gives

        def woken():
            count = 0
            with contextlib.suppress(queue.Empty):
                calls.get(timeout=2)
                count = 1
                while True:
                    calls.get_nowait()
                    count += 1
            return count

        yield woken
    finally:
        listener.stop()
