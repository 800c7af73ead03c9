"""The web factory: request ids, logs, health, metrics, one transaction a request."""

import json
import logging

import pytest
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint
from prometheus_client.parser import text_string_to_metric_families

from chomik.logs import JsonFormatter
from chomik.problems import ConflictError
from chomik.settings import Settings
from chomik.web import create_app, db_session

blp = Blueprint("notes", __name__, url_prefix="/notes")


@blp.route("/<name>")
class NoteByName(MethodView):
    def put(self, name):
        db_session().execute(
            sa.text("INSERT INTO web_notes (name) VALUES (:n)"), {"n": name}
        )
        if name == "conflict":
            raise ConflictError("refused after writing")
        return {"name": name}


@pytest.fixture
def app(settings_for, committed_db):
    with committed_db.engine("gateway").begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS web_notes (name text)"))
    yield create_app("notes", settings_for(Settings), [blp])
    with committed_db.engine("gateway").begin() as conn:
        conn.execute(sa.text("DROP TABLE web_notes"))


def notes(infra):
    with infra.engine("gateway").connect() as conn:
        return conn.execute(sa.text("SELECT name FROM web_notes")).scalars().all()


def test_request_id_is_generated_when_absent(app):
    response = app.test_client().get("/health/live")
    assert len(response.headers["X-Request-Id"]) == 32


def test_request_id_is_echoed_and_logged(app, caplog):
    with caplog.at_level(logging.INFO, logger="chomik.web"):
        response = app.test_client().get(
            "/health/live", headers={"X-Request-Id": "abc-123"}
        )
    assert response.headers["X-Request-Id"] == "abc-123"
    lines = [json.loads(JsonFormatter("notes").format(r)) for r in caplog.records]
    assert any(line["request_id"] == "abc-123" and "/health/live" in line["message"]
               for line in lines)  # fmt: skip


def test_malformed_request_id_is_replaced(app):
    response = app.test_client().get(
        "/health/live", headers={"X-Request-Id": "a b;c<script>"}
    )
    assert response.headers["X-Request-Id"] != "a b;c<script>"


def test_successful_request_commits_and_failed_one_rolls_back(app, committed_db):
    client = app.test_client()
    assert client.put("/api/v1/notes/kept").status_code == 200
    assert client.put("/api/v1/notes/conflict").status_code == 409
    assert notes(committed_db) == ["kept"]


def test_ready_checks_the_database(app):
    response = app.test_client().get("/health/ready")
    assert response.status_code == 200
    assert response.get_json()["checks"]["database"] == "ok"


def test_ready_is_503_when_the_database_is_unreachable(settings_for):
    url = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"
    app = create_app("notes", settings_for(Settings, database_url=url), [blp])
    response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    assert response.get_json()["failing"] == "database"
    assert "127.0.0.1" not in response.get_data(as_text=True)  # no internals


def test_metrics_count_requests_by_rule(app):
    client = app.test_client()
    client.put("/api/v1/notes/one")
    client.put("/api/v1/notes/two")
    body = client.get("/metrics").get_data(as_text=True)
    counts = {
        (sample.labels.get("method"), sample.labels.get("url_rule")): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "flask_http_request_duration_seconds_count"
    }
    # Two paths, one rule: grouped by the rule, not by the path requested.
    assert counts[("PUT", "/api/v1/notes/<name>")] == 2
    assert not any("one" in rule or "two" in rule for _, rule in counts)
