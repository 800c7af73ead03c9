"""The gateway worker and its prune of refresh tokens, on the real gateway database."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from apps.gateway.jobs import JOBS
from apps.gateway.models import RefreshFamily, RefreshToken, RevokedToken, User
from apps.gateway.settings import GatewaySettings
from apps.gateway.worker import build_worker
from chomik.db import utcnow
from chomik.jobs import JobContext

DAY = dt.timedelta(days=1)


def add_user(session):
    user = User(email=f"{uuid.uuid4().hex}@example.com", name="Ann", role="buyer",
                password_hash="x")  # fmt: skip
    session.add(user)
    session.flush()
    return user


def add_family(session, user, *, created=None, revoked=None, tokens=()):
    """A family with tokens given as (label, expires_at, used_at)."""
    family = RefreshFamily(user_id=user.id, created_at=created or utcnow(),
                           revoked_at=revoked)  # fmt: skip
    session.add(family)
    session.flush()
    for label, expires_at, used_at in tokens:
        session.add(RefreshToken(family_id=family.id, token_hash=label,
                                 expires_at=expires_at, used_at=used_at))  # fmt: skip
    session.flush()
    return family


def test_prune_keeps_what_can_still_serve_and_drops_the_rest(dbs, settings_for):
    now = utcnow()
    session = dbs.session("gateway")
    user = add_user(session)
    live = add_family(session, user, tokens=[
        ("active", now + DAY, None),
        ("spent", now + DAY, now - dt.timedelta(hours=3)),  # detects a reuse
        ("long-expired", now - 2 * DAY, now - 3 * DAY),
    ])  # fmt: skip
    revoked_long_ago = add_family(session, user, revoked=now - 2 * DAY,
                                  tokens=[("of-revoked", now + DAY, None)])  # fmt: skip
    revoked_lately = add_family(session, user, revoked=now - dt.timedelta(hours=1),
                                tokens=[("of-recent", now + DAY, None)])  # fmt: skip
    dead = add_family(session, user, created=now - 40 * DAY,
                      tokens=[("dead", now - 2 * DAY, None)])  # fmt: skip
    session.add_all([
        RevokedToken(jti="gone", expires_at=now - dt.timedelta(minutes=1)),
        RevokedToken(jti="denied", expires_at=now + dt.timedelta(minutes=4)),
    ])  # fmt: skip
    session.commit()
    settings = settings_for(GatewaySettings, refresh_token_retention=86400)
    (job,) = [j for j in JOBS if j.name == "prune_refresh_tokens"]

    deleted = job.func(JobContext(settings, dbs.sessions("gateway"), "gw-test"))

    families = set(session.scalars(sa.select(RefreshFamily.id)))
    tokens = set(session.scalars(sa.select(RefreshToken.token_hash)))
    denied = set(session.scalars(sa.select(RevokedToken.jti)))
    assert families == {live.id, revoked_lately.id}
    assert revoked_long_ago.id not in families
    assert dead.id not in families
    assert tokens == {"active", "spent", "of-recent"}
    assert denied == {"denied"}
    assert deleted == 5  # 1 revoked family, 2 expired tokens, 1 empty family, 1 jti


def test_the_gateway_worker_runs_jobs_only(settings_for):
    worker = build_worker(settings_for(GatewaySettings))
    try:
        assert not worker.with_relay
        assert worker.consumers == {}
        names = {job.name for job in worker.jobs}
        assert {"prune_refresh_tokens", "drop_stale_jobstores"} <= names
    finally:
        worker.engine.dispose()
