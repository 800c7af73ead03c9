"""Pruning the decision log: a decision goes once no branch of it can be prepared.

Why a scan is enough for a COMMIT: the coordinator logs COMMIT only after every
branch is prepared, and a prepared branch stays in ``pg_prepared_xacts`` until it is
committed or rolled back. So when a scan of every participant, made after the
decision, lists no branch of the transaction, no branch of it will ever need the
decision again. An ABORT may be logged while a branch's PREPARE is still in flight
(its answer lost); such a branch, found later without a decision, is rolled back by
recovery after ``abort_after``, which is what the ABORT said. The one thing a pruned
ABORT cannot stop is its coordinator writing COMMIT after all, which only a
coordinator stalled between PREPARE and its decision for longer than the retention
could do: keep the retention far above the transaction timeout (days, not minutes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from txcoord._log import decisions
from txcoord._participant import list_prepared


def prune_decisions(
    participants: Mapping[str, Engine],
    log: Engine,
    *,
    prefix: str,
    older_than: dt.timedelta,
) -> int:
    """Delete decisions older than `older_than` with no branch left prepared; count them.

    Every participant is scanned first (an unreachable one raises, and nothing is
    deleted); then one DELETE removes the decisions logged before ``now() -
    older_than`` on the log's clock whose transaction has no prepared branch in the
    scan. A decision naming a participant outside `participants` is kept. Give every
    participant that uses this prefix with this log, as for ``Recovery``.
    """
    still_prepared: set[str] = set()
    for engine in participants.values():
        still_prepared.update(b.tx_id for b in list_prepared(engine, prefix))
    names = postgresql.ARRAY(sa.Text)
    known = sa.literal(sorted(participants), type_=names)
    listed = sa.func.string_to_array(decisions.c.participants, ",", type_=names)
    statement = sa.delete(decisions).where(
        decisions.c.decided_at < sa.func.now() - older_than,
        sa.or_(decisions.c.participants.is_(None), listed.contained_by(known)),
    )
    if still_prepared:
        statement = statement.where(decisions.c.tx_id.not_in(sorted(still_prepared)))
    with log.begin() as conn:
        deleted: int = conn.execute(statement).rowcount
    return deleted
