"""Idempotency-Key: replay, reuse, bounds, caller scope, concurrency and expiry."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa
from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from prometheus_client import REGISTRY
from werkzeug.serving import make_server

from chomik.auth import current_user, require_role, require_service
from chomik.db import utcnow
from chomik.idempotency import idempotent, prune_idempotency_keys
from chomik.problems import ConflictError
from chomik.settings import Settings
from chomik.web import create_app, db_session, runtime
from tests.chomik.messaging_helpers import scratch_tables, wait_until
from tests.conftest import auth

THINGS_DDL = """
CREATE TABLE IF NOT EXISTS idem_things (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    caller text NOT NULL
)
"""

blp = Blueprint("things", __name__, url_prefix="/things")


class Gate:
    """Holds a `slow` request inside the view until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()


gate = Gate()


def create_thing() -> dict[str, object]:
    """The effect: one row per request that runs."""
    body = request.get_json()
    caller = g.chomik_service.id if "chomik_service" in g else current_user().id
    thing_id = (
        db_session()
        .execute(
            sa.text(
                "INSERT INTO idem_things (name, caller) VALUES (:n, :c) RETURNING id"
            ),
            {"n": body["name"], "c": caller},
        )
        .scalar_one()
    )
    if body["name"] == "slow":
        gate.entered.set()
        assert gate.release.wait(30)
    if body.get("pause"):
        threading.Event().wait(body["pause"])
    if body["name"] == "refused":
        raise ConflictError("refused after writing")
    lock_timeout = db_session().execute(sa.text("SHOW lock_timeout")).scalar_one()
    return {
        "id": thing_id,
        "name": body["name"],
        "token": uuid.uuid4().hex,
        "lock_timeout": lock_timeout,
    }


@blp.route("")
class Things(MethodView):
    @blp.response(201)
    @require_role()
    @idempotent("things.create")
    def post(self) -> dict[str, object]:
        return create_thing()


@blp.route("/copies")
class ThingCopies(MethodView):
    @blp.response(201)
    @require_role()
    @idempotent("things.copy")
    def post(self) -> dict[str, object]:
        return create_thing()


@blp.route("/internal")
class InternalThings(MethodView):
    @blp.response(201)
    @require_service
    @idempotent("things.create")
    def post(self) -> dict[str, object]:
        return create_thing()


@pytest.fixture
def make_app(settings_for, committed_db):
    apps = []

    def build(**overrides):
        settings = settings_for(
            Settings, database_url=committed_db.urls["orders"], **overrides
        )
        app = create_app("things", settings, [blp])
        apps.append(app)
        return app

    with scratch_tables(committed_db.engine("orders"), THINGS_DDL):
        yield build
        for app in apps:
            runtime(app).engine.dispose()


@pytest.fixture
def client(make_app):
    return make_app().test_client()


@pytest.fixture
def buyer(make_token):
    return auth(make_token(str(uuid.uuid4()), "buyer"))


def things(infra):
    with infra.engine("orders").connect() as conn:
        return conn.execute(sa.text("SELECT name, caller FROM idem_things")).all()


def post(client, headers, key, body):
    return client.post(
        "/api/v1/things", json=body, headers={**headers, "Idempotency-Key": key}
    )


def test_a_repeated_request_replays_the_stored_answer_with_one_effect(
    client, buyer, committed_db
):
    first = post(client, buyer, "key-1", {"name": "a"})
    second = post(client, buyer, "key-1", {"name": "a"})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json() == first.get_json()
    assert second.get_data() == first.get_data()
    assert len(things(committed_db)) == 1


def test_replays_and_refusals_are_counted_by_operation(client, buyer):
    def count(outcome):
        labels = {"operation": "things.create", "outcome": outcome}
        return REGISTRY.get_sample_value("idempotent_replays_total", labels) or 0.0

    before = {o: count(o) for o in ("replayed", "idempotency-key-reused")}
    post(client, buyer, "key-1", {"name": "a"})
    post(client, buyer, "key-1", {"name": "a"})
    post(client, buyer, "key-1", {"name": "b"})
    assert count("replayed") == before["replayed"] + 1
    assert count("idempotency-key-reused") == before["idempotency-key-reused"] + 1


def test_the_bounded_wait_does_not_outlive_the_key_insert(make_app, buyer):
    client = make_app(idempotency_wait=0.3).test_client()
    response = post(client, buyer, "key-1", {"name": "a"})
    assert response.get_json()["lock_timeout"] == "0"  # the server default again


def test_the_same_key_with_another_body_is_refused(client, buyer, committed_db):
    assert post(client, buyer, "key-1", {"name": "a"}).status_code == 201
    response = post(client, buyer, "key-1", {"name": "b"})
    assert response.status_code == 422
    assert response.get_json()["type"] == "idempotency-key-reused"
    assert [t.name for t in things(committed_db)] == ["a"]


def test_a_missing_key_is_refused(client, buyer, committed_db):
    response = client.post("/api/v1/things", json={"name": "a"}, headers=buyer)
    assert response.status_code == 400
    assert response.get_json()["type"] == "idempotency-key-missing"
    assert things(committed_db) == []


@pytest.mark.parametrize("key", ["", "k" * 256, '""', "caf\u00e9", '"a"b"'])
def test_an_empty_too_long_or_malformed_key_is_refused(
    client, buyer, committed_db, key
):
    response = post(client, buyer, key, {"name": "a"})
    assert response.status_code == 400
    assert response.get_json()["type"] == "idempotency-key-invalid"
    assert things(committed_db) == []


def test_a_key_of_255_characters_and_the_quoted_form_are_accepted(client, buyer):
    assert post(client, buyer, "k" * 255, {"name": "a"}).status_code == 201
    assert post(client, buyer, '"k\\"q"', {"name": "a"}).status_code == 201
    assert post(client, buyer, 'k"q', {"name": "a"}).status_code == 200


def test_keys_are_scoped_per_caller(client, buyer, make_token, committed_db):
    other = auth(make_token(str(uuid.uuid4()), "buyer"))
    mine = post(client, buyer, "shared", {"name": "a"})
    theirs = post(client, other, "shared", {"name": "a"})
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.get_json()["id"] != theirs.get_json()["id"]
    assert len({t.caller for t in things(committed_db)}) == 2


def test_keys_are_scoped_per_operation(client, buyer, committed_db):
    create = post(client, buyer, "shared", {"name": "a"})
    copy = client.post(
        "/api/v1/things/copies",
        json={"name": "a"},
        headers={**buyer, "Idempotency-Key": "shared"},
    )
    assert (create.status_code, copy.status_code) == (201, 201)
    assert len(things(committed_db)) == 2


def test_a_service_caller_has_keys_of_its_own(
    client, buyer, service_token, committed_db
):
    def internal():
        return client.post(
            "/api/v1/things/internal",
            json={"name": "a"},
            headers={**auth(service_token), "Idempotency-Key": "shared"},
        )

    user = post(client, buyer, "shared", {"name": "a"})
    first, again = internal(), internal()
    assert (user.status_code, first.status_code, again.status_code) == (201, 201, 200)
    assert again.get_json() == first.get_json()
    assert "service:tests" in {t.caller for t in things(committed_db)}
    assert len(things(committed_db)) == 2


def test_an_anonymous_request_is_refused_before_its_key_is_read(client):
    response = client.post("/api/v1/things", json={"name": "a"})
    assert response.status_code == 401


def test_a_failed_request_stores_nothing_so_a_retry_runs_again(
    client, buyer, committed_db
):
    assert post(client, buyer, "key-1", {"name": "refused"}).status_code == 409
    assert post(client, buyer, "key-1", {"name": "refused"}).status_code == 409
    with committed_db.engine("orders").connect() as conn:
        keys = conn.execute(sa.text("SELECT count(*) FROM idempotency_keys"))
        assert keys.scalar_one() == 0
    assert things(committed_db) == []  # both effects rolled back with their keys


@pytest.fixture
def serve(make_app):
    servers = []

    def start(**overrides):
        server = make_server("127.0.0.1", 0, make_app(**overrides), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/api/v1/things"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_twenty_concurrent_identical_requests_have_one_effect_and_one_answer(
    serve, buyer, committed_db
):
    url = serve(idempotency_wait=20.0)
    start = threading.Barrier(20)
    headers = {**buyer, "Idempotency-Key": "together"}

    def call(_):
        start.wait()
        # The pause keeps the first transaction open while the others arrive.
        return requests.post(
            url, json={"name": "a", "pause": 0.5}, headers=headers, timeout=30
        )

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(call, range(20)))
    assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    assert len(things(committed_db)) == 1


def test_a_repeat_waiting_past_the_bound_gets_409_then_replays(
    serve, buyer, committed_db
):
    url = serve(idempotency_wait=0.3)
    headers = {**buyer, "Idempotency-Key": "slow-1"}
    gate.entered.clear()
    gate.release.clear()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            requests.post, url, json={"name": "slow"}, headers=headers, timeout=30
        )
        assert gate.entered.wait(10)
        try:
            waiting = requests.post(
                url, json={"name": "slow"}, headers=headers, timeout=30
            )
        finally:
            gate.release.set()
        done = first.result()
    assert waiting.status_code == 409
    assert waiting.json()["type"] == "request-in-progress"
    assert waiting.headers["Retry-After"] == "1"
    assert done.status_code == 201
    retry = requests.post(url, json={"name": "slow"}, headers=headers, timeout=30)
    assert retry.status_code == 200
    assert retry.json() == done.json()
    assert len(things(committed_db)) == 1


def test_a_repeat_waiting_within_the_bound_replays_the_first_answer(
    serve, buyer, committed_db
):
    url = serve(idempotency_wait=10.0)
    headers = {**buyer, "Idempotency-Key": "slow-2"}
    gate.entered.clear()
    gate.release.clear()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(
            requests.post, url, json={"name": "slow"}, headers=headers, timeout=30
        )
        assert gate.entered.wait(10)
        second = pool.submit(
            requests.post, url, json={"name": "slow"}, headers=headers, timeout=30
        )
        wait_until(lambda: _waiting_on_a_lock(committed_db), timeout=10)
        gate.release.set()
        done, repeat = first.result(), second.result()
    assert (done.status_code, repeat.status_code) == (201, 200)
    assert repeat.json() == done.json()
    assert len(things(committed_db)) == 1


def _waiting_on_a_lock(infra):
    with infra.engine("orders").connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar_one()


def test_an_expired_key_is_pruned_and_the_request_runs_again(
    client, buyer, committed_db
):
    first = post(client, buyer, "key-1", {"name": "a"})
    with committed_db.engine("orders").connect() as conn, conn.begin():
        session = sa.orm.Session(bind=conn)
        assert prune_idempotency_keys(session) == 0
        later = utcnow() + dt.timedelta(hours=24, seconds=1)
        assert prune_idempotency_keys(session, now=later) == 1
    again = post(client, buyer, "key-1", {"name": "a"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json()["id"] != first.get_json()["id"]
    assert len(things(committed_db)) == 2


def test_an_expired_key_counts_as_absent_before_it_is_pruned(
    make_app, buyer, committed_db
):
    client = make_app(idempotency_key_ttl=0).test_client()
    first = post(client, buyer, "key-1", {"name": "a"})
    again = post(client, buyer, "key-1", {"name": "b"})  # another body is fine too
    assert (first.status_code, again.status_code) == (201, 201)
    assert [t.name for t in things(committed_db)] == ["a", "b"]


def test_openapi_documents_the_header_and_the_problems(client):
    operation = client.get("/openapi.json").get_json()["paths"]["/api/v1/things"]
    post_doc = operation["post"]
    header = [p for p in post_doc["parameters"] if p["name"] == "Idempotency-Key"]
    assert header[0]["in"] == "header"
    assert header[0]["required"] is True
    assert header[0]["schema"]["maxLength"] == 255
    assert {"201", "400", "409", "422"} <= set(post_doc["responses"])
