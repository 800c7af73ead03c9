"""A payment process for the crash tests, run as ``python child.py '<json>'``.

Modes (the bank mock runs in-process, on the shared bank database):

- ``apply``: take one queued bank callback through the worker's handler, with
  the coordinator SIGKILLing this process at the injection point ``crash_at``.
- ``poll``: run the poller job over and over (and txcoord's recovery beside it,
  as a worker's scheduler does) until ``stop_after`` seconds passed or nothing is
  PENDING; the bank answers slowly (``bank_delay``) so a batch takes a while.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa

from apps.payment.consumers import consumers
from apps.payment.jobs import payment_jobs, run_recovery
from apps.payment.services import Ports, build_ports
from apps.payment.settings import PaymentSettings
from chomik.db import make_session_factory
from chomik.jobs import JobContext
from chomik.messaging.consuming import InboxEntry
from chomik.messaging.kafka import Envelope
from clients.bank import BankClient
from clients.events import BankCallbackReceived
from mocks.bank import create_app as create_bank_app
from mocks.bank.settings import BankSettings
from tests.clients.wsgi import mounted

BANK = "http://bank.test"


def slow(app: Any, delay: float) -> Any:
    def wrapped(environ: Any, start_response: Any) -> Any:
        time.sleep(delay)
        return app(environ, start_response)

    return wrapped


def ports_of(args: dict[str, Any]) -> Ports:
    settings = PaymentSettings(**args["settings"])
    bank_app = slow(create_bank_app(BankSettings(**args["bank"])), args["bank_delay"])
    bank = BankClient(
        BANK, merchant_token=settings.bank_merchant_token,
        merchant_account_id=uuid.UUID(settings.bank_merchant_account_id),
        transport=mounted(bank_app, BANK), retries=0,
    )  # fmt: skip
    return build_ports(settings, bank=bank, check_servers=True)


def apply(args: dict[str, Any]) -> None:
    ports = ports_of(args)

    def on_phase(point: str, tx_id: str) -> None:
        if point == args["crash_at"]:
            os.kill(os.getpid(), signal.SIGKILL)

    ports.coordinator.on_phase = on_phase
    envelope = Envelope.from_json(args["envelope"])
    entry = InboxEntry("chomik-payment", envelope.id, "bank.callbacks", envelope.type)
    handler = consumers(ports)[BankCallbackReceived.type]
    print(handler(entry, envelope), flush=True)


def poll(args: dict[str, Any]) -> None:
    ports = ports_of(args)
    stop = threading.Event()
    context = JobContext(
        settings=ports.settings,
        sessions=make_session_factory(ports.payment_engine),
        replica_id=args["replica_id"],
    )
    (job,) = [j for j in payment_jobs(ports) if j.name == "poll_pending_payments"]

    def recover() -> None:
        while not stop.wait(0.5):
            run_recovery(ports)

    threading.Thread(target=recover, daemon=True).start()
    print("polling", flush=True)
    deadline = time.monotonic() + args["stop_after"]
    while time.monotonic() < deadline and pending(ports):
        job.func(context)
        time.sleep(0.2)
    stop.set()
    print("finished", flush=True)


def pending(ports: Ports) -> int:
    with ports.payment_engine.connect() as conn:
        return int(
            conn.scalar(
                sa.text("SELECT count(*) FROM payments WHERE status = 'PENDING'")
            )
            or 0
        )


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    {"apply": apply, "poll": poll}[arguments["mode"]](arguments)
