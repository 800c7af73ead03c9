"""`emit` of one event to the outbox, its statement built per call against built once.

Every event (an order placed, a reservation made, a payment settled) goes through
`chomik.messaging.outbox.emit_envelope`: an INSERT that notifies the relays in the
same round trip. This writes the same event both ways, in turns, on one connection
inside a transaction that is rolled back (the outbox is a temporary copy), and
prints the CPU and wall time per event (the envelope's making included) and their
ratio.

Run: .venv/bin/python benchmarks/bench_emit.py [--database-url URL] [--calls 3000]
(the default URL is the cluster `chomik run` starts)
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik.messaging import outbox
from chomik.messaging.kafka import Envelope, envelope_of
from chomik.settings import embedded_database_url
from clients.events import OrderItem, OrderPlaced

EVENT = OrderPlaced(
    order_id=str(uuid.uuid4()), buyer_id=str(uuid.uuid4()),
    address_id=str(uuid.uuid4()), currency="PLN", total=Decimal("149.99"),
    items=(OrderItem(str(uuid.uuid4()), 2), OrderItem(str(uuid.uuid4()), 1)),
)  # fmt: skip


def built_per_call(session: Session, envelope: Envelope, *, topic: str) -> None:
    """`emit_envelope` as it was written before: new statements per call."""
    insert = sa.insert(outbox._outbox).values(
        id=envelope.id, topic=topic, key=envelope.key, type=envelope.type,
        payload=envelope.to_json(),
    )  # fmt: skip
    emitted = insert.returning(outbox._outbox.c.seq).cte("emitted")
    session.execute(
        sa.select(sa.func.pg_notify(outbox.NOTIFY_CHANNEL, "")).select_from(emitted)
    )


def timed(
    session: Session, write: Callable[..., None], calls: int
) -> tuple[float, float]:
    """CPU and wall milliseconds per event."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        write(session, envelope_of(EVENT), topic="orders.events")
    per = 1000 / calls
    return (time.process_time() - cpu) * per, (time.perf_counter() - wall) * per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=embedded_database_url("postgres"),
        help="any PostgreSQL database (default: that of a running `chomik run`)",
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    engine = sa.create_engine(args.database_url)
    with Session(engine) as session, session.begin():
        session.execute(
            sa.text(
                "CREATE TEMPORARY TABLE outbox_events (seq bigserial PRIMARY KEY, "
                "id uuid NOT NULL, topic varchar(255) NOT NULL, key varchar(255), "
                "type varchar(255) NOT NULL, payload bytea NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz)"
            )
        )
        print(f"emit of one event, {args.calls} calls per turn, one connection")
        print(f"{'turn':<5} {'way':<15} {'CPU ms/event':>13} {'wall ms/event':>14}")
        ratios = []
        for turn in range(1, args.rounds + 1):
            old = timed(session, built_per_call, args.calls)
            new = timed(session, outbox.emit_envelope, args.calls)
            ratios.append(old[0] / new[0])
            for way, (cpu, wall) in (("built per call", old), ("built once", new)):
                print(f"{turn:<5} {way:<15} {cpu:13.3f} {wall:14.3f}")
        session.rollback()
    print(f"CPU per event, built per call / built once: x{min(ratios):.1f} to "
          f"x{max(ratios):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
