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

import uuid
from decimal import Decimal

import sqlalchemy as sa
from harness import in_turns, statement_args
from sqlalchemy.orm import Session

from chomik.messaging import outbox
from chomik.messaging.kafka import Envelope, envelope_of
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


def main() -> None:
    args = statement_args(__doc__, calls=3000)
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
        in_turns(
            "emit of one event (its envelope made too)",
            {
                "built per call": lambda: built_per_call(
                    session, envelope_of(EVENT), topic="orders.events"
                ),
                "built once": lambda: outbox.emit_envelope(
                    session, envelope_of(EVENT), topic="orders.events"
                ),
            },
            calls=args.calls,
            rounds=args.rounds,
        )
        session.rollback()


if __name__ == "__main__":
    main()
