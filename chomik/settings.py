"""Process settings: one frozen dataclass per process, read once from the environment.

Each field names its environment variable in its metadata (`env(...)`), so
`from_env` is the one parser for every app; apps subclass `Settings` to add fields.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

DEV_SECRET = "dev-only-service-secret-change-me-please"
EMBEDDED_PG_PORT = 17432
EMBEDDED_KAFKA_PORT = 17092
# Partitions of the topics workers create: the most replicas of one worker sharing
# its consumption. Each costs an idle consumer's every fetch some work (the embedded
# broker looks at every partition again and again while it holds a fetch).
DEFAULT_PARTITIONS = 4


def env(
    name: str,
    default: Any = dataclasses.MISSING,
    *,
    secret: bool = False,
    doc: str = "",
) -> Any:
    """Declare a settings field read from the environment variable `name`."""
    return field(default=default, metadata={"env": name, "secret": secret, "doc": doc})


def _to_bool(raw: str) -> bool:
    return raw.strip().lower() in {"1", "true", "yes", "on"}


_COERCERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": _to_bool,
    "str": str,
}


class SettingsError(RuntimeError):
    """A setting is missing, malformed, or unsafe for this environment."""


def embedded_database_url(database: str) -> str:
    """URL of a database on the embedded cluster that `chomik run` starts."""
    return f"postgresql+psycopg2://postgres@127.0.0.1:{EMBEDDED_PG_PORT}/{database}"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Settings common to every process."""

    APP: ClassVar[str] = "chomik"

    environment: str = env(
        "ENVIRONMENT", "development", doc="development or production"
    )
    database_url: str = env(
        "DATABASE_URL",
        "",
        doc="this process's own database (required with ENVIRONMENT=production)",
    )
    kafka_bootstrap_servers: str = env(
        "KAFKA_BOOTSTRAP_SERVERS",
        f"127.0.0.1:{EMBEDDED_KAFKA_PORT}",
        doc="Kafka brokers",
    )
    topic_partitions: int = env(
        "TOPIC_PARTITIONS",
        DEFAULT_PARTITIONS,
        doc="partitions of each topic a worker creates (existing topics are left "
        "alone): the most replicas of one worker that share its consumption",
    )
    log_level: str = env("LOG_LEVEL", "INFO", doc="logging level")
    jwt_public_key_file: str = env(
        "JWT_PUBLIC_KEY_FILE", "", doc="PEM public key verifying access tokens"
    )
    jwks_url: str = env(
        "JWKS_URL",
        "http://127.0.0.1:17000/api/v1/auth/jwks",
        doc="JWKS of the gateway, used when no public key file is set",
    )
    jwt_issuer: str = env("JWT_ISSUER", "chomik-gateway", doc="access token issuer")
    jwt_audience: str = env("JWT_AUDIENCE", "chomik", doc="access token audience")
    service_token_secret: str = env(
        "SERVICE_TOKEN_SECRET",
        DEV_SECRET,
        secret=True,
        doc="HMAC key of service tokens",
    )
    signature_tolerance: int = env(
        "SIGNATURE_TOLERANCE",
        300,
        doc="seconds a signed callback's timestamp may be off from now, either way",
    )
    seen_signature_retention: int = env(
        "SEEN_SIGNATURE_RETENTION",
        86400,
        doc="seconds a seen signature is kept past its expiry (as long as a consumer of callbacks may lag)",
    )
    http_timeout: float = env(
        "HTTP_TIMEOUT", 5.0, doc="seconds for every outgoing call"
    )
    body_timeout: float = env(
        "BODY_TIMEOUT",
        10.0,
        doc="seconds a request's body may stop arriving before the request is "
        "refused (400) and its thread freed",
    )
    consumer_idle_wait_max: float = env(
        "CONSUMER_IDLE_WAIT_MAX",
        2.0,
        doc="longest the broker may hold an idle consumer's fetch (it answers "
        "sooner when a record comes; 0: always 50 ms, a fetch per 50 ms)",
    )
    scheduler_replica_id: str = env(
        "SCHEDULER_REPLICA_ID", "", doc="stable replica id (default: host name)"
    )
    jobstore_retention: int = env(
        "JOBSTORE_RETENTION",
        24 * 3600,
        doc="seconds before the job-store table of a replica not seen is dropped",
    )
    outbox_retention: int = env(
        "OUTBOX_RETENTION", 24 * 3600, doc="seconds a sent outbox row is kept"
    )
    inbox_retention: int = env(
        "INBOX_RETENTION",
        14 * 24 * 3600,
        doc="seconds a consumed event's id is kept to skip its redelivery",
    )
    metrics_host: str = env(
        "METRICS_HOST",
        "127.0.0.1",
        doc="address METRICS_PORT is served on",
    )
    metrics_port: int = env(
        "METRICS_PORT",
        0,
        doc="port a worker serves /metrics and /health/* on (0: not served); "
        "for a web process under gunicorn, the port /metrics is served on "
        "instead of the public one (0: on the public one)",
    )
    idempotency_key_ttl: int = env(
        "IDEMPOTENCY_KEY_TTL",
        86400,
        doc="seconds an Idempotency-Key and its answer are remembered",
    )
    idempotency_wait: float = env(
        "IDEMPOTENCY_WAIT",
        2.0,
        doc="seconds a repeated request waits for the first before 409",
    )

    def __post_init__(self) -> None:
        if not self.body_timeout > 0:  # 0 would make the socket non-blocking
            raise SettingsError("BODY_TIMEOUT must be a number of seconds above 0")
        if self.environment == "production":
            self._refuse_default_secrets()
            self._refuse_embedded_database()
        if not self.database_url:
            object.__setattr__(
                self, "database_url", embedded_database_url(self.database)
            )
        if not self.scheduler_replica_id:
            object.__setattr__(self, "scheduler_replica_id", socket.gethostname())

    @property
    def database(self) -> str:
        """Name of this app's own database."""
        return f"chomik_{self.APP}"

    def _refuse_default_secrets(self) -> None:
        for f in dataclasses.fields(self):
            if not f.metadata.get("secret"):
                continue
            # A list of secrets (rotation) must hold no default among its values.
            values = {v.strip() for v in str(getattr(self, f.name)).split(",")}
            defaults = {"", DEV_SECRET, *str(f.default).split(",")}
            if values & defaults:
                raise SettingsError(
                    f"{f.metadata['env']} is left at its development default: "
                    "set it before starting with ENVIRONMENT=production"
                )

    def _refuse_embedded_database(self) -> None:
        # The embedded cluster is `chomik run`'s; a production process falling back
        # to it would write its data to a database nobody backs up. Apps' own
        # database URL fields (`*DATABASE_URL`) get the same rule.
        for f in dataclasses.fields(self):
            name = f.metadata.get("env", "")
            if name.endswith("DATABASE_URL") and not getattr(self, f.name):
                raise SettingsError(
                    f"{name} is not set: with ENVIRONMENT=production there is no "
                    "fallback to the embedded development cluster"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build the settings from the environment (only at process start)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata.get("env")
            if name is None or name not in environ:
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            try:
                values[f.name] = _COERCERS.get(kind, str)(environ[name])
            except ValueError as exc:
                raise SettingsError(
                    f"{name}={environ[name]!r} is not a valid {kind}"
                ) from exc
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        """Return a copy with some fields changed (tests build settings this way)."""
        return dataclasses.replace(self, **changes)


def describe(settings_classes: list[type[Settings]]) -> list[tuple[str, str, str, str]]:
    """List (variable, default, meaning, processes) for the README's table."""
    rows: dict[str, tuple[str, str, list[str]]] = {}
    for klass in settings_classes:
        for f in dataclasses.fields(klass):
            name = f.metadata.get("env")
            if name is None:
                continue
            default = "" if f.metadata.get("secret") else str(f.default)
            entry = rows.setdefault(name, (default, f.metadata.get("doc", ""), []))
            entry[2].append(klass.APP)
    return [(n, d, doc, ", ".join(apps)) for n, (d, doc, apps) in sorted(rows.items())]
