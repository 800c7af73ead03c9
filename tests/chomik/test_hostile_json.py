"""Hostile JSON and broken bodies on every route of every app: a 400/413 problem,
never a 500, and never a request served on part of its body.

The body is checked before authentication: it is the same transport-level
refusal on every route and tells nothing about any route's input.
"""

from __future__ import annotations

import io

import pytest
from flask import Flask
from gunicorn.http.errors import InvalidChunkSize, NoMoreData

from chomik.web import MAX_BODY_BYTES
from tests.chomik.test_every_route_authenticates import (  # noqa: F401 - a fixture
    SKIPPED_METHODS,
    apps,
    example_path,
)

DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
LONG_INTEGER = '{"price": ' + "9" * 5000 + "}"
LONG_FLOAT = '{"price": 1.' + "5" * 5000 + "}"
HOSTILE = {
    "malformed": '{"title": "a",',
    "deep-array": DEEP,
    "deep-object": DEEP_OBJECT,
    "long-integer": LONG_INTEGER,
    "long-float": LONG_FLOAT,
}


def body_routes(built: dict[str, Flask]) -> list[tuple[str, str, str]]:
    """Every (app, method, path) whose view reads its own body."""
    routes = []
    for name, app in built.items():
        for rule in app.url_map.iter_rules():
            view = app.view_functions[rule.endpoint]
            if getattr(view, "chomik_streams_body", False):
                continue
            for method in sorted((rule.methods or set()) - SKIPPED_METHODS):
                routes.append((name, method, example_path(rule)))
    return routes


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_json_is_a_400_problem_on_every_route(apps, body):  # noqa: F811
    routes = body_routes(apps)
    assert ("gateway", "POST", "/api/v1/auth/register") in routes
    assert ("storage", "POST", "/api/v1/products") in routes
    wrong = {}
    for name, method, path in routes:
        response = (
            apps[name]
            .test_client()
            .open(path, method=method, data=body, content_type="application/json")
        )
        problem = response.get_json(silent=True) or {}
        if (
            response.status_code != 400
            or response.mimetype != "application/problem+json"
            or problem.get("type") != "bad-request"
        ):
            wrong[f"{name} {method} {path}"] = response.status_code
    assert wrong == {}


def test_json_within_the_bounds_still_reaches_the_view(apps):  # noqa: F811
    body = '{"email": ' + "[" * 60 + "]" * 60 + ', "n": ' + "9" * 90 + "}"
    response = (
        apps["gateway"]
        .test_client()
        .post("/api/v1/auth/register", data=body, content_type="application/json")
    )
    assert response.status_code == 422
    assert "email" in response.get_json()["errors"]


def test_a_chunked_body_over_the_limit_is_413(apps):  # noqa: F811
    # A chunked body has no Content-Length: the server marks the stream as
    # terminated, and the limit is enforced while it is read.
    body = b'{"email": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    response = (
        apps["gateway"]
        .test_client()
        .post(
            "/api/v1/auth/register",
            input_stream=io.BytesIO(body),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
    )
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "payload-too-large"


def refused_on_every_route(apps, **request) -> dict[str, int]:  # noqa: F811
    """Send the same request to every body route; those not answered 400 bad-request."""
    wrong = {}
    # The server's word for the length, as gunicorn passes it on (the test
    # client would count the stream instead); terminated input, as gunicorn's.
    declared = request.get("declared")
    length = {} if declared is None else {"CONTENT_LENGTH": str(declared)}
    for name, method, path in body_routes(apps):
        request["input_stream"] = request["stream"]()
        response = (
            apps[name]
            .test_client()
            .open(
                path,
                method=method,
                content_type="application/json",
                environ_overrides={"wsgi.input_terminated": True, **length},
                **{k: v for k, v in request.items() if k not in ("stream", "declared")},
            )
        )
        problem = response.get_json(silent=True) or {}
        if response.status_code != 400 or problem.get("type") != "bad-request":
            wrong[f"{name} {method} {path}"] = response.status_code
    return wrong


def test_a_body_cut_short_of_its_content_length_is_a_400_on_every_route(
    apps,  # noqa: F811
):
    # gunicorn ends a body where its client half-closes the connection, without
    # an error: the app is handed valid JSON that is only part of what was sent.
    body = b'{"title": "Air", "quantity": 1}'
    assert (
        refused_on_every_route(
            apps, stream=lambda: io.BytesIO(body), declared=len(body) + 10
        )
        == {}
    )


class BrokenChunks(io.BytesIO):
    """A chunked body as gunicorn reads it when its framing is broken."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def read(self, _size=-1):
        raise self.error

    def readinto(self, _buffer):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [InvalidChunkSize(b"zz"), NoMoreData(b"")],
    ids=["bad-chunk-size", "no-last-chunk"],
)
def test_broken_chunked_framing_is_a_400_on_every_route(apps, error):  # noqa: F811
    assert (
        refused_on_every_route(
            apps,
            stream=lambda: BrokenChunks(error),
            headers={"Transfer-Encoding": "chunked"},
        )
        == {}
    )
