"""Errors as `application/problem+json` (RFC 9457) with a stable `type`.

Exception
└── Problem                     status, type, title; instance detail + extra
    ├── BadRequestError         400 bad-request
    ├── UnauthorizedError       401 unauthorized
    ├── ForbiddenError          403 forbidden
    ├── NotFoundError           404 not-found
    ├── ConflictError           409 conflict
    ├── ValidationProblem       422 validation-error (errors: field -> messages)
    └── UnavailableError        503 unavailable
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import marshmallow as ma
from apispec import BasePlugin
from flask import Flask, Response, json
from flask_smorest import Api
from werkzeug.exceptions import HTTPException, InternalServerError

from chomik.logs import current_request_id
from chomik.transient import is_outage

PROBLEM_MIMETYPE = "application/problem+json"
log = logging.getLogger(__name__)

# Stable problem types of the HTTP errors raised by Flask, werkzeug and webargs.
HTTP_TYPES: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    428: "precondition-required",
    429: "too-many-requests",
    500: "internal-error",
    502: "bad-gateway",
    503: "unavailable",
    504: "gateway-timeout",
}


class Problem(Exception):  # noqa: N818 - the house name (STYLE §11)
    """An error that knows how it is shown to the client."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The problem document."""
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class BadRequestError(Problem):
    status, type, title = 400, "bad-request", "Bad request"


class UnauthorizedError(Problem):
    status, type, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **extra)


class ForbiddenError(Problem):
    status, type, title = 403, "forbidden", "Forbidden"


class NotFoundError(Problem):
    status, type, title = 404, "not-found", "Not found"


class ConflictError(Problem):
    status, type, title = 409, "conflict", "Conflict"


class ValidationProblem(Problem):
    status, type, title = 422, "validation-error", "Invalid input"

    def __init__(
        self, errors: Mapping[str, list[str]], detail: str | None = None
    ) -> None:
        super().__init__(
            detail or "The request has invalid fields", errors=dict(errors)
        )


class UnavailableError(Problem):
    status, type, title = 503, "unavailable", "Service unavailable"


class ProblemSchema(ma.Schema):
    """An `application/problem+json` document.

    A problem may carry extension members of its own type (RFC 9457 §3.2), such as
    the `country` of `country-not-served`: the spec admits further members.
    """

    class Meta:
        unknown = ma.INCLUDE

    type = ma.fields.String(required=True, metadata={"example": "not-found"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    request_id = ma.fields.String()
    errors = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.List(ma.fields.String())
    )


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn nested messages ({field: {sub: [...]}}) into dotted field -> messages."""
    if isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            return {prefix or "_schema": [str(m) for m in messages]}
        flat: dict[str, list[str]] = {}
        for index, item in enumerate(messages):
            flat.update(
                flatten_errors(item, f"{prefix}.{index}" if prefix else str(index))
            )
        return flat
    if isinstance(messages, dict):
        flat = {}
        for key, value in messages.items():
            flat.update(
                flatten_errors(value, f"{prefix}.{key}" if prefix else str(key))
            )
        return flat
    return {prefix or "_schema": [str(messages)]}


def problem_response(
    status: int,
    type_: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Render one problem document."""
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    response.headers.update(headers or {})
    return response


def render_problem(problem: Problem) -> Response:
    """Render a `Problem` raised anywhere in a request."""
    return problem_response(
        problem.status, problem.type, problem.title, problem.detail,
        problem.headers, **problem.extra,
    )  # fmt: skip


def _as_problem(response: Any) -> dict[str, Any] | None:
    """The response's content under the problem media type (None: nothing to do)."""
    if not isinstance(response, dict) or not response.get("content"):
        return None
    return {"content": {PROBLEM_MIMETYPE: next(iter(response["content"].values()))}}


class ProblemContentPlugin(BasePlugin):
    """Document every error answer as `application/problem+json`, as it is sent.

    flask-smorest documents responses as `application/json`; clients (and schema
    checks) would then expect the wrong media type for every 4xx and 5xx.
    """

    def response_helper(self, response: Any, **kwargs: Any) -> dict[str, Any] | None:
        # flask-smorest's component responses are all errors (DEFAULT_ERROR...).
        return _as_problem(response)

    def operation_helper(
        self, path: str | None = None, operations: Any = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            responses = (
                operation.get("responses", {}) if isinstance(operation, dict) else {}
            )
            for code, response in responses.items():
                if str(code) == "default" or str(code)[:1] in "45":
                    replaced = _as_problem(response)
                    if replaced is not None:
                        response.update(replaced)


# Every service refuses a NUL character in any input (`chomik.web`): the spec says so
# of every text field that states no pattern, enum or format of its own.
NO_NUL_PATTERN = r"^[^\u0000]*$"


def _no_nul_in_text(
    converter: Any, field: Any, ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    if ret.get("type") == "string" and not {"pattern", "enum", "format"} & set(ret):
        return {"pattern": NO_NUL_PATTERN}
    return {}


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest `Api` whose every error is `application/problem+json`."""

    ERROR_SCHEMA = ProblemSchema

    def _init_spec(self, *, extra_plugins: Any = None, **options: Any) -> None:
        super()._init_spec(
            extra_plugins=[*(extra_plugins or ()), ProblemContentPlugin()], **options
        )
        self.ma_plugin.converter.add_attribute_function(_no_nul_in_text)

    def _register_error_handlers(self) -> None:
        super()._register_error_handlers()
        self._app.register_error_handler(Problem, render_problem)

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        extra: dict[str, Any] = {}
        if (
            isinstance(error, InternalServerError)
            or status >= 500
            and status not in HTTP_TYPES
        ):
            return internal_error(error)
        messages = data.get("errors") or data.get("messages")
        if messages:
            extra["errors"] = flatten_errors(_without_location(messages))
        detail = data.get("message") or error.description or ""
        if status == 422:
            detail = "The request has invalid fields"
        elif status == 400 and messages:
            detail = "; ".join(m for ms in extra["errors"].values() for m in ms)
        headers = dict(data.get("headers") or {})
        if error.response is not None:
            headers.update(error.response.headers)
        # e.g. Allow on a 405, WWW-Authenticate on a 401
        headers.update(
            (name, value)
            for name, value in error.get_headers()
            if name.lower() != "content-type"
        )
        title = error.name
        return problem_response(
            status, HTTP_TYPES.get(status, f"http-{status}"), title, str(detail),
            headers, **extra,
        )  # fmt: skip


def _without_location(messages: Any) -> Any:
    """Drop webargs' location level (json, query, headers...) from its messages."""
    if (
        isinstance(messages, dict)
        and messages
        and all(
            k
            in {
                "json",
                "query",
                "querystring",
                "headers",
                "form",
                "files",
                "path",
                "view_args",
            }
            for k in messages
        )
    ):
        merged: dict[str, Any] = {}
        for value in messages.values():
            if isinstance(value, dict):
                merged.update(value)
            else:
                merged.setdefault("_schema", []).extend(value)
        return merged
    return messages


# Seconds a client is told to wait when something the request needs is down.
OUTAGE_RETRY_AFTER = 5


def internal_error(error: BaseException) -> Response:
    """A generic 500 problem carrying the request id; the traceback goes to the log.

    An outage of something the request needs (the database, another service: see
    `chomik.transient.is_outage`) is no bug of ours: it is a 503 with `Retry-After`,
    so the client retries (safely, for an unsafe request, with its Idempotency-Key).
    """
    original = getattr(error, "original_exception", None) or error
    request_id = current_request_id()
    if is_outage(original):
        log.warning("request failed on an outage: %r", original)
        return problem_response(
            503,
            "unavailable",
            "Service unavailable",
            "A service this request needs is unavailable; try again shortly",
            {"Retry-After": str(OUTAGE_RETRY_AFTER)},
            request_id=request_id,
        )
    if not isinstance(original, InternalServerError):
        log.error("unhandled error", exc_info=original)
    return problem_response(
        500,
        "internal-error",
        "Internal server error",
        "An unexpected error occurred; quote the request id when reporting it",
        request_id=request_id,
    )


def register(app: Flask) -> None:
    """Make sure nothing but problem documents leaves the app."""
    app.register_error_handler(Exception, internal_error)
