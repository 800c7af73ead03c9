"""The signed callback queue: durable, retried until a 2xx, and its fault switches."""

import dataclasses
import datetime as dt
import json
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from chomik.jobs import JobContext
from chomik.settings import Settings
from chomik.signing import HEADER, verify
from chomik.webhooks import (
    Faults,
    SenderConfig,
    backoff,
    callback_job,
    clear_faults,
    current_faults,
    enqueue_callback,
    prune_sent_callbacks,
    set_faults,
)
from tests.receiver import Receiver

SECRET = "webhook-test-secret"
QUICK = SenderConfig(backoff_base=0.01, backoff_max=0.02, reorder_hold=30)


@pytest.fixture
def sessions(committed_db):
    # The bank's database holds the kit's callback tables.
    return sessionmaker(bind=committed_db.engine("bank"), expire_on_commit=False)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def enqueue(sessions, url, *, key="k1", **payload):
    event_id = uuid.uuid4()
    with sessions.begin() as session:
        enqueue_callback(
            session, url, {"event_id": str(event_id), **payload}, key=key,
            event_id=event_id,
        )  # fmt: skip
    return event_id


class Sender:
    """The callback job run by hand: `send_due()` is one run."""

    def __init__(self, sessions, faults=None, config=QUICK, chance=0.0):
        self.job = callback_job(
            SECRET, faults or Faults(), config=config, chance=lambda: chance
        )
        self.context = JobContext(Settings(), sessions, "webhook-test")

    def send_due(self):
        return sum(self.job.func(self.context).values())


def sender(sessions, faults=None, chance=0.0):
    return Sender(sessions, faults, chance=chance)


def rows(sessions):
    with sessions() as session:
        return session.execute(
            sa.text("SELECT * FROM outgoing_callbacks ORDER BY id")
        ).all()


def event_ids(receiver):
    return [json.loads(call.body)["event_id"] for call in receiver.calls]


def test_a_queued_callback_is_posted_once_with_a_valid_signature(sessions, receiver):
    event_id = enqueue(sessions, receiver.url, status="SUCCEEDED")
    assert sender(sessions).send_due() == 1
    (call,) = receiver.calls
    assert json.loads(call.body) == {"event_id": str(event_id), "status": "SUCCEEDED"}
    assert call.headers["Content-Type"] == "application/json"
    verify(call.headers[HEADER], call.body, [SECRET], tolerance=10)
    (row,) = rows(sessions)
    assert row.sent_at is not None
    assert row.attempts == 1
    assert sender(sessions).send_due() == 0
    assert len(receiver.calls) == 1


def test_queuing_the_same_event_twice_keeps_one_row(sessions, receiver):
    event_id = uuid.uuid4()
    with sessions.begin() as session:
        first = enqueue_callback(session, receiver.url, {}, key="k", event_id=event_id)
        again = enqueue_callback(session, receiver.url, {}, key="k", event_id=event_id)
    assert (first, again) == (True, False)
    assert len(rows(sessions)) == 1


def test_a_rolled_back_transaction_queues_nothing(sessions, receiver):
    with sessions() as session:
        enqueue_callback(session, receiver.url, {}, key="k", event_id=uuid.uuid4())
        session.rollback()
    assert rows(sessions) == []


def test_a_failing_receiver_is_retried_until_it_answers_2xx(sessions, receiver):
    receiver.answers = [500, 503]
    event_id = enqueue(sessions, receiver.url)
    send = sender(sessions)
    for _ in range(100):
        send.send_due()
        if len(receiver.calls) == 3:
            break
    assert event_ids(receiver) == [str(event_id)] * 3
    (row,) = rows(sessions)
    assert row.attempts == 3
    assert row.sent_at is not None
    assert row.last_error is None


def test_an_unreachable_receiver_is_recorded_and_retried_later(sessions):
    enqueue(sessions, "http://127.0.0.1:9/nobody-listens")
    Sender(sessions, config=SenderConfig(backoff_base=60)).send_due()
    (row,) = rows(sessions)
    assert row.sent_at is None
    assert row.attempts == 1
    assert "ConnectionError" in row.last_error
    assert row.next_attempt_at > row.created_at


def test_backoff_doubles_and_is_capped():
    assert [backoff(n, 1.0, 5.0) for n in (1, 2, 3, 4, 10)] == [1, 2, 4, 5, 5]


def test_a_dropped_callback_counts_as_sent_without_being_sent(sessions, receiver):
    enqueue(sessions, receiver.url)
    sender(sessions, Faults(drop=1.0)).send_due()
    assert receiver.calls == []
    (row,) = rows(sessions)
    assert row.sent_at is not None
    assert row.last_error == "dropped (fault)"


def test_a_duplicated_callback_arrives_twice_with_one_event_id(sessions, receiver):
    event_id = enqueue(sessions, receiver.url)
    sender(sessions, Faults(duplicate=1.0)).send_due()
    assert event_ids(receiver) == [str(event_id)] * 2
    # A resend, not a replay: each copy verifies, and their signatures differ.
    first, second = (
        verify(call.headers[HEADER], call.body, [SECRET], tolerance=10)
        for call in receiver.calls
    )
    assert first.replay_key != second.replay_key


def test_a_reordered_callback_goes_after_a_later_one_of_its_key(sessions, receiver):
    first = enqueue(sessions, receiver.url, key="tx")
    send = sender(sessions, Faults(reorder=1.0))
    send.send_due()
    assert receiver.calls == []  # held back, waiting for a later one
    second = enqueue(sessions, receiver.url, key="tx")
    other = enqueue(sessions, receiver.url, key="another")
    send.send_due()  # the later one goes, and releases the held one
    send.send_due()
    assert event_ids(receiver)[:2] == [str(second), str(first)]
    assert set(event_ids(receiver)) == {str(first), str(second)}
    assert str(other) not in event_ids(receiver)  # the other key's own hold


def test_held_callbacks_of_several_keys_go_newest_first(sessions, receiver):
    config = dataclasses.replace(QUICK, reorder_step=0.01)
    send = Sender(sessions, Faults(reorder=1.0), config=config)
    queued = [enqueue(sessions, receiver.url, key=f"tx{n}") for n in range(3)]
    send.send_due()
    assert receiver.calls == []  # all three held back
    with sessions.begin() as session:  # the oldest one's hold ends first
        session.execute(
            sa.text(
                "UPDATE outgoing_callbacks SET next_attempt_at = now()"
                " WHERE id = (SELECT min(id) FROM outgoing_callbacks)"
            )
        )
    for _ in range(100):
        if len(receiver.calls) == 3:
            break
        send.send_due()
        time.sleep(0.02)
    assert event_ids(receiver) == [str(e) for e in reversed(queued)]


def test_no_callback_is_held_longer_than_three_holds(sessions, receiver):
    send = Sender(sessions, Faults(reorder=1.0))
    oldest = enqueue(sessions, receiver.url, key="tx0")
    for n in (1, 2):
        enqueue(sessions, receiver.url, key=f"tx{n}")
    send.send_due()
    with sessions.begin() as session:  # held for longer than 3 x 30 s
        session.execute(
            sa.text(
                "UPDATE outgoing_callbacks SET next_attempt_at = now(),"
                " created_at = now() - interval '91 seconds'"
                " WHERE id = (SELECT min(id) FROM outgoing_callbacks)"
            )
        )
    send.send_due()
    assert event_ids(receiver) == [str(oldest)]  # the later ones still held


def test_a_delay_holds_callbacks_back(sessions, receiver):
    enqueue(sessions, receiver.url)
    sender(sessions, Faults(delay=60)).send_due()
    assert receiver.calls == []
    (row,) = rows(sessions)
    assert row.attempts == 0
    assert row.next_attempt_at >= row.created_at + dt.timedelta(seconds=59)
    with sessions.begin() as session:  # the row's time comes
        session.execute(
            sa.text("UPDATE outgoing_callbacks SET next_attempt_at = now()")
        )
    assert sender(sessions, Faults(delay=0)).send_due() == 1
    assert len(receiver.calls) == 1


def test_run_time_switches_override_the_settings_until_cleared(sessions):
    defaults = Faults(drop=0.5, delay=2.0)
    with sessions.begin() as session:
        set_faults(session, {"drop": 1.0, "unavailable_until": 1e12})
    with sessions.begin() as session:
        faults = current_faults(session, defaults)
        assert faults == Faults(drop=1.0, delay=2.0, unavailable_until=1e12)
        assert faults.unavailable()
        clear_faults(session)
    with sessions() as session:
        assert current_faults(session, defaults) == defaults


def test_unknown_switches_are_refused(sessions):
    with sessions() as session, pytest.raises(ValueError, match="nonsense"):
        set_faults(session, {"nonsense": 1.0})


def test_sent_callbacks_are_pruned_after_their_retention(sessions, receiver):
    enqueue(sessions, receiver.url)
    pending = enqueue(sessions, "http://127.0.0.1:9/nobody-listens")
    sender(sessions).send_due()
    with sessions.begin() as session:
        assert prune_sent_callbacks(session, older_than=dt.timedelta(hours=1)) == 0
        assert prune_sent_callbacks(session, older_than=dt.timedelta(0)) == 1
    assert [row.event_id for row in rows(sessions)] == [pending]


def test_a_lost_lease_undoes_the_row_update_but_the_callback_went_out(
    sessions, receiver
):
    """At least once: another sender took the row over, so it is sent again."""
    enqueue(sessions, receiver.url)
    job = Sender(sessions).job

    def take_over(session, row):
        with sessions.begin() as other:
            other.execute(
                sa.text("UPDATE outgoing_callbacks SET claim_token = gen_random_uuid()")
            )
        return handler(session, row)

    handler = job.func.handle
    stolen = dataclasses.replace(job.func, handle=take_over)
    counts = stolen(JobContext(Settings(), sessions, "webhook-test"))
    assert counts["stale"] == 1
    (row,) = rows(sessions)
    assert row.sent_at is None
    assert row.attempts == 0
    assert len(receiver.calls) == 1
