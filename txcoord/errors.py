"""The exceptions txcoord raises.

Hierarchy::

    TxcoordError
    ├── ConfigurationError            bad names, a server with max_prepared_transactions = 0,
    │                                 or a log database with synchronous_commit = off
    ├── TransactionAbortedError       rolled back on every participant: nothing happened
    │   ├── PrepareFailedError        a participant refused PREPARE TRANSACTION
    │   │   └── OutOfPreparedSlotsError   SQLSTATE 53200: every prepared slot is taken
    │   └── AbortedByRecoveryError    recovery decided ABORT first (the branch timed out)
    └── OutcomeUnknownError           the decision could not be written or read back;
                                      the branches stay prepared and recovery settles them

An exception raised inside the ``with`` block is not wrapped: every branch is
rolled back and the caller's own exception propagates unchanged.
"""

from __future__ import annotations

__all__ = [
    "AbortedByRecoveryError",
    "ConfigurationError",
    "OutOfPreparedSlotsError",
    "OutcomeUnknownError",
    "PrepareFailedError",
    "TransactionAbortedError",
    "TxcoordError",
]


class TxcoordError(Exception):
    """Base of every txcoord error."""


class ConfigurationError(TxcoordError):
    """The coordinator cannot work with this setup; the message says what to change."""


class TransactionAbortedError(TxcoordError):
    """The coordinated transaction was rolled back: no participant kept its writes."""

    def __init__(self, message: str, *, tx_id: str) -> None:
        super().__init__(message)
        self.tx_id = tx_id


class PrepareFailedError(TransactionAbortedError):
    """A participant failed at PREPARE TRANSACTION (for example a deferred constraint).

    When the PREPARE's answer was lost with the connection, the branch may be
    prepared all the same: ABORT is logged and recovery rolls it back.
    """

    def __init__(self, message: str, *, tx_id: str, participant: str) -> None:
        super().__init__(message, tx_id=tx_id)
        self.participant = participant


class OutOfPreparedSlotsError(PrepareFailedError):
    """The participant's server has no free prepared-transaction slot (SQLSTATE 53200)."""


class AbortedByRecoveryError(TransactionAbortedError):
    """Recovery logged ABORT for this transaction before the coordinator logged COMMIT."""


class OutcomeUnknownError(TxcoordError):
    """The decision could not be confirmed; recovery will commit or roll back every branch.

    All participants agree in the end: recovery commits them all if the COMMIT
    row reached the log, and rolls them all back otherwise.
    """

    def __init__(self, message: str, *, tx_id: str) -> None:
        super().__init__(message)
        self.tx_id = tx_id
