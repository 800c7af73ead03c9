"""The coordinator: PREPARE every branch, log COMMIT, COMMIT PREPARED every branch."""

from __future__ import annotations

import enum
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from txcoord import _metrics
from txcoord._log import Decision, DecisionLog, decisions
from txcoord._metrics import Observer
from txcoord._participant import (
    CONFIGURATION_LIMIT_EXCEEDED,
    Branch,
    Finish,
    check_name,
    finish_prepared,
    make_gid,
    max_prepared_transactions,
    sqlstate,
)
from txcoord._recovery import Recovery
from txcoord.errors import (
    AbortedByRecoveryError,
    ConfigurationError,
    OutcomeUnknownError,
    OutOfPreparedSlotsError,
    PrepareFailedError,
)

logger = logging.getLogger("txcoord")

PhaseHook = Callable[[str, str], None]
"""``on_phase(point, tx_id)``: called at each injection point (see Coordinator)."""

DEFAULT_PREFIX = "txc"


class Outcome(enum.Enum):
    """How a coordinated transaction ended (``tx.outcome``).

    ``tx.outcome`` stays None while the transaction runs, and after an
    OutcomeUnknownError: then recovery decides.
    """

    COMMITTED = "committed"  # decided COMMIT and every branch committed
    COMMITTED_PENDING = (
        "committed_pending"  # decided COMMIT; recovery finishes a branch
    )
    ABORTED = "aborted"  # rolled back everywhere


def process_name() -> str:
    """Who wrote a decision: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Coordinator:
    """Runs transactions over several PostgreSQL databases atomically.

    ``participants`` maps a short name to each database's engine; ``log`` is the
    engine of the database holding the decision table. Construction checks that
    every participant's server allows prepared transactions.

    ``timeout`` is the transaction timeout: recovery rolls back an undecided
    branch prepared longer ago than this. ``on_phase(point, tx_id)`` is a test
    seam called at each injection point: ``after_prepare:<participant>``,
    ``before_decision``, ``after_decision`` and ``after_commit:<participant>``.
    """

    def __init__(
        self,
        participants: Mapping[str, Engine],
        log: Engine,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 60.0,
        commit_retries: int = 5,
        retry_delay: float = 0.05,
        observer: Observer | None = None,
        on_phase: PhaseHook | None = None,
        check_server: bool = True,
    ) -> None:
        if not participants:
            raise ConfigurationError("txcoord needs at least one participant")
        self.prefix = check_name("prefix", prefix)
        for name in participants:
            check_name("participant name", name)  # bounds the gid: see _participant
        self.participants = dict(participants)
        self.log = DecisionLog(log)
        self.timeout = timeout
        self.commit_retries = commit_retries
        self.retry_delay = retry_delay
        self.observer = observer or Observer()
        self.on_phase = on_phase
        if check_server:
            self.check_servers()

    def check_servers(self) -> None:
        """Fail with a clear message when a participant cannot prepare transactions.

        Also checks that the decision table exists in the log database, and that
        the log database makes a COMMIT decision durable before it is acted on.
        """
        if not self.log.table_exists():
            raise ConfigurationError(
                f"txcoord decision table {decisions.name!r} is missing in "
                f"{self.log.engine.url.render_as_string()}: migrate the log "
                "database (txcoord.metadata) first"
            )
        if self.log.synchronous_commit() == "off":
            raise ConfigurationError(
                f"txcoord log database {self.log.engine.url.render_as_string()} runs "
                "with synchronous_commit = off: a COMMIT decision could be lost in a "
                "crash after the branches were committed; set synchronous_commit = "
                "on for this database (ALTER DATABASE ... SET synchronous_commit = on)"
            )
        for name, engine in self.participants.items():
            if max_prepared_transactions(engine) == 0:
                raise ConfigurationError(
                    f"txcoord participant {name!r} ({engine.url.render_as_string()}) "
                    "runs with max_prepared_transactions = 0, so PREPARE TRANSACTION "
                    "is disabled: set max_prepared_transactions in postgresql.conf "
                    "(at least max_connections of the coordinating processes, e.g. "
                    "64) and restart the server"
                )

    def transaction(self, *, on_phase: PhaseHook | None = None) -> Transaction:
        """A new coordinated transaction, to be used as a ``with`` block."""
        return Transaction(self, on_phase=on_phase or self.on_phase)

    def recovery(
        self, *, abort_after: float | None = None, in_doubt_after: float = 5.0
    ) -> Recovery:
        """A Recovery over the same participants, log and prefix."""
        return Recovery(
            self.participants,
            self.log.engine,
            prefix=self.prefix,
            abort_after=self.timeout if abort_after is None else abort_after,
            in_doubt_after=in_doubt_after,
            observer=self.observer,
        )


class Transaction:
    """One coordinated transaction: ``with coordinator.transaction() as tx:``.

    ``tx.session(name)`` opens the participant's branch on first use. Leaving
    the block normally commits every branch atomically; an exception rolls
    every branch back and propagates. ``tx.outcome`` tells how it ended.
    """

    def __init__(self, coordinator: Coordinator, *, on_phase: PhaseHook | None) -> None:
        self.coordinator = coordinator
        self.id = uuid.uuid4().hex
        self.outcome: Outcome | None = None
        self._on_phase = on_phase
        self._branches: dict[str, Branch] = {}
        self._entered = False

    def session(self, participant: str) -> Session:
        """The Session of a participant's branch (opened on first use)."""
        return self._branch(participant).session

    def connection(self, participant: str) -> Connection:
        """The Connection of a participant's branch (opened on first use)."""
        return self._branch(participant).connection

    def _branch(self, participant: str) -> Branch:
        if not self._entered or self.outcome is not None:
            raise RuntimeError("use the transaction's sessions inside its with block")
        branch = self._branches.get(participant)
        if branch is None:
            try:
                engine = self.coordinator.participants[participant]
            except KeyError:
                known = ", ".join(sorted(self.coordinator.participants))
                raise ConfigurationError(
                    f"unknown txcoord participant {participant!r}; known: {known}"
                ) from None
            gid = make_gid(self.coordinator.prefix, self.id, participant)
            branch = self._branches[participant] = Branch(participant, engine, gid)
        return branch

    def __enter__(self) -> Transaction:
        if self._entered:
            raise RuntimeError("a txcoord transaction can be used only once")
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._abort(_metrics.ABORT_BLOCK)
            return  # the caller's exception propagates
        self._commit()

    # -- the protocol ---------------------------------------------------------

    def _hook(self, point: str) -> None:
        if self._on_phase is not None:
            self._on_phase(point, self.id)

    def _commit(self) -> None:
        """Two-phase commit of every opened branch (called on leaving the block)."""
        branches = list(self._branches.values())
        if not branches:
            self.outcome = Outcome.COMMITTED
            return
        self._prepare_all(branches)
        try:
            self._hook("before_decision")
        except BaseException:
            self._abort(_metrics.ABORT_PREPARE)
            raise
        decision = self._decide(branches)
        if decision is Decision.ABORT:
            self._abort(_metrics.ABORT_RECOVERY)
            raise AbortedByRecoveryError(
                f"txcoord transaction {self.id} was aborted by recovery before "
                "its COMMIT was logged (it outlived the transaction timeout)",
                tx_id=self.id,
            )
        self.coordinator.observer.committed()
        self._hook_after_decision("after_decision", branches)
        self._commit_all(branches)

    def _hook_after_decision(self, point: str, branches: list[Branch]) -> None:
        """Run the hook; if it raises, leave every open branch to recovery."""
        try:
            self._hook(point)
        except BaseException:
            for branch in branches:
                branch.close()  # keeps a prepared branch prepared
            raise

    def _prepare_all(self, branches: list[Branch]) -> None:
        observer = self.coordinator.observer
        started = time.perf_counter()
        for branch in branches:
            try:
                branch.prepare()
            except (SQLAlchemyError, OSError) as exc:
                self._abort(_metrics.ABORT_PREPARE)
                raise self._prepare_error(branch.name, exc) from exc
            except BaseException:
                self._abort(_metrics.ABORT_PREPARE)
                raise
            try:
                self._hook(f"after_prepare:{branch.name}")
            except BaseException:
                self._abort(_metrics.ABORT_PREPARE)
                raise
        observer.phase(_metrics.PHASE_PREPARE, time.perf_counter() - started)

    def _prepare_error(
        self, participant: str, exc: BaseException
    ) -> PrepareFailedError:
        if (
            isinstance(exc, DBAPIError)
            and sqlstate(exc) == CONFIGURATION_LIMIT_EXCEEDED
        ):
            return OutOfPreparedSlotsError(
                f"txcoord transaction {self.id} rolled back: participant "
                f"{participant!r} has no free prepared-transaction slot "
                "(max_prepared_transactions reached, SQLSTATE 53200); raise "
                "max_prepared_transactions or look for branches left prepared",
                tx_id=self.id,
                participant=participant,
            )
        return PrepareFailedError(
            f"txcoord transaction {self.id} rolled back: participant "
            f"{participant!r} failed to prepare: {exc}",
            tx_id=self.id,
            participant=participant,
        )

    def _decide(self, branches: list[Branch]) -> Decision:
        """Log COMMIT (first writer wins); retry while the result is unknown."""
        log = self.coordinator.log
        participants = [branch.name for branch in branches]
        started = time.perf_counter()
        delay = self.coordinator.retry_delay
        for attempt in range(self.coordinator.commit_retries + 1):
            try:
                decision = log.decide(
                    self.id, Decision.COMMIT, decided_by=process_name(),
                    participants=participants,
                )  # fmt: skip
            except (SQLAlchemyError, OSError) as exc:
                # The COMMIT may or may not have reached the log: never roll back here.
                logger.warning(
                    "txcoord %s: writing the decision failed (attempt %d): %s",
                    self.id, attempt + 1, exc,
                )  # fmt: skip
                time.sleep(delay)
                delay *= 2
                continue
            self.coordinator.observer.phase(
                _metrics.PHASE_DECIDE, time.perf_counter() - started
            )
            return decision
        for branch in branches:
            branch.detach()
        self.outcome = None
        raise OutcomeUnknownError(
            f"txcoord transaction {self.id}: the decision log could not be written "
            "or read; its branches stay prepared and recovery will settle them",
            tx_id=self.id,
        )

    def _commit_all(self, branches: list[Branch]) -> None:
        """After COMMIT is logged: commit each branch, retrying; never roll back."""
        started = time.perf_counter()
        pending = []
        for branch in branches:
            if not self._commit_branch(branch):
                pending.append(branch.gid)
            self._hook_after_decision(f"after_commit:{branch.name}", branches)
        self.coordinator.observer.phase(
            _metrics.PHASE_COMMIT, time.perf_counter() - started
        )
        if pending:
            self.outcome = Outcome.COMMITTED_PENDING
            logger.warning(
                "txcoord %s: committed, but branches %s are left to recovery",
                self.id, ", ".join(pending),
            )  # fmt: skip
            return
        self.outcome = Outcome.COMMITTED

    def _commit_branch(self, branch: Branch) -> bool:
        """True once the branch is committed (by us or by a concurrent recovery)."""
        try:
            result = branch.commit()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("txcoord %s: COMMIT PREPARED failed: %s", branch.gid, exc)
            result = Finish.BUSY
        finally:
            branch.close()
        delay = self.coordinator.retry_delay
        for _ in range(self.coordinator.commit_retries):
            if result is not Finish.BUSY:
                return True  # DONE, or GONE: only a COMMIT can have finished it
            time.sleep(delay)
            delay *= 2
            try:
                result = finish_prepared(branch.engine, branch.gid, commit=True)
            except (SQLAlchemyError, OSError) as exc:
                logger.warning(
                    "txcoord %s: COMMIT PREPARED failed: %s", branch.gid, exc
                )
        return result is not Finish.BUSY

    def _abort(self, reason: str) -> None:
        """Roll back every branch (no COMMIT was logged)."""
        left = []
        for branch in self._branches.values():
            try:
                if not branch.rollback():
                    left.append(branch.gid)
            finally:
                branch.close()
        self.outcome = Outcome.ABORTED
        self.coordinator.observer.aborted(reason)
        if left:
            # Log ABORT so recovery rolls these back at once, whatever their age.
            logger.warning("txcoord %s: branches %s left for recovery", self.id, left)
            try:
                self.coordinator.log.decide(
                    self.id, Decision.ABORT, decided_by=process_name()
                )
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("txcoord %s: could not log ABORT: %s", self.id, exc)


__all__ = ["DEFAULT_PREFIX", "Coordinator", "Outcome", "PhaseHook", "Transaction"]
