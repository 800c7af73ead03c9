"""One page of a list and its total: a count, then the page, against one statement
carrying the count as a scalar subquery (`chomik.db.paginate`).

Every list endpoint (the catalog, orders, payments, shipments, addresses) answers a
page and the total of matching rows. This reads page 1 of 20 from the listed rows
of an indexed temporary table (`--rows`, nine in ten listed) both ways, in turns,
through the ORM on one connection, and prints the CPU and wall time per page and
their ratio.

Run: .venv/bin/python benchmarks/bench_paginate.py [--database-url URL] [--calls 2000]
(the default URL is the cluster `chomik run` starts)
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from harness import in_turns, statement_args
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from chomik.db import Page, paginate


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "bench_paginate_items"
    __table_args__ = {"prefixes": ["TEMPORARY"]}

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    n: Mapped[int] = mapped_column(index=True)
    archived: Mapped[bool] = mapped_column(default=False)


QUERY = sa.select(Item).where(Item.archived.is_(False)).order_by(Item.n.desc())


def counted_apart(session: Session, page: int, page_size: int) -> Page[Item]:
    """`paginate` as it was before: a count of the list, then the page."""
    total = session.scalar(
        sa.select(sa.func.count()).select_from(QUERY.order_by(None).subquery())
    )
    items = session.scalars(QUERY.limit(page_size).offset((page - 1) * page_size))
    return Page(items.all(), page, page_size, total or 0)


def main() -> None:
    args = statement_args(__doc__, calls=2000, rows=200)
    engine = sa.create_engine(args.database_url)
    with Session(engine) as session, session.begin():
        Base.metadata.create_all(session.connection())
        session.execute(
            sa.insert(Item),
            [{"n": n, "archived": n % 10 == 0} for n in range(args.rows)],
        )
        session.execute(sa.text("ANALYZE bench_paginate_items"))
        listed = paginate(session, QUERY, page=1, page_size=20).total
        assert listed == counted_apart(session, 1, 20).total
        in_turns(
            f"page 1 of 20 and the total of {listed} rows",
            {
                "count apart": lambda: counted_apart(session, 1, 20),
                "one statement": lambda: paginate(session, QUERY, page=1, page_size=20),
            },
            calls=args.calls,
            rounds=args.rounds,
        )
        session.rollback()


if __name__ == "__main__":
    main()
