"""A child process for txcoord's crash and concurrency tests.

Run as ``python child.py '<json>'``. Modes:

- ``coordinate``: one coordinated transaction adding 1 to item 1 in every
  participant; it prints the transaction id first, and SIGKILLs itself at the
  injection point ``crash_at`` (the library's ``on_phase`` test seam).
- ``recover``: waits until ``start_at`` (epoch seconds), runs one recovery
  pass and prints its report as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict

import sqlalchemy as sa

from txcoord import Coordinator, Recovery


def coordinate(args: dict[str, object]) -> None:
    urls = args["participants"]
    assert isinstance(urls, dict)
    engines = {name: sa.create_engine(url) for name, url in urls.items()}
    crash_at = args["crash_at"]

    def on_phase(point: str, tx_id: str) -> None:
        if point == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    coordinator = Coordinator(
        engines, sa.create_engine(str(args["log"])), prefix=str(args["prefix"]),
        on_phase=on_phase,
    )  # fmt: skip
    with coordinator.transaction() as tx:
        print(tx.id, flush=True)
        for name in engines:
            tx.session(name).execute(
                sa.text("UPDATE item SET qty = qty + 1 WHERE id = 1")
            )
            tx.session(name).execute(
                sa.text("INSERT INTO note (tx, item_id) VALUES (:tx, 1)"), {"tx": tx.id}
            )
    print("finished", flush=True)


def recover(args: dict[str, object]) -> None:
    urls = args["participants"]
    assert isinstance(urls, dict)
    engines = {name: sa.create_engine(url) for name, url in urls.items()}
    recovery = Recovery(
        engines, sa.create_engine(str(args["log"])), prefix=str(args["prefix"]),
        abort_after=0.0,
    )  # fmt: skip
    for engine in [*engines.values(), recovery.log.engine]:  # before the start line
        engine.connect().close()
    start_at = args["start_at"]
    assert isinstance(start_at, float)
    time.sleep(max(0.0, start_at - time.time()))
    report = recovery.run_once()
    print(json.dumps(asdict(report)), flush=True)


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    {"coordinate": coordinate, "recover": recover}[arguments["mode"]](arguments)
