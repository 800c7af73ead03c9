"""Pruning the decision log: old decisions go, never one whose branch is prepared."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from tests.txcoord.conftest import leave_prepared
from txcoord import Decision, DecisionLog, prune_decisions

WEEK = dt.timedelta(days=7)


def decide(txdb, decision, participants=("a", "b"), *, days_ago=8):
    tx_id = uuid.uuid4().hex
    DecisionLog(txdb.log).decide(
        tx_id, decision, decided_by="test", participants=list(participants) or None
    )
    with txdb.log.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE txcoord_decision SET decided_at = now() - make_interval("
                "days => :days) WHERE tx_id = :tx"
            ),
            {"days": days_ago, "tx": tx_id},
        )
    return tx_id


def logged(txdb, *tx_ids):
    return set(DecisionLog(txdb.log).get(set(tx_ids)))


def test_old_decisions_go_but_never_one_with_a_branch_still_prepared(txdb, prefix):
    finished = decide(txdb, Decision.COMMIT)
    aborted = decide(txdb, Decision.ABORT, participants=())  # as recovery logs it
    in_doubt = decide(txdb, Decision.COMMIT)
    leave_prepared(
        txdb.engines["b"],
        f"{prefix}:{in_doubt}:b",
        "UPDATE item SET qty = qty + 1 WHERE id = 1",
    )
    young = decide(txdb, Decision.COMMIT, days_ago=1)
    elsewhere = decide(txdb, Decision.COMMIT, participants=("a", "zeta"))
    every = (finished, aborted, in_doubt, young, elsewhere)

    pruned = prune_decisions(txdb.engines, txdb.log, prefix=prefix, older_than=WEEK)

    assert pruned >= 2  # older rows of other tests sharing the log may go too
    assert logged(txdb, *every) == {in_doubt, young, elsewhere}
    # Recovery still finds the decision and commits the branch; then it can go.
    report = txdb.coordinator(prefix).recovery(abort_after=3600).run_once()
    assert report.committed == [f"{prefix}:{in_doubt}:b"]
    assert txdb.qty("b") == 1
    prune_decisions(txdb.engines, txdb.log, prefix=prefix, older_than=WEEK)
    assert logged(txdb, *every) == {young, elsewhere}


def test_an_unreachable_participant_prunes_nothing(txdb, prefix, infra):
    old = decide(txdb, Decision.COMMIT)
    gone = sa.create_engine(infra.cluster.url("no_such_database"))
    with pytest.raises(sa.exc.OperationalError):
        prune_decisions(
            {**txdb.engines, "gone": gone}, txdb.log, prefix=prefix, older_than=WEEK
        )
    gone.dispose()
    assert logged(txdb, old) == {old}
    prune_decisions(txdb.engines, txdb.log, prefix=prefix, older_than=WEEK)
    assert logged(txdb, old) == set(), "with every participant reachable, it goes"
