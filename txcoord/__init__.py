"""txcoord: a recoverable two-phase commit coordinator over PostgreSQL PREPARE TRANSACTION."""

from __future__ import annotations

import sqlalchemy as sa

# The decision log's tables (database `chomik_txcoord`).
metadata = sa.MetaData()
