"""The shared client mechanics: retries only when idempotent, timeouts, error mapping."""

import json

import pytest
import requests
from wsgiadapter import WSGIAdapter

from chomik.infra import free_port
from chomik.transient import is_transient
from clients._http import (
    BadRequestError,
    ClientError,
    ConflictError,
    HttpClient,
    MalformedResponseError,
    NotFoundError,
    ResponseError,
    ServerError,
    TooManyRequestsError,
    TransportError,
)
from tests.clients.wsgi import string_content_length

BASE = "http://remote.test"


class Scripted:
    """A WSGI app answering a scripted list of (status, body) and counting calls."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, environ, start_response):
        self.calls.append(environ["REQUEST_METHOD"])
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        kind = "application/problem+json" if status >= 400 else "application/json"
        start_response(f"{status} X", [("Content-Type", kind)])
        return [json.dumps(body).encode()]


def client_for(app, **kwargs):
    session = requests.Session()
    session.mount(BASE, WSGIAdapter(string_content_length(app)))
    return HttpClient(BASE, session=session, backoff=0, **kwargs)


def test_an_idempotent_call_is_retried_after_503():
    app = Scripted((503, {"type": "unavailable"}), (200, {"ok": True}))
    assert client_for(app).request("GET", "/x").json() == {"ok": True}
    assert app.calls == ["GET", "GET"]


def test_a_plain_post_is_never_retried():
    app = Scripted((503, {"type": "unavailable"}), (200, {"ok": True}))
    with pytest.raises(ServerError):
        client_for(app).request("POST", "/x", json={})
    assert app.calls == ["POST"]


def test_a_post_declared_idempotent_is_retried():
    app = Scripted((503, {"type": "unavailable"}), (201, {"ok": True}))
    assert client_for(app).request("POST", "/x", idempotent=True).status_code == 201
    assert app.calls == ["POST", "POST"]


def test_retries_stop_after_the_limit():
    app = Scripted((503, {"type": "unavailable"}))
    with pytest.raises(ServerError):
        client_for(app, retries=2).request("GET", "/x")
    assert len(app.calls) == 3


def test_problem_types_map_to_the_clients_exceptions():
    class SpecialError(ConflictError):
        pass

    app = Scripted((409, {"type": "special", "detail": "no"}))
    with pytest.raises(SpecialError) as caught:
        client_for(app, problem_types={"special": SpecialError}).request("GET", "/x")
    assert caught.value.detail == "no"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, NotFoundError),
        (409, ConflictError),
        (418, ResponseError),
        (429, TooManyRequestsError),
    ],
)
def test_unknown_problem_types_map_by_status(status, kind):
    app = Scripted((status, {"type": "whatever"}))
    with pytest.raises(kind) as caught:
        client_for(app).request("GET", "/x")
    assert caught.value.status == status


def test_no_answer_is_a_transport_error_after_retries():
    client = HttpClient(f"http://127.0.0.1:{free_port()}", timeout=0.5, backoff=0)
    with pytest.raises(TransportError):
        client.request("GET", "/x")


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (503, True), (429, True), (400, False), (404, False), (409, False)],
)
def test_only_unavailability_answers_are_transient(status, transient):
    app = Scripted((status, {"type": "whatever"}))
    with pytest.raises(ResponseError) as caught:
        client_for(app, retries=0).request("GET", "/x")
    assert is_transient(caught.value) is transient


def test_no_answer_is_transient():
    client = HttpClient(f"http://127.0.0.1:{free_port()}", timeout=0.5, retries=0)
    with pytest.raises(TransportError) as caught:
        client.request("GET", "/x")
    assert is_transient(caught.value)


@pytest.mark.parametrize(
    "body",
    [{"name": "x"}, {"count": "many"}, ["not", "an", "object"], None],
)
def test_an_answer_of_the_wrong_shape_is_a_malformed_response_error(body):
    app = Scripted((200, body))
    response = client_for(app).request("GET", "/x")
    with pytest.raises(MalformedResponseError) as caught:
        client_for(app).decode(response, lambda data: int(data["count"]))
    assert isinstance(caught.value, ClientError)
    assert not is_transient(caught.value)
    assert caught.value.status == 200
    assert caught.value.type == "malformed-response"


def test_a_success_answer_that_is_not_json_is_a_malformed_response_error():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>maintenance</html>"]

    client = client_for(app)
    response = client.request("GET", "/x")
    with pytest.raises(MalformedResponseError):
        client.decode(response, dict)


def test_decode_returns_what_the_mapping_builds():
    app = Scripted((200, {"count": "3"}))
    client = client_for(app)
    assert client.decode(client.request("GET", "/x"), lambda d: int(d["count"])) == 3
    assert not issubclass(BadRequestError, MalformedResponseError)
