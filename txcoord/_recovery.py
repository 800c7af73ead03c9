"""Recovery: finish every prepared branch the coordinator left behind.

For each participant, list its prepared branches with our prefix (in its own
database only). A branch whose transaction is logged COMMIT is committed; one
logged ABORT is rolled back; one with no decision is left alone while younger
than ``abort_after``, then ABORT is logged with ``ON CONFLICT DO NOTHING`` and
the branch is rolled back only if ABORT is the decision in force. Several
recovery processes may run at once: each branch is finished by exactly one of
them (the others find it gone or busy), and they all read the same decision.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from txcoord._log import Decision, DecisionLog
from txcoord._metrics import Observer
from txcoord._participant import Finish, PreparedBranch, finish_prepared, list_prepared

logger = logging.getLogger("txcoord.recovery")


@dataclass
class RecoveryReport:
    """What one recovery pass did, by gid."""

    committed: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    waiting: list[str] = field(
        default_factory=list
    )  # undecided, younger than abort_after
    concurrent: list[str] = field(default_factory=list)  # finished by someone else
    failed: list[str] = field(default_factory=list)  # an error; the next pass retries
    in_doubt: dict[str, int] = field(default_factory=dict)  # per participant

    @property
    def resolved(self) -> int:
        """Branches this pass finished itself."""
        return len(self.committed) + len(self.rolled_back)


class Recovery:
    """Finishes prepared branches according to the decision log."""

    def __init__(
        self,
        participants: Mapping[str, Engine],
        log: Engine,
        *,
        prefix: str,
        abort_after: float,
        in_doubt_after: float = 5.0,
        observer: Observer | None = None,
    ) -> None:
        self.participants = dict(participants)
        self.log = DecisionLog(log)
        self.prefix = prefix
        self.abort_after = abort_after
        self.in_doubt_after = in_doubt_after
        self.observer = observer or Observer()
        self.name = f"recovery@{socket.gethostname()}:{os.getpid()}"

    def run_once(self) -> RecoveryReport:
        """One pass over every participant."""
        report = RecoveryReport()
        for name, engine in self.participants.items():
            try:
                branches = list_prepared(engine, self.prefix)
                decisions = self.log.get({branch.tx_id for branch in branches})
            except SQLAlchemyError:
                logger.exception("txcoord recovery: cannot scan participant %s", name)
                continue
            left_old = 0
            for branch in branches:
                resolved = self._resolve(name, engine, branch, decisions, report)
                if not resolved and branch.age >= self.in_doubt_after:
                    left_old += 1
            report.in_doubt[name] = left_old
            self.observer.in_doubt(name, left_old)
        return report

    def _resolve(
        self,
        participant: str,
        engine: Engine,
        branch: PreparedBranch,
        decisions: Mapping[str, Decision],
        report: RecoveryReport,
    ) -> bool:
        """Finish one branch if its decision allows; True when it is no longer prepared."""
        try:
            decision = decisions.get(branch.tx_id)
            if decision is None:
                if branch.age < self.abort_after:
                    report.waiting.append(branch.gid)
                    return False
                decision = self.log.decide(
                    branch.tx_id, Decision.ABORT, decided_by=self.name
                )
            commit = decision is Decision.COMMIT
            result = finish_prepared(engine, branch.gid, commit=commit)
        except SQLAlchemyError:
            logger.exception("txcoord recovery: cannot finish %s", branch.gid)
            report.failed.append(branch.gid)
            return False
        if result is Finish.DONE:
            outcome = "commit" if commit else "abort"
            (report.committed if commit else report.rolled_back).append(branch.gid)
            self.observer.recovered(participant, outcome)
            logger.warning(
                "txcoord recovery: %s branch %s (prepared %.1f s ago)",
                "committed" if commit else "rolled back", branch.gid, branch.age,
            )  # fmt: skip
            return True
        report.concurrent.append(branch.gid)
        return result is Finish.GONE

    def run(self, interval: float, stop: threading.Event) -> None:
        """Run a pass now and then every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the loop must outlive any one pass
                logger.exception("txcoord recovery pass failed")
            stop.wait(interval)
