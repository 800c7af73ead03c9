"""Each failure window: a real coordinator process is SIGKILLed there, then recovery runs."""

from __future__ import annotations

import signal

import pytest

from tests.txcoord.conftest import run_child
from txcoord import Decision, DecisionLog

WINDOWS = [
    # injection point, branches left prepared, the outcome recovery must reach
    ("after_prepare:a", {"a"}, Decision.ABORT),
    ("before_decision", {"a", "b"}, Decision.ABORT),
    ("after_decision", {"a", "b"}, Decision.COMMIT),
    ("after_commit:a", {"b"}, Decision.COMMIT),
]


@pytest.mark.parametrize(("point", "left_prepared", "outcome"), WINDOWS)
def test_crash_window_recovers_all_or_nothing(
    txdb, prefix, point, left_prepared, outcome
):
    child = run_child(
        {"mode": "coordinate", "participants": {n: txdb.urls[n] for n in ("a", "b")},
         "log": txdb.urls["log"], "prefix": prefix, "crash_at": point},
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    tx_id = child.stdout.split()[0]
    assert "finished" not in child.stdout

    prepared = txdb.prepared(prefix)
    assert {name for name, gids in prepared.items() if gids} == left_prepared
    for name in left_prepared:
        assert prepared[name] == [f"{prefix}:{tx_id}:{name}"]
        assert txdb.is_locked(name)  # an in-doubt branch holds its row lock
    log = DecisionLog(txdb.log)
    logged_before = log.get({tx_id}).get(tx_id)
    assert logged_before is (Decision.COMMIT if outcome is Decision.COMMIT else None)

    # Within the transaction timeout recovery only finishes decided branches.
    patient = txdb.coordinator(prefix).recovery(abort_after=3600).run_once()
    if outcome is Decision.COMMIT:
        assert len(patient.committed) == len(left_prepared)
    else:
        assert len(patient.waiting) == len(left_prepared)
        assert patient.resolved == 0
        # Past the timeout, it logs ABORT and rolls back.
        report = txdb.coordinator(prefix).recovery(abort_after=0).run_once()
        assert len(report.rolled_back) == len(left_prepared)

    assert txdb.prepared(prefix) == {"a": [], "b": []}
    assert log.get({tx_id}) == {tx_id: outcome}
    expected = 1 if outcome is Decision.COMMIT else 0
    assert (txdb.qty("a"), txdb.qty("b")) == (expected, expected)
    assert txdb.notes("a") == txdb.notes("b") == ({tx_id} if expected else set())
    txdb.assert_unlocked()
