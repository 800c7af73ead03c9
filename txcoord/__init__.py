"""txcoord: a recoverable two-phase commit coordinator over PostgreSQL PREPARE TRANSACTION.

Usage::

    coordinator = Coordinator({"payment": payment_engine, "orders": orders_engine},
                              log=txcoord_engine)
    with coordinator.transaction() as tx:
        tx.session("payment").add(payment)
        tx.session("orders").execute(update(...))
    # leaving the block: PREPARE each branch, log COMMIT, COMMIT PREPARED each

    coordinator.recovery().run_once()  # on start, then periodically
    prune_decisions(participants, log, prefix=..., older_than=timedelta(days=7))

Each branch is one connection that ran ``begin_twophase(gid)`` with
``gid = "<prefix>:<transaction id>:<participant>"`` and a Session bound to it.
Failures before the COMMIT row is logged roll every branch back (presumed
abort); after it, branches are only ever committed, by the coordinator or by
recovery. The decision table lives in ``metadata`` (its own database).
Errors are in ``txcoord.errors`` (hierarchy in its docstring).
"""

from __future__ import annotations

from txcoord._coordinator import (
    DEFAULT_PREFIX,
    Coordinator,
    Outcome,
    PhaseHook,
    Transaction,
)
from txcoord._log import Decision, DecisionLog, decisions, metadata
from txcoord._metrics import Observer, PrometheusObserver
from txcoord._participant import PreparedBranch, list_prepared
from txcoord._prune import prune_decisions
from txcoord._recovery import Recovery, RecoveryReport
from txcoord.errors import (
    AbortedByRecoveryError,
    ConfigurationError,
    OutcomeUnknownError,
    OutOfPreparedSlotsError,
    PrepareFailedError,
    TransactionAbortedError,
    TxcoordError,
)

__all__ = [
    "DEFAULT_PREFIX",
    "AbortedByRecoveryError",
    "ConfigurationError",
    "Coordinator",
    "Decision",
    "DecisionLog",
    "Observer",
    "Outcome",
    "OutOfPreparedSlotsError",
    "OutcomeUnknownError",
    "PhaseHook",
    "PrepareFailedError",
    "PreparedBranch",
    "PrometheusObserver",
    "Recovery",
    "RecoveryReport",
    "Transaction",
    "TransactionAbortedError",
    "TxcoordError",
    "decisions",
    "list_prepared",
    "metadata",
    "prune_decisions",
]
