"""Test infrastructure: private PostgreSQL, Tansu, keys, settings, tokens."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from apps.gateway.revocations import Revocations
from chomik import migrating
from chomik.auth import generate_key_pair, issue_service_token, key_id
from chomik.infra import KafkaBroker, PostgresCluster, free_port, private_cluster
from chomik.settings import Settings
from chomik.web import runtime

S = TypeVar("S", bound=Settings)

TEST_SERVICE_SECRET = "test-service-secret-0123456789abcdef0123"
ISSUER, AUDIENCE = "chomik-gateway", "chomik"


def issue_access_token(
    private_pem: bytes,
    *,
    subject: str,
    roles: Any,
    issuer: str,
    audience: str,
    ttl: int,
    kid: str,
    extra: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign an access token like the gateway's, with any key and claims (forgeries).

    The gateway signs through flask-jwt-extended in its app context; tests need
    tokens without one, signed by keys the gateway never had.
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject, "roles": sorted(roles), "jti": uuid.uuid4().hex,
        "iat": now, "nbf": now, "exp": now + ttl, "iss": issuer, "aud": audience,
        "type": "access", "fresh": False, **(extra or {}),
    }  # fmt: skip
    token = jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": kid})
    return token, claims


@dataclass
class Infra:
    """The running test infrastructure."""

    base_dir: Path
    cluster: PostgresCluster
    broker: KafkaBroker
    urls: dict[str, str]
    engines: dict[str, Engine] = field(default_factory=dict)

    @property
    def kafka(self) -> str:
        return self.broker.bootstrap_servers

    def engine(self, name: str) -> Engine:
        """A shared engine of one service database (`orders`, `storage`, ...)."""
        if name not in self.engines:
            self.engines[name] = sa.create_engine(self.urls[name], pool_size=20)
        return self.engines[name]


@pytest.fixture(autouse=True)
def _deny_lists_end_with_their_test() -> Iterator[None]:
    """Stop the deny-list threads a test's gateway apps started (each holds a
    connection, and an app of a test is never used again)."""
    started: list[Revocations] = []
    start = Revocations.start

    def recorded(self: Revocations) -> None:
        if self not in started:
            started.append(self)
        start(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Revocations, "start", recorded)
        yield
    for revocations in started:
        revocations.close()


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """A private PostgreSQL cluster (prepared transactions on) and a Tansu broker.

    As root, `postgres` must reach the data directory, so it lives under /tmp.
    """
    with (
        private_cluster("chomik-test-", durable=False) as cluster,
        KafkaBroker(
            port=free_port(), log_path=cluster.base_dir.parent / "tansu.log"
        ) as broker,
    ):
        names = [migrating.database_name(n) for n in migrating.DATABASES]
        cluster.create_databases(names)
        urls = {n: cluster.url(migrating.database_name(n)) for n in migrating.DATABASES}
        # The cluster runs with synchronous_commit off for speed; txcoord refuses a
        # log database without it.
        admin = sa.create_engine(cluster.url("postgres"))
        with admin.begin() as conn:
            conn.execute(
                sa.text(
                    f"ALTER DATABASE {migrating.database_name('txcoord')} "
                    "SET synchronous_commit = on"
                )
            )
        admin.dispose()
        for name, url in urls.items():
            migrating.upgrade(name, url)
        state = Infra(cluster.base_dir.parent, cluster, broker, urls)
        yield state
        for engine in state.engines.values():
            engine.dispose()


class Databases:
    """Savepoint-isolated access to the service databases for one test.

    Each database gets one connection inside an outer transaction that is rolled
    back after the test; sessions and apps join it with savepoints, so a test's
    commits are visible to itself and to nobody else.
    """

    def __init__(self, infra: Infra) -> None:
        self.infra = infra
        self.connections: dict[str, tuple[Connection, Any]] = {}

    def connection(self, name: str) -> Connection:
        if name not in self.connections:
            conn = self.infra.engine(name).connect()
            self.connections[name] = (conn, conn.begin())
        return self.connections[name][0]

    def sessions(self, name: str) -> sessionmaker[Session]:
        return sessionmaker(
            bind=self.connection(name),
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
        )

    def session(self, name: str) -> Session:
        return self.sessions(name)()

    def bind_app(self, app: Flask, name: str) -> Flask:
        """Make the app's requests run inside this test's transaction."""
        runtime(app).sessions = self.sessions(name)
        return app

    def close(self) -> None:
        for conn, outer in self.connections.values():
            if outer.is_active:
                outer.rollback()
            conn.close()


@pytest.fixture
def dbs(infra: Infra) -> Iterator[Databases]:
    """Savepoint-isolated sessions on every service database."""
    databases = Databases(infra)
    yield databases
    databases.close()


@pytest.fixture
def committed_db(infra: Infra) -> Iterator[Infra]:
    """For tests that must really commit (SKIP LOCKED, 2PC, other processes).

    Every table of every service database is truncated afterwards.
    """
    yield infra
    for name in migrating.DATABASES:
        engine = infra.engine(name)
        with engine.begin() as conn:
            tables = (
                conn.execute(
                    sa.text(
                        "SELECT quote_ident(tablename) FROM pg_tables "
                        "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
                .scalars()
                .all()
            )
            if tables:
                conn.execute(
                    sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
                )


@dataclass(frozen=True)
class Keys:
    private_pem: bytes
    public_pem: bytes
    public_file: Path
    kid: str


@pytest.fixture(scope="session")
def jwt_keys() -> Iterator[Keys]:
    """The test key pair that signs access tokens."""
    private, public = generate_key_pair()
    directory = Path(tempfile.mkdtemp(prefix="chomik-keys-"))
    public_file = directory / "jwt-public.pem"
    public_file.write_bytes(public)
    (directory / "jwt-private.pem").write_bytes(private)
    yield Keys(private, public, public_file, key_id(public))
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def make_token(jwt_keys: Keys) -> Callable[..., str]:
    """Mint an access token: make_token("user-id", "buyer", ttl=300)."""

    def mint(subject: str, *roles: str, ttl: int = 300, **extra: Any) -> str:
        token, _ = issue_access_token(
            jwt_keys.private_pem, subject=subject, roles=roles, issuer=ISSUER,
            audience=AUDIENCE, ttl=ttl, kid=jwt_keys.kid, extra=extra,
        )  # fmt: skip
        return token

    return mint


@pytest.fixture
def service_token() -> str:
    """A valid service token for internal endpoints."""
    return issue_service_token(TEST_SERVICE_SECRET, "tests")


@pytest.fixture
def settings_for(infra: Infra, jwt_keys: Keys) -> Callable[..., Any]:
    """Build an app's settings pointed at the test infrastructure."""

    def build(klass: type[S], **overrides: Any) -> S:
        values: dict[str, Any] = {
            "database_url": infra.urls.get(klass.APP, infra.urls["gateway"]),
            "kafka_bootstrap_servers": infra.kafka,
            "jwt_public_key_file": str(jwt_keys.public_file),
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "service_token_secret": TEST_SERVICE_SECRET,
            "scheduler_replica_id": f"test-{os.getpid()}",
        }
        values.update(overrides)
        return klass(**values)

    return build


def auth(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}
