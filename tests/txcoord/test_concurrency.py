"""Many threads running coordinated transactions on the same few rows."""

from __future__ import annotations

import random
import threading

from txcoord import Decision, DecisionLog, Outcome

HOT_ROWS = 3


def test_threads_on_overlapping_rows_lose_no_update(txdb, prefix):
    coordinator = txdb.coordinator(prefix)
    outcomes: list[Outcome | None] = []
    tx_ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(seed):
        rng = random.Random(seed)
        for _ in range(20):
            try:
                with coordinator.transaction() as tx:
                    for name in ("a", "b"):
                        conn = tx.connection(name)
                        conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
                        conn.exec_driver_sql(
                            "UPDATE item SET qty = qty + 1 WHERE id = %(id)s",
                            {"id": rng.randint(1, HOT_ROWS)},
                        )
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)
            with lock:
                outcomes.append(tx.outcome)
                tx_ids.append(tx.id)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    assert errors == []
    assert outcomes == [Outcome.COMMITTED] * 160
    assert txdb.total("a") == txdb.total("b") == 160
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    decided = DecisionLog(txdb.log).get(set(tx_ids))
    assert set(decided.values()) == {Decision.COMMIT}
    assert len(decided) == 160
    txdb.assert_unlocked()
