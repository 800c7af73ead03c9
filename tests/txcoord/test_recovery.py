"""Recovery against the coordinator, against another recovery, and around strangers."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid

import pytest

from tests.txcoord.conftest import leave_prepared, start_child
from txcoord import (
    AbortedByRecoveryError,
    Decision,
    DecisionLog,
    Observer,
    Outcome,
    Recovery,
)

ADD_ONE = "UPDATE item SET qty = qty + 1 WHERE id = {item}"
NOTE = "INSERT INTO note (tx, item_id) VALUES ('{tx}', {item})"


def paused_at(point):
    """An on_phase hook that stops at `point` until released."""
    reached, release = threading.Event(), threading.Event()

    def hook(where, _tx_id):
        if where == point:
            reached.set()
            assert release.wait(20)

    return hook, reached, release


def run_in_thread(coordinator, hook):
    result = {}

    def work():
        try:
            with coordinator.transaction(on_phase=hook) as tx:
                result["tx"] = tx
                for name in ("a", "b"):
                    tx.connection(name).exec_driver_sql(ADD_ONE.format(item=1))
                    tx.connection(name).exec_driver_sql(NOTE.format(tx=tx.id, item=1))
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    return thread, result


def test_recovery_aborts_first_then_the_coordinator_rolls_back(txdb, prefix):
    """Decision contention: recovery's ABORT wins, the coordinator's COMMIT loses."""
    coordinator = txdb.coordinator(prefix)
    hook, reached, release = paused_at("before_decision")
    thread, result = run_in_thread(coordinator, hook)
    assert reached.wait(20), result
    report = coordinator.recovery(abort_after=0).run_once()
    assert len(report.rolled_back) == 2
    release.set()
    thread.join(20)

    assert isinstance(result["error"], AbortedByRecoveryError)
    tx = result["tx"]
    assert tx.outcome is Outcome.ABORTED
    assert DecisionLog(txdb.log).get({tx.id}) == {tx.id: Decision.ABORT}
    assert (txdb.qty("a"), txdb.qty("b")) == (0, 0)
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    txdb.assert_unlocked()


@pytest.mark.parametrize("point", ["after_decision", "after_commit:a"])
def test_recovery_commits_first_then_the_coordinator_finishes(txdb, prefix, point):
    coordinator = txdb.coordinator(prefix)
    hook, reached, release = paused_at(point)
    thread, result = run_in_thread(coordinator, hook)
    assert reached.wait(20), result
    report = coordinator.recovery(abort_after=0).run_once()
    assert len(report.committed) == (2 if point == "after_decision" else 1)
    release.set()
    thread.join(20)

    assert "error" not in result
    tx = result["tx"]
    assert tx.outcome is Outcome.COMMITTED
    assert DecisionLog(txdb.log).get({tx.id}) == {tx.id: Decision.COMMIT}
    assert (txdb.qty("a"), txdb.qty("b")) == (1, 1)
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    txdb.assert_unlocked()


def test_coordinators_racing_a_recovery_loop_never_split(txdb, prefix):
    """Recovery with a zero timeout keeps aborting in-flight transactions.

    Whoever writes the decision row first wins; every transaction ends with
    both branches committed (COMMIT logged) or neither (no row or ABORT).
    """
    coordinator = txdb.coordinator(prefix, timeout=0)
    recovery = coordinator.recovery(abort_after=0)
    stop = threading.Event()
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(seed):
        rng = random.Random(seed)

        def dawdle(_point, _tx_id):  # widen every window a little
            time.sleep(rng.random() * 0.005)

        for _ in range(15):
            tx = coordinator.transaction(on_phase=dawdle)
            try:
                with tx:
                    for name in ("a", "b"):
                        item = rng.randint(1, 3)
                        tx.connection(name).exec_driver_sql(ADD_ONE.format(item=item))
                        tx.connection(name).exec_driver_sql(
                            NOTE.format(tx=tx.id, item=item)
                        )
            except AbortedByRecoveryError:
                pass
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)
            outcomes[tx.id] = tx.outcome.value if tx.outcome else "unknown"

    sweeper = threading.Thread(target=recovery.run, args=(0.0, stop))
    sweeper.start()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    stop.set()
    sweeper.join(20)
    recovery.run_once()

    assert errors == []
    decided = DecisionLog(txdb.log).get(set(outcomes))
    committed = {t for t, d in decided.items() if d is Decision.COMMIT}
    assert committed == {t for t, o in outcomes.items() if o == "committed"}
    assert txdb.notes("a") == txdb.notes("b") == committed
    assert txdb.total("a") == txdb.total("b") == len(committed)
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    assert 0 < len(committed) < len(outcomes)  # both sides won some races


def test_two_recovery_processes_resolve_each_branch_exactly_once(txdb, prefix):
    log = DecisionLog(txdb.log)
    commit_ids, undecided_ids = [], []
    for i in range(16):
        tx_id = uuid.uuid4().hex
        for name in ("a", "b"):
            leave_prepared(
                txdb.engines[name], f"{prefix}:{tx_id}:{name}",
                ADD_ONE.format(item=i + 1), NOTE.format(tx=tx_id, item=i + 1),
            )  # fmt: skip
        if i % 2:
            log.decide(tx_id, Decision.COMMIT, decided_by="test")
            commit_ids.append(tx_id)
        else:
            undecided_ids.append(tx_id)
    args = {
        "mode": "recover", "participants": {n: txdb.urls[n] for n in ("a", "b")},
        "log": txdb.urls["log"], "prefix": prefix, "start_at": time.time() + 2.0,
    }  # fmt: skip
    children = [start_child(args) for _ in range(2)]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        reports.append(json.loads(out))

    # Sorted lists, not sets: each gid shows up once across both reports.
    committed = [g for r in reports for g in r["committed"]]
    rolled_back = [g for r in reports for g in r["rolled_back"]]
    assert sorted(committed) == sorted(
        f"{prefix}:{t}:{n}" for t in commit_ids for n in "ab"
    )
    assert sorted(rolled_back) == sorted(
        f"{prefix}:{t}:{n}" for t in undecided_ids for n in "ab"
    )
    assert [r["failed"] for r in reports] == [[], []]
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    assert txdb.notes("a") == txdb.notes("b") == set(commit_ids)
    assert log.get(set(undecided_ids)) == dict.fromkeys(undecided_ids, Decision.ABORT)
    txdb.assert_unlocked()


def test_other_databases_and_other_prefixes_are_never_touched(txdb, prefix):
    strangers = {
        "other prefix": (txdb.engines["a"], f"other:{uuid.uuid4().hex}:a"),
        "longer prefix": (txdb.engines["b"], f"{prefix}2:{uuid.uuid4().hex}:b"),
        "other database": (txdb.bystander, f"{prefix}:{uuid.uuid4().hex}:a"),
    }
    for engine, gid in strangers.values():
        leave_prepared(engine, gid, ADD_ONE.format(item=2))
    DecisionLog(txdb.log).decide(
        strangers["other database"][1].split(":")[1], Decision.COMMIT, decided_by="test"
    )

    report = txdb.coordinator(prefix).recovery(abort_after=0).run_once()

    assert report.resolved == 0
    assert report.waiting == report.concurrent == report.failed == []
    for engine, gid in strangers.values():
        with engine.connect() as conn:
            assert (
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_prepared_xacts WHERE gid = %(gid)s",
                    {"gid": gid},
                ).scalar_one()
                == 1
            )
    assert (txdb.qty("a", 2), txdb.qty("b", 2)) == (0, 0)


class FailsOnce(Observer):
    """An observer whose first report raises, as a broken metrics backend would."""

    def __init__(self):
        self.failed = threading.Event()
        self.passes = 0

    def in_doubt(self, participant, branches):
        self.passes += 1
        if not self.failed.is_set():
            self.failed.set()
            raise ValueError("the metrics backend refused a sample")


def test_the_recovery_loop_outlives_a_pass_that_failed(txdb, prefix, caplog):
    observer = FailsOnce()
    recovery = Recovery(
        txdb.engines, txdb.log, prefix=prefix, abort_after=3600, observer=observer
    )
    stop = threading.Event()
    loop = threading.Thread(target=recovery.run, args=(0.05, stop))
    loop.start()
    try:
        assert observer.failed.wait(10)
        # Work that only a pass after the failure can do.
        tx_id = uuid.uuid4().hex
        leave_prepared(txdb.engines["a"], f"{prefix}:{tx_id}:a", ADD_ONE.format(item=1))
        DecisionLog(txdb.log).decide(tx_id, Decision.COMMIT, decided_by="test")
        deadline = time.monotonic() + 10
        while txdb.prepared(prefix)["a"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert loop.is_alive()
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    assert txdb.qty("a") == 1
    assert "txcoord recovery pass failed" in caplog.text
    assert "the metrics backend refused a sample" in caplog.text


def test_the_recovery_loop_stops_when_asked_without_waiting_out_its_interval(
    txdb, prefix
):
    observer = FailsOnce()
    recovery = Recovery(
        txdb.engines, txdb.log, prefix=prefix, abort_after=3600, observer=observer
    )
    stop = threading.Event()
    loop = threading.Thread(target=recovery.run, args=(3600, stop))
    loop.start()
    assert observer.failed.wait(10)  # the first pass ran (and failed)
    stop.set()
    loop.join(5)
    assert not loop.is_alive()
    assert observer.passes == 1
