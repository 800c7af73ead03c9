"""The payment worker's jobs against the real payment, orders and txcoord databases."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from apps.payment.jobs import JOBS, TXCOORD_PREFIX
from apps.payment.settings import PaymentSettings
from chomik.db import make_session_factory
from chomik.jobs import JobContext
from tests.txcoord.conftest import leave_prepared
from txcoord import Decision, DecisionLog

pytestmark = pytest.mark.usefixtures("committed_db")


def old_decision(log_engine, participants):
    tx_id = uuid.uuid4().hex
    DecisionLog(log_engine).decide(
        tx_id, Decision.COMMIT, decided_by="test", participants=participants
    )
    with log_engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE txcoord_decision SET decided_at = now() - interval '8 days'"
                " WHERE tx_id = :tx"
            ),
            {"tx": tx_id},
        )
    return tx_id


def test_the_prune_job_keeps_a_decision_whose_orders_branch_is_prepared(
    infra, settings_for
):
    settings = settings_for(
        PaymentSettings,
        orders_database_url=infra.urls["orders"],
        txcoord_database_url=infra.urls["txcoord"],
    )
    log = infra.engine("txcoord")
    done = old_decision(log, ["payment", "orders"])
    in_doubt = old_decision(log, ["payment", "orders"])
    gid = f"{TXCOORD_PREFIX}:{in_doubt}:orders"
    leave_prepared(infra.engine("orders"), gid)
    (job,) = [j for j in JOBS if j.name == "prune_txcoord_decisions"]
    context = JobContext(
        settings, make_session_factory(infra.engine("payment")), "payment-test"
    )
    try:
        assert job.func(context) == 1
        assert set(DecisionLog(log).get({done, in_doubt})) == {in_doubt}
    finally:
        with (
            infra.engine("orders")
            .connect()
            .execution_options(isolation_level="AUTOCOMMIT") as conn
        ):
            conn.exec_driver_sql(f"ROLLBACK PREPARED '{gid}'")


def test_payment_settings_default_to_the_embedded_orders_and_log_databases():
    settings = PaymentSettings()
    assert settings.orders_database_url.endswith("/chomik_orders")
    assert settings.txcoord_database_url.endswith("/chomik_txcoord")
