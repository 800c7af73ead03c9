"""Dead letters: `chomik dlq list|show|replay` against a real broker and consumer."""

from __future__ import annotations

import collections
import uuid

import pytest

from chomik.cli import main
from chomik.messaging.dlq import DeadLetterError, parse_ref, read_dead_letters
from chomik.messaging.kafka import Envelope, dlq, ensure_topics, envelope_of
from tests.chomik.messaging_helpers import (
    EFFECTS_DDL,
    Ping,
    consuming,
    effects,
    metric,
    publish,
    read_topic,
    record_effect,
    scratch_tables,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("committed_db")


@pytest.fixture
def engine(infra):
    with scratch_tables(infra.engine("orders"), EFFECTS_DDL) as engine:
        yield engine


@pytest.fixture
def topic(infra):
    name = f"test.dlq.{uuid.uuid4().hex[:8]}"
    ensure_topics(infra.kafka, [name], partitions=2)
    return name


def chomik_dlq(capsys, infra, *args):
    """Run `chomik dlq ...`; return (exit code, stdout, stderr)."""
    action, topic, *rest = args
    code = main(["dlq", action, "--bootstrap-servers", infra.kafka, topic, *rest])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_poison_message_is_replayed_after_the_fix_and_applied_once(
    infra, engine, topic, capsys
):
    broken = {"carrier": True}

    def ship(session, event):
        if broken["carrier"] and event.key_id.startswith("bad"):
            raise RuntimeError(f"carrier refused the address of {event.key_id}")
        record_effect(session, event)

    first, second = envelope_of(Ping("bad-1", 1)), envelope_of(Ping("bad-2", 2))
    publish(infra.kafka, topic, [envelope_of(Ping("good", 0)), first, second],
            [("origin", b"test")])  # fmt: skip
    with consuming(
        infra, engine, topic, {Ping.type: ship}, max_attempts=2, retry_backoff=0.01
    ) as consumer:
        labels = {"group": consumer.group_id, "topic": topic}
        dead = lambda: metric("consumer_dead_lettered_total", **labels)  # noqa: E731
        wait_until(lambda: dead() == 2 and effects(engine), 30)

        code, out, _ = chomik_dlq(capsys, infra, "list", topic)
        assert code == 0
        assert f"2 dead letter(s) in {dlq(topic)}" in out
        letters = {letter.envelope.id: letter for letter in
                   read_dead_letters(infra.kafka, topic)}  # fmt: skip
        bad_1, bad_2 = letters[first.id], letters[second.id]
        for letter in (bad_1, bad_2):
            (line,) = [row for row in out.splitlines() if row.startswith(letter.ref)]
            assert "RuntimeError" in line
            assert f"carrier refused the address of {letter.envelope.key}" in line
            assert str(letter.envelope.id) in line

        code, out, _ = chomik_dlq(capsys, infra, "show", topic, bad_1.ref)
        assert code == 0
        assert "RuntimeError: carrier refused the address of bad-1" in out
        assert f"source:     {topic} " in out
        assert f"(group {consumer.group_id})" in out
        assert "attempts:   2" in out
        assert "origin: test" in out
        assert f'"id": "{first.id}"' in out

        broken["carrier"] = False  # the fix is deployed
        consumed = lambda: metric("consumer_messages_consumed_total", **labels)  # noqa: E731
        duplicates = lambda: metric("consumer_duplicates_skipped_total", **labels)  # noqa: E731
        code, out, _ = chomik_dlq(capsys, infra, "replay", topic, bad_1.ref)
        assert (code, out) == (0, f"replayed {bad_1.ref} to {topic}\n")
        wait_until(lambda: consumed() == 2, 20)
        assert sorted(effects(engine)) == [("bad-1", 1), ("good", 0)]

        code, out, _ = chomik_dlq(capsys, infra, "replay", topic, "--all")
        assert code == 0
        assert len(out.splitlines()) == 2
        wait_until(lambda: consumed() == 3 and duplicates() == 1, 20)

        assert chomik_dlq(capsys, infra, "replay", topic, bad_1.ref)[0] == 0
        wait_until(lambda: duplicates() == 2, 20)
        assert dead() == 2
    assert sorted(effects(engine)) == [("bad-1", 1), ("bad-2", 2), ("good", 0)]

    records = read_topic(infra.kafka, topic)
    ids = collections.Counter(Envelope.from_json(r.value).id for r in records)
    assert (ids[first.id], ids[second.id]) == (4, 2)  # the original and its replays
    for record in records:  # as first published: the dlq.* headers are not replayed
        assert record.headers == [("origin", b"test")]
        assert record.key in (b"good", b"bad-1", b"bad-2")


def test_unknown_dead_letters_and_bad_arguments_are_refused(infra, topic, capsys):
    code, out, err = chomik_dlq(capsys, infra, "list", topic)
    assert (code, out) == (0, f"0 dead letter(s) in {dlq(topic)}\n")
    code, _, err = chomik_dlq(capsys, infra, "show", topic, "1:7")
    assert code == 1
    assert "no dead letter at 1:7" in err
    code, _, err = chomik_dlq(capsys, infra, "replay", topic)
    assert code == 1
    assert "--all" in err
    code, _, err = chomik_dlq(capsys, infra, "list", dlq(topic))
    assert code == 1
    assert "source topic" in err
    with pytest.raises(DeadLetterError):
        parse_ref("seven")
    assert parse_ref("3:14") == (3, 14)
