"""Signed outgoing callbacks: a durable queue, a sender that never gives up, fault switches.

An outside-system stand-in (bank, carrier) calls `install_callbacks(metadata)` once,
`enqueue_callback(session, url, payload, key=..., event_id=...)` in the transaction
that changes a record's state, and runs `callback_jobs(secret, faults)` in its worker
(its migration calls `chomik.webhooks_migrations`). Each row is POSTed with an
`X-Signature` (`chomik.signing.sign`, the first secret) until the receiver answers
2xx; failures wait with capped exponential backoff. Rows are claimed with row leases
(`chomik.jobs.claimed`), so any number of senders may run; a sender that dies
mid-batch loses nothing: its rows come due again when the lease ends (at least once,
the same `event_id` every time).

`Faults` make the sender misbehave for tests, as real outside systems do: drop a
callback (counted as sent, never sent), send it twice, send callbacks out of order,
delay every callback, and answer 503 for a while (`unavailable_until`, for the
stand-in's own views). Their values come from settings, overridden at run time
through the `fault_switches` table.

Out of order means: a callback picked for reordering is held back. A later callback
of the same key is sent at once and releases it (so a record's later change
overtakes its earlier one); otherwise the hold ends after `reorder_hold`, and held
callbacks then go newest first (each waits while a later one is still held back), so
the callbacks of several records arrive in reverse order. No callback is held longer
than `3 x reorder_hold`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

from chomik.db import UTCDateTime, compiled_once, utcnow
from chomik.jobs.runner import claimed, exclusive
from chomik.jobs.scheduling import Job, JobContext, notify_job
from chomik.metrics import CALLBACK_ATTEMPTS
from chomik.signing import HEADER, sign

log = logging.getLogger(__name__)

CALLBACKS_TABLE = "outgoing_callbacks"
# What queuing a callback notifies: the sender, backed off while idle, runs at once.
CALLBACK_CHANNEL = "chomik_callbacks"
FAULTS_TABLE = "fault_switches"
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class Faults:
    """How a stand-in misbehaves: probabilities 0..1, seconds, a unix time."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0
    unavailable_until: float = 0.0

    def unavailable(self, now: float | None = None) -> bool:
        """True while the stand-in should answer 503."""
        return (time.time() if now is None else now) < self.unavailable_until


FAULT_NAMES = tuple(f.name for f in dataclasses.fields(Faults))


@dataclass(frozen=True)
class SenderConfig:
    """Tuning of the sender; the defaults suit the development system."""

    # A batch's sends must end within the lease: batch_size x timeout < lease.
    batch_size: int = 10
    lease: dt.timedelta = dt.timedelta(seconds=60)
    timeout: float = 5.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    # How long sent callbacks are kept (for looking into what was sent).
    retention: dt.timedelta = dt.timedelta(days=1)
    # How long a held-back callback waits for a later one of its key (a later one
    # sent releases it at once); longer than a carrier's default step. Then held
    # callbacks go newest first, a step apart; none waits more than 3 x the hold.
    reorder_hold: float = 10.0
    reorder_step: float = 0.2
    # While nothing is due, runs back off from the job's interval to this many
    # seconds apart, and never past the time the next callback comes due (a retry,
    # a held one). A callback queued meanwhile wakes the sender at once
    # (`CALLBACK_CHANNEL`); a wake-up lost with the listener's connection delays
    # it at most this long.
    idle_max: float = 60.0


def install_callbacks(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Add `outgoing_callbacks` and `fault_switches` to `metadata` once; return both."""
    if CALLBACKS_TABLE in metadata.tables:
        return metadata.tables[CALLBACKS_TABLE], metadata.tables[FAULTS_TABLE]
    callbacks = sa.Table(
        CALLBACKS_TABLE,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid(as_uuid=True), nullable=False, unique=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.Column("claim_token", sa.Uuid(as_uuid=True), nullable=True),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column(
            "created_at", UTCDateTime, nullable=False, server_default=sa.func.now()
        ),
        sa.Index("ix_outgoing_callbacks_next_attempt_at", "next_attempt_at"),
        sa.Index("ix_outgoing_callbacks_key", "key", "id"),
    )
    faults = sa.Table(
        FAULTS_TABLE,
        metadata,
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    return callbacks, faults


# Handles for statements, independent of any app's metadata (with the primary key
# `claim_due` needs).
_callbacks = sa.Table(
    CALLBACKS_TABLE,
    sa.MetaData(),
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.Uuid(as_uuid=True)),
    sa.Column("key", sa.String),
    sa.Column("url", sa.String),
    sa.Column("body", JSONB),
    sa.Column("attempts", sa.Integer),
    sa.Column("held", sa.Boolean),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("claim_token", sa.Uuid(as_uuid=True)),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime()),
)
_faults = sa.table(FAULTS_TABLE, sa.column("name", sa.String), sa.column("value"))


def enqueue_callback(
    session: Session,
    url: str,
    payload: Mapping[str, Any],
    *,
    key: str,
    event_id: uuid.UUID,
) -> bool:
    """Queue a signed POST of `payload` to `url` in the caller's transaction.

    `key` groups the callbacks of one record (their order is the queue's order);
    `event_id` is unique per state change: queuing it again changes nothing (False).
    """
    result = session.execute(
        _ENQUEUE, {"event_id": event_id, "key": key, "url": url, "body": dict(payload)}
    )
    notify_job(session, CALLBACK_CHANNEL)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


_ENQUEUE = compiled_once(
    insert(_callbacks)
    .values(
        event_id=sa.bindparam("event_id", type_=sa.Uuid()),
        key=sa.bindparam("key"),
        url=sa.bindparam("url"),
        body=sa.bindparam("body", type_=_callbacks.c.body.type),
        next_attempt_at=sa.func.now(),
    )
    .on_conflict_do_nothing(index_elements=["event_id"])
)


def body_bytes(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes a callback carries (and its signature covers)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


# --- fault switches ---------------------------------------------------------------------


def current_faults(session: Session, defaults: Faults) -> Faults:
    """The faults in force: `defaults` (settings) overridden by the switches table."""
    rows = session.execute(sa.select(_faults.c.name, _faults.c.value)).all()
    overrides = {name: float(value) for name, value in rows if name in FAULT_NAMES}
    return dataclasses.replace(defaults, **overrides)


def set_faults(session: Session, values: Mapping[str, float]) -> None:
    """Override some fault switches until changed again (unknown names refused)."""
    unknown = set(values) - set(FAULT_NAMES)
    if unknown:
        raise ValueError(f"unknown fault switches: {sorted(unknown)}")
    for name, value in values.items():
        statement = insert(_faults).values(name=name, value=float(value))
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["name"], set_={"value": statement.excluded.value}
            )
        )


def clear_faults(session: Session) -> None:
    """Drop every run-time override: the settings apply again."""
    session.execute(sa.delete(_faults))


# --- the sender -------------------------------------------------------------------------


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt `attempts + 1`: base doubling per failure, capped."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class CallbackSender:
    """The row handler of the sending job: one POST per due callback, faults applied.

    It runs in the row's transaction (`chomik.jobs.claimed`) and returns when the row
    is due again (None: done). The POST happens before that transaction commits, so
    a sender that dies, or whose lease ran out, may send a callback again: at least
    once, with the same `event_id`.
    """

    secret: str
    defaults: Faults = Faults()
    config: SenderConfig = SenderConfig()
    http: requests.Session = dataclasses.field(default_factory=requests.Session)
    chance: Callable[[], float] = random.random

    def __call__(self, session: Session, row: Any) -> dt.datetime | None:
        faults = current_faults(session, self.defaults)
        created: dt.datetime = row.created_at
        not_before = created + dt.timedelta(seconds=faults.delay)
        if not_before > utcnow():
            return not_before  # the delay switch: not even an attempt yet
        first = row.attempts == 0
        reorder = first and not row.held and self.chance() < faults.reorder
        if reorder and not _behind_held(session, row):
            _update(session, row, held=True)
            CALLBACK_ATTEMPTS.labels("held").inc()
            return _later(self.config.reorder_hold)
        if first and row.held and self._overtaken(session, row, not_before):
            return _later(self.config.reorder_step)
        if first and self.chance() < faults.drop:
            log.info("callback %s dropped (fault switch)", row.event_id)
            _update(
                session, row, sent_at=utcnow(), attempts=1, last_error="dropped (fault)"
            )
            CALLBACK_ATTEMPTS.labels("dropped").inc()
            return None
        error = self._post(row)
        if error is not None:
            wait = backoff(
                row.attempts + 1, self.config.backoff_base, self.config.backoff_max
            )
            log.warning("callback %s to %s failed: %s", row.event_id, row.url, error)
            _update(session, row, attempts=row.attempts + 1, last_error=error)
            CALLBACK_ATTEMPTS.labels("failed").inc()
            return _later(wait)
        CALLBACK_ATTEMPTS.labels("sent").inc()
        if self.chance() < faults.duplicate:
            # Signed a second later, as a real resend would be: a receiver must
            # know the copy by its event_id, not by a replayed signature.
            self._post(row, now=time.time() + 1)  # the copy's fate does not matter
            CALLBACK_ATTEMPTS.labels("duplicated").inc()
        _update(
            session, row, sent_at=utcnow(), attempts=row.attempts + 1, last_error=None
        )
        _release_held(session, row)
        return None

    def _overtaken(self, session: Session, row: Any, held_from: dt.datetime) -> bool:
        """True if a later held-back callback must go first: it is let go now."""
        limit = held_from + dt.timedelta(seconds=3 * self.config.reorder_hold)
        if utcnow() > limit:
            return False  # held long enough: a stream of later ones never starves it
        if _overtaken_by_own_key(session, row):
            return False  # released by a later callback of its key: it goes now
        later = (
            _callbacks.c.id > row.id,
            _callbacks.c.held.is_(True),
            _callbacks.c.sent_at.is_(None),
            _callbacks.c.attempts == 0,
        )
        if not session.scalar(sa.select(sa.exists().where(*later))):
            return False
        session.execute(
            sa.update(_callbacks)
            .where(*later, _callbacks.c.claim_token.is_(None))
            .values(next_attempt_at=sa.func.now())
        )
        return True

    def _post(self, row: Any, *, now: float | None = None) -> str | None:
        """POST one callback; None on a 2xx, else what went wrong."""
        body = body_bytes(row.body)
        signature = sign(body, self.secret, now=now)
        headers = {"Content-Type": "application/json", HEADER: signature}
        try:
            response = self.http.post(
                row.url, data=body, headers=headers, timeout=self.config.timeout
            )
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
        response.close()
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"


def callback_jobs(secret: str, faults: Faults) -> list[Job]:
    """The jobs of a stand-in's worker: send due callbacks, prune old sent ones."""
    config = SenderConfig()

    def prune(session: Session, context: JobContext) -> int:
        return prune_sent_callbacks(session, older_than=config.retention)

    return [
        callback_job(secret, faults, config=config),
        exclusive(
            "prune_sent_callbacks", prune, seconds=3600, tables=[CALLBACKS_TABLE]
        ),
    ]


def prune_sent_callbacks(session: Session, *, older_than: dt.timedelta) -> int:
    """Delete callbacks sent longer than `older_than` ago; return how many."""
    result = session.execute(
        sa.delete(_callbacks).where(_callbacks.c.sent_at < utcnow() - older_than)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def callback_job(
    secret: str,
    faults: Faults,
    *,
    config: SenderConfig | None = None,
    name: str = "send_callbacks",
    seconds: float = 0.5,
    chance: Callable[[], float] = random.random,
) -> Job:
    """The job sending due callbacks, signed with `secret`, `faults` as configured."""
    config = config or SenderConfig()
    sender = CallbackSender(secret, faults, config, chance=chance)
    return claimed(
        name,
        _callbacks,
        sender,
        seconds=seconds,
        lease=config.lease,
        batch=config.batch_size,
        retry_after=dt.timedelta(seconds=config.backoff_base),
        due_column="next_attempt_at",
        idle_max=config.idle_max,
        wake_channel=CALLBACK_CHANNEL,
    )


def _update(session: Session, row: Any, **values: Any) -> None:
    session.execute(
        sa.update(_callbacks).where(_callbacks.c.id == row.id).values(**values)
    )


def _behind_held(session: Session, row: Any) -> bool:
    """True if an earlier callback of the row's key is held back for it."""
    return bool(
        session.scalar(
            sa.select(
                sa.exists().where(
                    _callbacks.c.key == row.key,
                    _callbacks.c.id < row.id,
                    _callbacks.c.held.is_(True),
                    _callbacks.c.sent_at.is_(None),
                )
            )
        )
    )


def _overtaken_by_own_key(session: Session, row: Any) -> bool:
    """True if a later callback of the row's key has been sent."""
    return bool(
        session.scalar(
            sa.select(
                sa.exists().where(
                    _callbacks.c.key == row.key,
                    _callbacks.c.id > row.id,
                    _callbacks.c.sent_at.is_not(None),
                )
            )
        )
    )


def _release_held(session: Session, row: Any) -> None:
    """Let earlier held-back callbacks of the row's key go right after it."""
    session.execute(
        sa.update(_callbacks)
        .where(
            _callbacks.c.key == row.key,
            _callbacks.c.id < row.id,
            _callbacks.c.held.is_(True),
            _callbacks.c.sent_at.is_(None),
            _callbacks.c.claim_token.is_(None),
        )
        .values(next_attempt_at=sa.func.now())
    )


def _later(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)
