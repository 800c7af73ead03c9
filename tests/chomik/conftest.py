"""Kit test fixtures shared by several modules (a module may define its own `engine`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from tests.chomik.messaging_helpers import SCHEDULE_DDL, scratch_tables


@pytest.fixture
def engine(infra) -> Iterator[Engine]:
    """The orders database with the test-only due-items tables of the job tests."""
    with scratch_tables(infra.engine("orders"), SCHEDULE_DDL) as engine:
        yield engine
