"""The web app factory of every service.

API and errors, request id, one DB session per request, health and metrics.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Blueprint
from gunicorn.http.errors import ParseException
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from chomik import jsonbounds, problems
from chomik.auth import VerifyingKeys, access_of, init_tokens
from chomik.db import make_engine, make_session_factory
from chomik.logs import (
    REQUEST_ID_HEADER,
    accept_request_id,
    configure_logging,
    request_id_var,
)
from chomik.settings import Settings

S = TypeVar("S", bound=Settings)
log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Every answer is JSON for programs: nothing may run, load, or frame it. A page
# that needs more (the gateway's /docs) sets its own Content-Security-Policy.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# Methods metrics name as they are; any other becomes "other", so a client
# cannot add label values (time series) by inventing method names.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class Runtime:
    """What the kit keeps on each app: settings, engine, sessions, readiness checks."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    ready_checks: list[Callable[[], None]] = field(default_factory=list)


def runtime(app: Flask | None = None) -> Runtime:
    """The kit's runtime of the current (or given) app."""
    return (app or current_app).extensions["chomik"]  # type: ignore[no-any-return]


def settings_of(kind: type[S]) -> S:
    """The settings of the current app, typed as the app's own class."""
    settings = runtime().settings
    if not isinstance(settings, kind):
        raise TypeError(f"settings are {type(settings).__name__}, not {kind.__name__}")
    return settings


def db_session() -> Session:
    """The request's session; the kit commits it when the view succeeds."""
    if "chomik_session" not in g:
        g.chomik_session = runtime().sessions()
    session: Session = g.chomik_session
    return session


def create_app(
    name: str,
    settings: Settings,
    blueprints: Iterable[Blueprint],
    *,
    title: str | None = None,
    description: str = "",
    engine: Engine | None = None,
) -> Flask:
    """Build a service's Flask app with every cross-cutting concern wired in."""
    configure_logging(name, settings.log_level)
    app = Flask(name)
    app.json = BoundedJSONProvider(app)
    # No redirect is ever built from the request's Host header: `//x` and `x/`
    # are simply other paths (404), never a 308 to a forged host.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.url_map.redirect_defaults = False
    app.config.update(
        API_TITLE=title or f"Chomik {name}",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    engine = engine or make_engine(settings.database_url)
    app.extensions["chomik"] = Runtime(settings, engine, make_session_factory(engine))
    init_tokens(
        app,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        keys=VerifyingKeys(
            public_key_file=settings.jwt_public_key_file, jwks_url=settings.jwks_url
        ),
        service_secret=settings.service_token_secret,
    )
    api = problems.ProblemApi(
        app, spec_kwargs={"info": {"description": description}} if description else None
    )
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    for blueprint in blueprints:
        api.register_blueprint(
            blueprint, url_prefix=f"/api/v1{blueprint.url_prefix or ''}"
        )
    problems.register(app)
    _wire_request_cycle(app)
    _add_health(app)
    _add_metrics(app, settings)
    # After the exporter's own hook, so it runs before it (Flask runs them last first).
    app.after_request(_collapse_unknown_method)
    app.extensions["chomik.api"] = api
    return app


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, parsing with the kit's bounds on depth and number length."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsonbounds.loads(s)


V = TypeVar("V", bound=Callable[..., Any])


def streams_body(view: V) -> V:
    """Mark a view that passes its body on unread (the kit then never parses it)."""
    view.chomik_streams_body = True  # type: ignore[attr-defined]
    return view


# Text PostgreSQL cannot store: NUL, and half of a UTF-16 surrogate pair (JSON's
# `"\ud800"` escape alone decodes to it; a whole pair decodes to one character).
_UNSTORABLE = {
    "NUL characters are not allowed": re.compile("\x00"),
    "Unpaired surrogate escapes (\\ud800-\\udfff) are not allowed": re.compile(
        "[\ud800-\udfff]"
    ),
}


def unstorable_fields(value: Any, prefix: str = "") -> dict[str, list[str]]:
    """Fields whose text holds what PostgreSQL cannot store (a NUL, a lone surrogate)."""
    found: dict[str, list[str]] = {}
    if isinstance(value, str):
        reasons = [text for text, bad in _UNSTORABLE.items() if bad.search(value)]
        if reasons:
            found[prefix or "_schema"] = reasons
    elif isinstance(value, dict):
        for key, item in value.items():
            found.update(
                unstorable_fields(item, f"{prefix}.{key}" if prefix else str(key))
            )
            found.update(unstorable_fields(key, prefix or "_schema"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.update(
                unstorable_fields(item, f"{prefix}.{index}" if prefix else str(index))
            )
    return found


def _bind_request_id() -> None:
    g.request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
    g.request_id_token = request_id_var.set(g.request_id)


def _handler() -> Callable[..., Any] | None:
    """The function that will answer this request (a MethodView's method too)."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return view
    method = getattr(view_class, request.method.lower(), None)
    if method is None and request.method == "HEAD":
        method = getattr(view_class, "get", None)
    return method if callable(method) else None


@contextmanager
def reading_body() -> Iterator[None]:
    """Read (part of) the request body inside: a body whose chunked framing is
    broken, whose client went away, or of which nothing arrives for BODY_TIMEOUT
    seconds is a 400, never a 500 nor a server thread held for as long as a slow
    client likes (gunicorn itself waits for a body forever). Never hold it across
    a `yield`: the timeout is the socket's until the block ends."""
    client = request.environ.get("gunicorn.socket")
    before = client.gettimeout() if client is not None else None
    if client is not None:
        client.settimeout(settings_of(Settings).body_timeout)
    try:
        yield
    # gunicorn's ParseException: a bad chunk size, no CRLF; an OSError (a read that
    # timed out, no more data), which werkzeug's stream turns into ClientDisconnected.
    except (ParseException, OSError, ClientDisconnected) as exc:
        cause = exc.__context__ if isinstance(exc, ClientDisconnected) else exc
        raise problems.BadRequestError(
            f"The request body could not be read ({type(cause).__name__})"
        ) from exc
    finally:
        if client is not None and client.fileno() != -1:
            client.settimeout(before)


def check_body_length(received: int, declared: int | None) -> None:
    """400 unless the whole body its Content-Length announced arrived: a request is
    never served on part of its body (a client that half-closes its connection
    after fewer bytes ends the body there)."""
    if declared is not None and received < declared:
        raise problems.BadRequestError(
            f"The body ended after {received} of its {declared} bytes"
        )


def read_body() -> None:
    """Read the request body whole: 413 past the limit, 400 cut short or unreadable.

    werkzeug stops reading a body without Content-Length at MAX_CONTENT_LENGTH
    without saying so: a longer body would arrive cut short, as malformed JSON (a
    400). The kit calls it before every view that does not stream its body; a view
    that streams it and sets a smaller `request.max_content_length` calls it first.
    """
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not (request.content_length or chunked):
        return  # no body: nothing to wait for
    if getattr(request, "_cached_data", None) is not None:
        return  # read already
    with reading_body():
        if request.content_length is None and "wsgi.input_terminated" in (
            request.environ
        ):
            limit = request.max_content_length or MAX_BODY_BYTES
            data = request.input_stream.read(limit + 1)
            if len(data) > limit:
                raise RequestEntityTooLarge()
            request._cached_data = data  # what get_data() answers from now on
        else:
            data = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    check_body_length(len(data), request.content_length)


def _read_bounded_body() -> None:
    # Before anything parses the body (the limiter's keys, webargs, the views):
    # a body cut short, malformed JSON, or JSON too deep or with a huge number is
    # the same 400 on every route, whether the route reads a body or not.
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "chomik_streams_body", False):
        return
    read_body()
    if not request.is_json:
        return
    data = request.get_data(cache=True)
    if not data:
        return
    try:
        jsonbounds.loads(data)
    except jsonbounds.JsonBoundsError as exc:
        raise problems.BadRequestError(f"Unacceptable JSON: {exc}") from exc
    except ValueError as exc:
        raise problems.BadRequestError("The body is not valid JSON") from exc


def _authenticate() -> None:
    # Before flask-smorest parses the body or query inside the view: a request
    # without a valid token is a 401 even when its input is invalid too.
    handler = _handler()
    access = None if handler is None else access_of(handler)
    if access is not None:
        access.check()


def _refuse_unstorable_text() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "chomik_streams_body", False):
        return
    errors: dict[str, list[str]] = {}
    for name, values in request.args.lists():
        errors.update(unstorable_fields(values and "".join(values), name))
    if request.is_json:
        errors.update(unstorable_fields(request.get_json(silent=True)))
    if errors:
        raise problems.ValidationProblem(errors)


def _end_session(commit: bool) -> None:
    session: Session | None = g.pop("chomik_session", None)
    if session is None:
        return
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


def _finish(response: Response) -> Response:
    _end_session(commit=response.status_code < 400)
    if "request_id" in g:
        response.headers[REQUEST_ID_HEADER] = g.request_id
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    log.info(
        "%s %s %s", g.get("method", request.method), request.path,
        response.status_code,
        extra={"service": current_app.name},
    )  # fmt: skip
    return response


def _collapse_unknown_method(response: Response) -> Response:
    if request.method not in KNOWN_METHODS:
        g.method = request.method[:32]  # the log keeps (the start of) the name
        request.method = "other"
    return response


def _cleanup(_exc: BaseException | None) -> None:
    _end_session(commit=False)
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)


def _wire_request_cycle(app: Flask) -> None:
    """Request id, JSON bounds, authentication, unstorable text refused, one transaction each."""
    app.before_request(_bind_request_id)
    app.before_request(_read_bounded_body)
    app.before_request(_authenticate)
    app.before_request(_refuse_unstorable_text)
    app.after_request(_finish)
    app.teardown_request(_cleanup)


def _add_health(app: Flask) -> None:
    @app.get("/health/live")
    def health_live() -> Response:
        return jsonify(status="ok")

    @app.get("/health/ready")
    def health_ready() -> Response | tuple[Response, int]:
        rt = runtime()
        names = [check.__name__ for check in rt.ready_checks]
        checks: dict[str, str] = {}
        try:
            with rt.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            checks["database"] = "ok"
            for check, name in zip(rt.ready_checks, names, strict=True):
                check()
                checks[name] = "ok"
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            failing = next((n for n in ["database", *names] if n not in checks), "?")
            log.warning("not ready: %s failed", failing, exc_info=True)
            # The reason goes to the log only: this answer may be public.
            return jsonify(status="unavailable", checks=checks, failing=failing), 503
        return jsonify(status="ok", checks=checks)


def _add_metrics(app: Flask, settings: Settings) -> None:
    """`/metrics`: multiprocess-aware under gunicorn, else this app's own registry.

    With METRICS_PORT set, /metrics is not served on the app's own (public) port:
    gunicorn's master serves every worker's metrics together on that port
    (docker/gunicorn.conf.py `when_ready`), which no route exposes.
    """
    kwargs: dict[str, Any] = {"group_by": "url_rule", "excluded_paths": ["^/metrics$"]}
    apart = bool(settings.metrics_port)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import (
            GunicornInternalPrometheusMetrics,
            GunicornPrometheusMetrics,
        )

        (GunicornPrometheusMetrics if apart else GunicornInternalPrometheusMetrics)(
            app, **kwargs
        )
        return
    from prometheus_flask_exporter import PrometheusMetrics

    # One registry per app, so several apps can live in one test process; the
    # process-wide registry (business metrics) is exposed through it too.
    registry = CollectorRegistry(auto_describe=True)
    registry.register(REGISTRY)
    PrometheusMetrics(
        app, registry=registry, path=None if apart else "/metrics", **kwargs
    )
