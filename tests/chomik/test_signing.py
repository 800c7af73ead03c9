"""Signed callbacks: sign, verify, tolerance, rotation, and the replay guard."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
import sqlalchemy as sa

from chomik.signing import (
    MalformedSignatureError,
    SignatureExpiredError,
    SignatureFromFutureError,
    SignatureMismatchError,
    prune_seen_signatures,
    remember_signature,
    sign,
    split_secrets,
    verify,
)

NOW = 1_800_000_000
TOLERANCE = 300
BODY = b'{"transaction_id":"tx-1","status":"SUCCEEDED"}'
OLD, NEW = "old-secret-0123456789", "new-secret-9876543210"


def hex_hmac(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def check(header: str | None, body: bytes = BODY, secrets=(NEW,), now=NOW):
    return verify(header, body, secrets, tolerance=TOLERANCE, now=now)


def test_sign_produces_the_documented_header():
    header = sign(BODY, NEW, now=NOW)

    assert header == f"t={NOW},v1={hex_hmac(NEW, f'{NOW}.'.encode() + BODY)}"


def test_a_good_signature_is_accepted_with_its_timestamp():
    header = sign(BODY, NEW, now=NOW)

    verified = check(header, now=NOW + 10)

    assert verified.timestamp == NOW
    assert header.endswith(verified.signature)
    assert verified.secret_index == 0
    assert verified.expires_at == dt.datetime.fromtimestamp(NOW + TOLERANCE, dt.UTC)


def test_a_tampered_body_is_refused():
    header = sign(BODY, NEW, now=NOW)

    with pytest.raises(SignatureMismatchError):
        check(header, BODY.replace(b"SUCCEEDED", b"FAILED"))


def test_a_tampered_timestamp_is_refused():
    signature = sign(BODY, NEW, now=NOW).split(",")[1]

    with pytest.raises(SignatureMismatchError):
        check(f"t={NOW + 1},{signature}")


def test_another_secret_is_refused():
    with pytest.raises(SignatureMismatchError):
        check(sign(BODY, "somebody-else", now=NOW))


def test_a_timestamp_at_the_edge_of_the_tolerance_is_accepted():
    assert check(sign(BODY, NEW, now=NOW), now=NOW + TOLERANCE).timestamp == NOW
    assert check(sign(BODY, NEW, now=NOW), now=NOW - TOLERANCE).timestamp == NOW


def test_an_old_timestamp_is_refused_even_with_a_good_signature():
    header = sign(BODY, NEW, now=NOW)

    with pytest.raises(SignatureExpiredError):
        check(header, now=NOW + TOLERANCE + 1)


def test_a_future_timestamp_beyond_the_tolerance_is_refused():
    header = sign(BODY, NEW, now=NOW + TOLERANCE + 1)

    with pytest.raises(SignatureFromFutureError):
        check(header, now=NOW)


def test_a_rotated_secret_verifies_while_both_are_configured_and_not_after():
    signed_with_old = sign(BODY, OLD, now=NOW)

    verified = check(signed_with_old, secrets=(NEW, OLD))
    assert verified.secret_index == 1
    with pytest.raises(SignatureMismatchError):
        check(signed_with_old, secrets=(NEW,))


def test_any_of_several_v1_entries_may_match():
    old = sign(BODY, OLD, now=NOW).split(",")[1]
    new = sign(BODY, NEW, now=NOW).split(",")[1]
    header = f"t={NOW},{old},{new}"

    assert check(header, secrets=(NEW,)).secret_index == 0
    assert check(header, secrets=(OLD,)).secret_index == 0
    with pytest.raises(SignatureMismatchError):
        check(header, secrets=("third-secret",))


def test_unknown_schemes_are_ignored_and_spaces_allowed():
    v1 = sign(BODY, NEW, now=NOW).split(",")[1]

    assert check(f"t={NOW}, v0=abc, {v1}").timestamp == NOW


def test_the_replay_key_ignores_which_entries_the_header_carries():
    old = sign(BODY, OLD, now=NOW).split(",")[1]
    new = sign(BODY, NEW, now=NOW).split(",")[1]

    both = check(f"t={NOW},{old},{new}", secrets=(NEW, OLD))
    only_old = check(f"t={NOW},{old}", secrets=(NEW, OLD))

    assert both.signature != only_old.signature
    assert both.replay_key == only_old.replay_key


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "v1=" + "0" * 64,
        f"t={NOW}",
        f"t=abc,v1={'0' * 64}",
        f"t=-5,v1={'0' * 64}",
        f"t={NOW},t={NOW},v1={'0' * 64}",
        f"t={NOW},v1=nothex",
        f"t={NOW},v1={'A' * 64}",
        f"t={NOW},v1={'é' * 64}",
        f"t={NOW},garbage,v1={'0' * 64}",
        f"t={NOW}," + ",".join(["v1=" + "0" * 64] * 9),
        f"t={NOW},v1={'0' * 64}," + "x" * 3000,
    ],
)
def test_malformed_headers_are_refused(header):
    with pytest.raises(MalformedSignatureError):
        check(header)


def test_split_secrets_keeps_the_signing_secret_first():
    assert split_secrets(" new , old,, ") == ("new", "old")
    assert split_secrets("") == ()


# --- replay guard, on a database that installs it -----------------------------------


def guard_rows(session) -> int:
    return session.execute(sa.text("SELECT count(*) FROM seen_signatures")).scalar()


@pytest.mark.parametrize("database", ["payment", "delivery"])
def test_a_replayed_signature_is_refused_by_the_guard(dbs, database):
    session = dbs.session(database)
    verified = check(sign(BODY, NEW, now=NOW))

    first = remember_signature(
        session, verified.replay_key, expires_at=verified.expires_at
    )
    again = remember_signature(
        session, verified.replay_key, expires_at=verified.expires_at
    )

    assert (first, again) == (True, False)
    assert guard_rows(session) == 1


def test_the_guard_is_written_in_the_callers_transaction(dbs):
    session = dbs.session("payment")
    verified = check(sign(BODY, NEW, now=NOW))

    nested = session.begin_nested()
    assert remember_signature(
        session, verified.replay_key, expires_at=verified.expires_at
    )
    nested.rollback()

    assert remember_signature(
        session, verified.replay_key, expires_at=verified.expires_at
    )


def test_expired_signatures_are_pruned_and_live_ones_kept(dbs):
    session = dbs.session("payment")
    header = sign(BODY, NEW, now=NOW)
    expired = check(header)
    live = check(sign(BODY, NEW, now=NOW + 200), now=NOW + 200)
    for verified in (expired, live):
        remember_signature(session, verified.replay_key, expires_at=verified.expires_at)

    later = expired.expires_at + dt.timedelta(seconds=1)
    assert prune_seen_signatures(session, now=later) == 1
    # Forgotten by the guard, yet refused: the window it was accepted in is over.
    with pytest.raises(SignatureExpiredError):
        check(header, now=later.timestamp())

    assert guard_rows(session) == 1
    assert not remember_signature(session, live.replay_key, expires_at=live.expires_at)
    assert remember_signature(
        session, expired.replay_key, expires_at=expired.expires_at
    )


def test_a_grace_period_keeps_expired_signatures_for_lagging_receivers(dbs):
    session = dbs.session("delivery")
    verified = check(sign(BODY, NEW, now=NOW))
    remember_signature(session, verified.replay_key, expires_at=verified.expires_at)
    later = verified.expires_at + dt.timedelta(minutes=30)

    assert prune_seen_signatures(session, now=later, grace=dt.timedelta(hours=1)) == 0
    assert not remember_signature(
        session, verified.replay_key, expires_at=verified.expires_at
    )
    assert prune_seen_signatures(session, now=later, grace=dt.timedelta(0)) == 1
