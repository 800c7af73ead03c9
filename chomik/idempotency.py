"""Idempotency-Key handling for unsafe requests (IETF draft, Stripe's semantics).

`install_idempotency(metadata)` adds the kit's `idempotency_keys` table to an app's
metadata; `@idempotent("orders.place")` on a view method makes the method safe to
retry with the same `Idempotency-Key` header:

* the key is scoped to the caller (the authenticated user or service) and the
  operation, and stored with the request's fingerprint (sha256 of method, route
  rule, path arguments, query and canonical JSON body);
* the key row is inserted first, in the request's own transaction (`db_session()`),
  so the key, the effect and the stored answer commit together or not at all;
* same key, same fingerprint, after the first committed: the stored answer is
  replayed (a stored 201 is replayed as 200, same body) with `Idempotent-Replayed:
  true`; same key, another fingerprint: 422 `idempotency-key-reused`;
* a repeat that arrives while the first is still running waits for it: PostgreSQL
  blocks its INSERT on the unique key until the first transaction ends. The wait is
  bounded by `IDEMPOTENCY_WAIT` (`lock_timeout` inside a savepoint); then the repeat
  replays the now-stored answer, runs itself if the first failed, or answers 409
  `request-in-progress` with `Retry-After` when the first is still running;
* a missing key is 400 `idempotency-key-missing`; an empty key, one over 255
  characters, or one that is not printable ASCII is 400 `idempotency-key-invalid`.
  The draft's quoted form (`"abc"`, a structured-field string) is accepted too;
* keys expire after `IDEMPOTENCY_KEY_TTL` (24 h): an expired key counts as absent
  (the effect may run again) and `prune_idempotency_keys` deletes it.

A request that fails (status 400 or more) stores nothing, unlike Stripe, which
also stores its 500s: the kit rolls the failed request's transaction back, effect
included, so there is nothing to protect and a retry simply runs again. Remembering
a failure would instead pin a transient error (an outage, a conflict on stock) to
the key for a day.

Place the decorator last, right above the view function (under `require_role` or
`require_service`), so the caller is known and the body validated when it runs.
The request's transaction must be READ COMMITTED (the kit's default).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import sqlalchemy as sa
from flask import Response, after_this_request, current_app, g, request
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from chomik.auth import current_user
from chomik.db import (
    LockWaitTimeoutError,
    UTCDateTime,
    compiled_once,
    lock_wait,
    utcnow,
)
from chomik.metrics import IDEMPOTENT_REPLAYS
from chomik.problems import BadRequestError, ConflictError, Problem, ProblemSchema
from chomik.web import db_session, runtime

P = ParamSpec("P")
R = TypeVar("R")

IDEMPOTENCY_TABLE = "idempotency_keys"
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_OPERATION = re.compile(r"^[a-z0-9_.-]{1,100}$")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]+$")


class IdempotencyKeyMissingError(BadRequestError):
    type, title = "idempotency-key-missing", "Idempotency-Key required"


class IdempotencyKeyInvalidError(BadRequestError):
    type, title = "idempotency-key-invalid", "Invalid Idempotency-Key"


class IdempotencyKeyReusedError(Problem):
    status, type, title = 422, "idempotency-key-reused", "Idempotency-Key reused"


class RequestInProgressError(ConflictError):
    type, title = "request-in-progress", "Request in progress"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still running; retry later",
            headers={"Retry-After": str(retry_after)},
        )


def install_idempotency(metadata: sa.MetaData) -> sa.Table:
    """Add `idempotency_keys` to `metadata` once; return it."""
    if IDEMPOTENCY_TABLE in metadata.tables:
        return metadata.tables[IDEMPOTENCY_TABLE]
    return sa.Table(
        IDEMPOTENCY_TABLE,
        metadata,
        sa.Column("scope", sa.String(300), primary_key=True),
        sa.Column("key", sa.String(MAX_KEY_LENGTH), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        # NULL until the request's answer is known; a committed row always has it.
        sa.Column("response_status", sa.SmallInteger, nullable=True),
        sa.Column("response_body", sa.JSON(none_as_null=True), nullable=True),
        sa.Column(
            "created_at", UTCDateTime, nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Index("ix_idempotency_keys_expires_at", "expires_at"),
    )


# A handle for DML, independent of any app's metadata.
_keys = install_idempotency(sa.MetaData())


@dataclass(frozen=True)
class StoredAnswer:
    """The answer a completed request left under its key."""

    status: int
    body: Any


@dataclass(frozen=True)
class KeyClaim:
    """One request's key: who, which operation, which key, which request."""

    scope: str
    key: str
    fingerprint: str


def claim_key(
    session: Session,
    claim: KeyClaim,
    *,
    ttl: dt.timedelta,
    wait: float,
    now: dt.datetime | None = None,
) -> StoredAnswer | None:
    """Insert the key row (None: the request runs) or return the stored answer.

    Lock note: a repeat of a running request blocks on the key's unique index until
    the first ends, at most `wait` seconds; the row stays locked until this
    transaction ends.
    """
    for _attempt in range(3):
        if _insert_or_take_over(session, claim, ttl=ttl, wait=wait, now=now):
            return None
        row = session.execute(
            sa.select(
                _keys.c.fingerprint, _keys.c.response_status, _keys.c.response_body
            ).where(_keys.c.scope == claim.scope, _keys.c.key == claim.key)
        ).first()
        if row is None:
            continue  # pruned between the two statements: claim it again
        if row.fingerprint != claim.fingerprint:
            raise IdempotencyKeyReusedError(
                "This Idempotency-Key was used for another request"
            )
        if row.response_status is None:
            break
        return StoredAnswer(row.response_status, row.response_body)
    raise RequestInProgressError(_retry_after(wait))


def _insert_or_take_over(
    session: Session,
    claim: KeyClaim,
    *,
    ttl: dt.timedelta,
    wait: float,
    now: dt.datetime | None,
) -> bool:
    """Insert the key, or take over an expired one; False when a live one exists."""
    now = now or utcnow()
    values = {
        "scope": claim.scope, "key": claim.key, "fingerprint": claim.fingerprint,
        "now": now, "expires_at": now + ttl,
    }  # fmt: skip
    try:
        with lock_wait(session, wait):
            owned = session.execute(_CLAIM, values).first() is not None
    except LockWaitTimeoutError as exc:
        raise RequestInProgressError(_retry_after(wait)) from exc
    return owned


def _claim_statement() -> sa.Executable:
    """Insert a key, or take over an expired one (then it is fresh again)."""
    now = sa.bindparam("now", type_=UTCDateTime())
    insert = pg_insert(_keys).values(
        scope=sa.bindparam("scope"),
        key=sa.bindparam("key"),
        fingerprint=sa.bindparam("fingerprint"),
        created_at=now,
        expires_at=sa.bindparam("expires_at", type_=UTCDateTime()),
    )
    return compiled_once(
        insert.on_conflict_do_update(
            index_elements=[_keys.c.scope, _keys.c.key],
            set_={
                "fingerprint": insert.excluded.fingerprint,
                "response_status": sa.null(),
                "response_body": sa.null(),
                "created_at": insert.excluded.created_at,
                "expires_at": insert.excluded.expires_at,
            },
            where=_keys.c.expires_at <= now,
        ).returning(_keys.c.key)
    )


_CLAIM = _claim_statement()


def _retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


def record_answer(session: Session, claim: KeyClaim, *, status: int, body: Any) -> None:
    """Store the answer under the claimed key (in the request's transaction)."""
    session.execute(
        sa.update(_keys)
        .where(_keys.c.scope == claim.scope, _keys.c.key == claim.key)
        .values(response_status=status, response_body=body)
    )


def prune_idempotency_keys(session: Session, *, now: dt.datetime | None = None) -> int:
    """Delete expired keys; return how many."""
    result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.delete(_keys).where(_keys.c.expires_at <= (now or utcnow()))
    )
    return result.rowcount


def parse_key(header: str | None) -> str:
    """Read the key from an `Idempotency-Key` header value; 400 when unusable."""
    if header is None:
        raise IdempotencyKeyMissingError(f"This operation requires an {HEADER} header")
    key = header
    if len(key) >= 2 and key.startswith('"') and key.endswith('"'):
        key = _unquote(key[1:-1])
    if not key or len(key) > MAX_KEY_LENGTH or not _PRINTABLE_ASCII.match(key):
        raise IdempotencyKeyInvalidError(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key


def _unquote(inner: str) -> str:
    """The content of a structured-field string (RFC 8941 §3.3.3)."""
    if re.search(r'(?<!\\)"|\\(?!")', inner.replace("\\\\", "")):
        raise IdempotencyKeyInvalidError(f"{HEADER} is a malformed quoted string")
    return re.sub(r"\\([\"\\])", r"\1", inner)


def request_fingerprint() -> str:
    """Hash the request's method, rule, arguments and canonical body (sha256)."""
    body: Any = request.get_json(silent=True) if request.is_json else None
    if body is None:
        body = {"raw-sha256": hashlib.sha256(request.get_data()).hexdigest()}
    parts = {
        "method": request.method,
        "rule": request.url_rule.rule if request.url_rule else request.path,
        "view_args": request.view_args or {},
        "query": sorted(request.args.items(multi=True)),
        "body": body,
    }
    canonical = json.dumps(
        parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _caller_id() -> str:
    service = g.get("chomik_service")
    caller = str(service.id) if service is not None else current_user().id
    if len(caller) > 190:  # keeps the scope within its column, still unique
        caller = "sha256:" + hashlib.sha256(caller.encode()).hexdigest()
    return caller


def _replay(answer: StoredAnswer) -> Response:
    """The stored answer again; a creation (201) is replayed as 200."""
    status = 200 if answer.status == 201 else answer.status
    if answer.body is None:
        response = Response(status=status)
    else:
        # The app's own JSON provider, so the replay matches the first answer.
        response = cast(Response, current_app.json.response(answer.body))
        response.status_code = status
    response.headers[REPLAYED_HEADER] = "true"
    return response


def idempotent(operation: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Make a view method replay its answer for a repeated `Idempotency-Key`."""
    if not _OPERATION.match(operation):
        raise ValueError(
            f"operation name {operation!r} must match {_OPERATION.pattern}"
        )

    def decorator(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            key = parse_key(request.headers.get(HEADER))
            claim = KeyClaim(f"{operation} {_caller_id()}", key, request_fingerprint())
            settings = runtime().settings
            session = db_session()
            try:
                stored = claim_key(
                    session,
                    claim,
                    ttl=dt.timedelta(seconds=settings.idempotency_key_ttl),
                    wait=settings.idempotency_wait,
                )
            except (IdempotencyKeyReusedError, RequestInProgressError) as problem:
                IDEMPOTENT_REPLAYS.labels(operation, problem.type).inc()
                raise
            if stored is not None:
                IDEMPOTENT_REPLAYS.labels(operation, "replayed").inc()
                return _replay(stored)

            @after_this_request
            def remember(response: Response) -> Response:
                # Runs before the kit commits; a failure rolls the key back anyway.
                if response.status_code < 400:
                    body = response.get_json(silent=True) if response.is_json else None
                    record_answer(
                        session, claim, status=response.status_code, body=body
                    )
                return response

            return view(*args, **kwargs)

        _document(wrapper)
        return wrapper

    return decorator


def _document(view: Any) -> None:
    """Add the header and the key's problems to the view's OpenAPI (flask-smorest)."""
    apidoc = dict(getattr(view, "_apidoc", {}))
    arguments = dict(apidoc.get("arguments", {}))
    arguments["parameters"] = [
        *arguments.get("parameters", []),
        {
            "in": "header",
            "name": HEADER,
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
            "description": (
                "Unique per intended operation; a repeat with the same key and body "
                "gets the first answer again (a 201 as 200), with "
                f"`{REPLAYED_HEADER}: true`. Remembered for 24 hours by default."
            ),
        },
    ]
    apidoc["arguments"] = arguments
    response = dict(apidoc.get("response", {}))
    responses = {k: list(v) for k, v in response.get("responses", {}).items()}
    # flask-smorest lets the innermost description of a status win, so each one
    # also covers what the view's own answer of that status may mean.
    for status, description in (
        (400, "Idempotency-Key missing or invalid"),
        (409, "A conflict, or this Idempotency-Key's request still running"),
        (422, "Invalid input, or this Idempotency-Key used for another request"),
    ):
        responses.setdefault(status, []).append(
            {
                "schema": ProblemSchema(),
                "description": description,
                "content_type": None,
            }
        )
    response["responses"] = responses
    apidoc["response"] = response
    view._apidoc = apidoc
