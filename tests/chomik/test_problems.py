"""Every error leaves a service as application/problem+json with a stable type."""

import logging

import marshmallow as ma
import pytest
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from chomik.auth import require_role
from chomik.problems import NO_NUL_PATTERN, ConflictError
from chomik.settings import Settings
from chomik.web import create_app
from clients._http import TransportError
from tests.conftest import auth

blp = Blueprint("things", __name__, url_prefix="/things")


class ThingCreateSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1))
    size = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1))
    tags = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=3)))


class ThingQueryArgsSchema(ma.Schema):
    page_size = ma.fields.Integer(validate=ma.validate.Range(max=100))


@blp.route("")
class Things(MethodView):
    @blp.arguments(ThingQueryArgsSchema, location="query")
    def get(self, args):
        return {"items": []}

    @require_role("seller")
    @blp.arguments(ThingCreateSchema)
    def post(self, body):
        if body["name"] == "taken":
            raise ConflictError("That name is taken")
        if body["name"] == "boom":
            raise RuntimeError("secret internals")
        if body["name"] == "remote-down":
            try:
                raise TransportError("GET http://storage/x: connection refused")
            except TransportError as exc:
                raise LookupError("the price could not be read") from exc
        if body["name"] == "database-down":
            raise sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError())
        return body, 201


@pytest.fixture
def client(settings_for):
    app = create_app("things", settings_for(Settings), [blp])
    return app.test_client()


def assert_problem(response, status, type_):
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == type_
    assert body["status"] == status
    assert body["title"]
    assert "detail" in body
    return body


def test_unknown_path_is_a_not_found_problem(client):
    assert_problem(client.get("/api/v1/nowhere"), 404, "not-found")


def test_wrong_method_is_a_method_not_allowed_problem_naming_the_allowed(client):
    response = client.delete("/api/v1/things")
    assert_problem(response, 405, "method-not-allowed")
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


def test_nul_character_is_a_validation_problem_not_a_500(client, make_token):
    response = client.post(
        "/api/v1/things",
        json={"name": "a\u0000b", "size": 1, "tags": ["ok", "x\u0000"]},
        headers=auth(make_token("u1", "seller")),
    )
    body = assert_problem(response, 422, "validation-error")
    assert set(body["errors"]) == {"name", "tags.1"}
    query = client.get("/api/v1/things?page_size=1&q=a&q=%00")
    assert list(assert_problem(query, 422, "validation-error")["errors"]) == ["q"]


def test_a_lone_surrogate_is_a_validation_problem_not_a_500(client, make_token):
    # JSON's "\ud800" escape alone decodes to half a character, which neither
    # PostgreSQL nor a UTF-8 encoder takes; a whole pair is one character.
    response = client.post(
        "/api/v1/things",
        json={"name": "a\ud800", "size": 1, "tags": ["ok", "\udfff"]},
        headers=auth(make_token("u1", "seller")),
    )
    body = assert_problem(response, 422, "validation-error")
    assert set(body["errors"]) == {"name", "tags.1"}
    assert "surrogate" in body["errors"]["name"][0]
    paired = client.post(
        "/api/v1/things",
        json={"name": "a\ud83d\ude00", "size": 1},
        headers=auth(make_token("u1", "seller")),
    )
    assert paired.status_code == 201, paired.get_data(as_text=True)


def test_invalid_body_is_a_validation_problem_with_flat_errors(client, make_token):
    response = client.post(
        "/api/v1/things",
        json={"size": 0, "tags": ["ok", "toolong"], "extra": 1},
        headers=auth(make_token("u1", "seller")),
    )
    body = assert_problem(response, 422, "validation-error")
    assert set(body["errors"]) == {"name", "size", "tags.1", "extra"}
    assert all(isinstance(m, list) and m for m in body["errors"].values())


def test_invalid_query_is_a_validation_problem_keyed_by_field(client):
    body = assert_problem(
        client.get("/api/v1/things?page_size=1000"), 422, "validation-error"
    )
    assert list(body["errors"]) == ["page_size"]


def test_malformed_json_is_a_bad_request_problem(client, make_token):
    response = client.post(
        "/api/v1/things",
        data="{not json",
        content_type="application/json",
        headers=auth(make_token("u1", "seller")),
    )
    assert_problem(response, 400, "bad-request")


def test_missing_token_is_an_unauthorized_problem(client):
    response = client.post("/api/v1/things", json={"name": "x", "size": 1})
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_wrong_role_is_a_forbidden_problem(client, make_token):
    response = client.post(
        "/api/v1/things",
        json={"name": "x", "size": 1},
        headers=auth(make_token("u", "buyer")),
    )
    assert_problem(response, 403, "forbidden")


def test_domain_problem_keeps_its_type_and_detail(client, make_token):
    response = client.post(
        "/api/v1/things",
        json={"name": "taken", "size": 1},
        headers=auth(make_token("u", "seller")),
    )
    body = assert_problem(response, 409, "conflict")
    assert body["detail"] == "That name is taken"


def test_unexpected_error_is_a_500_problem_with_request_id_and_no_trace(
    client, make_token, caplog
):
    with caplog.at_level(logging.ERROR):
        response = client.post(
            "/api/v1/things",
            json={"name": "boom", "size": 1},
            headers={**auth(make_token("u", "seller")), "X-Request-Id": "req-500"},
        )
    body = assert_problem(response, 500, "internal-error")
    assert body["request_id"] == "req-500"
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert any(
        "secret internals" in (r.exc_text or str(r.exc_info)) for r in caplog.records
    )


@pytest.mark.parametrize("name", ["remote-down", "database-down"])
def test_an_outage_of_what_a_request_needs_is_a_503_to_retry(client, make_token, name):
    response = client.post(
        "/api/v1/things",
        json={"name": name, "size": 1},
        headers=auth(make_token("u", "seller")),
    )
    assert_problem(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "5"


def test_too_large_body_is_a_payload_too_large_problem(client, make_token):
    response = client.post(
        "/api/v1/things",
        data=b"x" * (2 * 1024 * 1024),
        content_type="application/json",
        headers=auth(make_token("u", "seller")),
    )
    assert_problem(response, 413, "payload-too-large")


def test_openapi_documents_the_problem_schema(client):
    spec = client.get("/openapi.json").get_json()
    assert "Error" in spec["components"]["schemas"] or "Problem" in str(
        spec["components"]
    )


def test_the_spec_documents_every_error_as_problem_json(client):
    # Found by schema fuzzing: errors were documented as application/json.
    document = client.get("/openapi.json").get_json()
    errors = {
        (path, method, code): list(response.get("content", {}))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for code, response in operation["responses"].items()
        if code[:1] in "45" and "content" in response
    }
    assert set(map(tuple, errors.values())) <= {("application/problem+json",)}
    for response in document["components"]["responses"].values():
        assert list(response["content"]) == ["application/problem+json"]
    ok = [
        list(response["content"])
        for operations in document["paths"].values()
        for operation in operations.values()
        for code, response in operation["responses"].items()
        if code[:1] == "2" and "content" in response
    ]
    assert all(media == ["application/json"] for media in ok)


def test_the_spec_says_every_text_field_refuses_nul(client):
    # Found by schema fuzzing: a password holding NUL was valid by the spec, refused.
    spec = client.get("/openapi.json").get_json()
    name = spec["components"]["schemas"]["ThingCreate"]["properties"]["name"]
    tags = spec["components"]["schemas"]["ThingCreate"]["properties"]["tags"]
    assert name["pattern"] == tags["items"]["pattern"] == NO_NUL_PATTERN
    assert (
        "pattern"
        not in spec["components"]["schemas"]["ThingCreate"]["properties"]["size"]
    )
