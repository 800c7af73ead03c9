"""The shared client mechanics: retries only when idempotent, timeouts, error mapping."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chomik.infra import free_port, stop_process, wait_for_port
from chomik.logs import request_id_var
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
from tests.clients.wsgi import mounted

BASE = "http://remote.test"
PROJECT_DIR = Path(__file__).resolve().parents[2]


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
    return HttpClient(BASE, transport=mounted(app, BASE), backoff=0, **kwargs)


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


# The transport every client uses: the kit's pool of kept-alive connections, over
# real HTTP to a server on 127.0.0.1.


@pytest.fixture(scope="module")
def echo_service():
    """The echo app under gunicorn's threaded workers, as our services run, with a
    keep-alive of 1 s; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
         "--threads", "4", "--keep-alive", "1", "--bind", f"127.0.0.1:{port}",
         "tests.clients.echo:app"],
        cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for_port(port, timeout=30), "gunicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture
def over_http():
    """Make HttpClients with their real transport; closed after the test."""
    made = []

    def make(url, **kwargs):
        made.append(HttpClient(url, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_a_call_over_http_sends_the_query_body_and_headers(echo_service, over_http):
    url = echo_service
    client = over_http(f"{url}/base", token=lambda: "t0ken")
    token = request_id_var.set("req-1")
    try:
        response = client.request(
            "POST", "/x", json={"a": [1, "ż"]}, params={"id": ["1", "2"], "q": "a b&c"}
        )
    finally:
        request_id_var.reset(token)
    echo = response.json()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.url == f"{url}/base/x?id=1&id=2&q=a+b%26c"
    assert echo["method"] == "POST"
    assert echo["path"] == "/base/x"
    assert echo["query"] == "id=1&id=2&q=a+b%26c"
    assert echo["type"] == "application/json"
    assert json.loads(echo["body"]) == {"a": [1, "ż"]}
    assert int(echo["length"]) == len(echo["body"].encode())
    assert echo["request_id"] == "req-1"
    assert echo["authorization"] == "Bearer t0ken"


def test_a_call_is_sent_as_requests_sent_it(echo_service, over_http):
    client = over_http(echo_service, token=lambda: "service")
    echo = client.request(
        "post", "/a b/ż", params={"q": "x", "none": None},
        headers={"authorization": "Bearer user"},
    ).json()  # fmt: skip
    assert echo["method"] == "POST"
    assert echo["path"] == "/a b/ż".encode().decode("latin-1")  # WSGI's PATH_INFO
    assert echo["query"] == "q=x"
    assert echo["authorization"] == "Bearer user"  # one header, the caller's


def test_a_post_without_a_body_says_its_length_is_nought(echo_service, over_http):
    echo = over_http(echo_service).request("POST", "/x").json()
    assert echo["length"] == "0"
    assert echo["body"] == ""


def test_calls_reuse_one_kept_alive_connection(echo_service, over_http):
    client = over_http(echo_service)
    ports = {client.request("GET", "/x").json()["port"] for _ in range(3)}
    assert len(ports) == 1


def test_a_connection_the_service_closed_is_not_sent_on(echo_service, over_http):
    client = over_http(echo_service, retries=0)
    first = client.request("POST", "/x").json()["port"]
    time.sleep(1.5)  # past the service's keep-alive: it closed the connection
    # A POST is never sent twice: sent on the closed connection, it would fail.
    assert client.request("POST", "/x").json()["port"] != first


def test_a_service_too_slow_to_answer_is_a_transient_transport_error(
    echo_service, over_http
):
    client = over_http(echo_service, timeout=0.3, retries=0)
    with pytest.raises(TransportError) as caught:
        client.request("GET", "/x", params={"delay": 1})
    assert is_transient(caught.value)
    assert client.request("GET", "/x").status_code == 200  # a new connection
