"""The coordinator's commit and abort paths against real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chomik import migrating
from chomik.infra import private_cluster
from tests.txcoord.conftest import leave_prepared, rollback_all_prepared
from txcoord import (
    ConfigurationError,
    Coordinator,
    Decision,
    Outcome,
    OutcomeUnknownError,
    OutOfPreparedSlotsError,
    PrepareFailedError,
    PrometheusObserver,
    TransactionAbortedError,
)

ADD_ONE = sa.text("UPDATE item SET qty = qty + 1 WHERE id = 1")


def run(tx, body):
    """Run `body(tx)` inside the transaction's with block."""
    with tx:
        body(tx)


def add_one_both(tx):
    tx.session("a").execute(ADD_ONE)
    tx.session("b").execute(ADD_ONE)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(primary_key=True)
    tx: Mapped[str]
    item_id: Mapped[int]


def test_happy_path_commits_both_and_leaves_nothing_prepared(txdb, prefix):
    coordinator = txdb.coordinator(prefix)
    with coordinator.transaction() as tx:
        tx.session("a").execute(ADD_ONE)
        tx.session("b").execute(ADD_ONE)
        tx.session("b").add(Note(tx=tx.id, item_id=1))  # flushed at prepare

    assert tx.outcome is Outcome.COMMITTED
    assert (txdb.qty("a"), txdb.qty("b")) == (1, 1)
    assert txdb.notes("b") == {tx.id}
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    row = txdb.decision_row(tx.id)
    assert row.decision == "COMMIT"
    assert row.participants == "a,b"


def test_failure_in_the_block_rolls_back_everything(txdb, prefix):
    def body(tx):
        add_one_both(tx)
        raise ValueError("caller gave up")

    tx = txdb.coordinator(prefix).transaction()
    with pytest.raises(ValueError, match="caller"):
        run(tx, body)

    assert tx.outcome is Outcome.ABORTED
    assert (txdb.qty("a"), txdb.qty("b")) == (0, 0)
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    assert txdb.decision_row(tx.id) is None
    txdb.assert_unlocked()


@pytest.mark.parametrize("failing", ["a", "b"])
def test_failure_at_prepare_rolls_back_everything(txdb, prefix, failing):
    """A deferred foreign key only fails at PREPARE TRANSACTION: first or second branch."""

    def body(tx):
        for name in ("a", "b"):
            tx.session(name).execute(ADD_ONE)
            item = 999 if name == failing else 1  # no item 999: refused at prepare
            tx.session(name).add(Note(tx=tx.id, item_id=item))

    tx = txdb.coordinator(prefix).transaction()
    with pytest.raises(PrepareFailedError) as caught:
        run(tx, body)

    assert caught.value.participant == failing
    assert caught.value.tx_id == tx.id
    assert isinstance(caught.value, TransactionAbortedError)
    assert tx.outcome is Outcome.ABORTED
    assert (txdb.qty("a"), txdb.qty("b")) == (0, 0)
    assert txdb.notes("a") == txdb.notes("b") == set()
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    assert txdb.decision_row(tx.id) is None
    txdb.assert_unlocked()


def test_participant_that_wrote_nothing_is_prepared_and_committed(txdb, prefix):
    seen = []
    coordinator = txdb.coordinator(prefix, on_phase=lambda point, _: seen.append(point))
    with coordinator.transaction() as tx:
        tx.session("a").execute(ADD_ONE)
        tx.session("b")  # opened, never used: an empty transaction

    assert tx.outcome is Outcome.COMMITTED
    assert seen == [
        "after_prepare:a", "after_prepare:b", "before_decision", "after_decision",
        "after_commit:a", "after_commit:b",
    ]  # fmt: skip
    assert (txdb.qty("a"), txdb.qty("b")) == (1, 0)
    assert txdb.prepared(prefix) == {"a": [], "b": []}


def test_session_commit_inside_the_block_does_not_commit_the_branch(txdb, prefix):
    def body(tx):
        session = tx.session("a")
        session.add(Note(tx=tx.id, item_id=1))
        session.commit()  # joins the branch: flushes, commits nothing
        raise ValueError("then the block fails")

    with pytest.raises(ValueError, match="block fails"):
        run(txdb.coordinator(prefix).transaction(), body)
    assert txdb.notes("a") == set()
    assert txdb.prepared(prefix) == {"a": [], "b": []}


def test_unreachable_log_leaves_the_outcome_to_recovery(txdb, prefix, infra):
    """The COMMIT row may or may not be written: never roll back, let recovery settle."""
    broken_log = sa.create_engine(infra.cluster.url("txtest_no_such_database"))
    coordinator = Coordinator(
        txdb.engines, broken_log, prefix=prefix, check_server=False,
        commit_retries=1, retry_delay=0.01,
    )  # fmt: skip
    tx = coordinator.transaction()
    with pytest.raises(OutcomeUnknownError) as caught:
        run(tx, add_one_both)
    broken_log.dispose()
    assert caught.value.tx_id == tx.id
    assert txdb.prepared(prefix) == {n: [f"{prefix}:{tx.id}:{n}"] for n in ("a", "b")}

    report = txdb.coordinator(prefix).recovery(abort_after=0).run_once()
    assert len(report.rolled_back) == 2
    assert txdb.decision_row(tx.id).decision == "ABORT"
    assert (txdb.qty("a"), txdb.qty("b")) == (0, 0)
    txdb.assert_unlocked()


def test_missing_decision_table_fails_at_construction(txdb):
    with pytest.raises(ConfigurationError, match="txcoord_decision"):
        Coordinator(txdb.engines, txdb.bystander)


def test_log_database_without_synchronous_commit_fails_at_construction(txdb):
    unsafe_log = sa.create_engine(
        txdb.urls["log"], connect_args={"options": "-c synchronous_commit=off"}
    )
    try:
        with pytest.raises(ConfigurationError, match="synchronous_commit = off"):
            Coordinator(txdb.engines, unsafe_log)
    finally:
        unsafe_log.dispose()


def test_log_database_with_synchronous_commit_on_is_accepted(txdb):
    assert txdb.coordinator("ok").log.synchronous_commit() == "on"


def test_a_transaction_that_touched_nothing_logs_nothing(txdb, prefix):
    with txdb.coordinator(prefix).transaction() as tx:
        pass
    assert tx.outcome is Outcome.COMMITTED
    assert txdb.decision_row(tx.id) is None


def test_unknown_participant_and_bad_names_are_refused(txdb, prefix):
    tx = txdb.coordinator(prefix).transaction()
    with pytest.raises(ConfigurationError, match="unknown txcoord participant 'c'"):
        run(tx, lambda tx: tx.session("c"))
    with pytest.raises(ConfigurationError, match="prefix"):
        txdb.coordinator("bad:prefix")
    with pytest.raises(ConfigurationError, match="participant name"):
        Coordinator({"p" * 65: txdb.engines["a"]}, txdb.log)
    longest = Coordinator({"p" * 64: txdb.engines["a"]}, txdb.log, prefix="x" * 64)
    with longest.transaction() as tx:
        tx.session("p" * 64).execute(ADD_ONE)
    assert len(f"{'x' * 64}:{tx.id}:{'p' * 64}".encode()) < 200
    assert txdb.qty("a") == 1


def test_out_of_prepared_slots_is_a_clear_error_and_rolls_back(txdb, prefix):
    """Fill every slot but one: the first branch prepares, the second cannot."""
    engine = txdb.bystander
    with engine.connect() as conn:
        slots = int(conn.exec_driver_sql("SHOW max_prepared_transactions").scalar_one())
        used = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_prepared_xacts"
        ).scalar_one()
    for _ in range(slots - used - 1):
        leave_prepared(engine, f"filler:{uuid.uuid4().hex}", "SELECT 1")
    tx = txdb.coordinator(prefix).transaction()
    try:
        with pytest.raises(OutOfPreparedSlotsError, match="53200") as caught:
            run(tx, add_one_both)
    finally:
        rollback_all_prepared(engine)
    assert caught.value.participant == "b"
    assert "max_prepared_transactions" in str(caught.value)
    assert (txdb.qty("a"), txdb.qty("b")) == (0, 0)
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    txdb.assert_unlocked()


def test_server_without_prepared_transactions_fails_at_construction(txdb):
    with private_cluster(
        "txcoord-noprep-", durable=False, max_prepared_transactions=0
    ) as cluster:
        engine = sa.create_engine(cluster.url())
        with pytest.raises(
            ConfigurationError, match="max_prepared_transactions = 0"
        ) as e:
            Coordinator({"a": txdb.engines["a"], "nope": engine}, txdb.log)
        assert "set max_prepared_transactions" in str(e.value)
        engine.dispose()


def test_prometheus_observer_counts_and_times(txdb, prefix):
    registry = CollectorRegistry()
    coordinator = txdb.coordinator(prefix, observer=PrometheusObserver(registry))
    run(coordinator.transaction(), add_one_both)

    def body(tx):
        tx.session("a").execute(ADD_ONE)
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run(coordinator.transaction(), body)
    leave_prepared(txdb.engines["a"], f"{prefix}:{uuid.uuid4().hex}:a", "SELECT 1")
    leave_prepared(txdb.engines["b"], f"{prefix}:{uuid.uuid4().hex}:b", "SELECT 1")
    coordinator.recovery(abort_after=3600, in_doubt_after=0).run_once()

    def value(name, **labels):
        return registry.get_sample_value(name, labels)

    assert value("txcoord_commits_total") == 1
    assert value("txcoord_aborts_total", reason="block") == 1
    assert value("txcoord_in_doubt", participant="a") == 1
    for phase in ("prepare", "decide", "commit"):
        assert value("txcoord_phase_seconds_count", phase=phase) == 1

    coordinator.recovery(abort_after=0).run_once()
    assert value("txcoord_recovered_aborts_total", participant="a") == 1
    assert value("txcoord_recovered_aborts_total", participant="b") == 1
    assert value("txcoord_in_doubt", participant="a") == 0


def test_decision_log_migration_matches_metadata(infra):
    migrating.check("txcoord", infra.urls["txcoord"])


def test_first_decision_wins(txdb):
    from txcoord import DecisionLog

    log = DecisionLog(txdb.log)
    tx_id = uuid.uuid4().hex
    assert log.decide(tx_id, Decision.ABORT, decided_by="recovery") is Decision.ABORT
    assert (
        log.decide(tx_id, Decision.COMMIT, decided_by="coordinator") is Decision.ABORT
    )
    assert log.get({tx_id}) == {tx_id: Decision.ABORT}
