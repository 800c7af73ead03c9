"""The delivery client's address check, against a stand-in of delivery's endpoint.

Delivery's `GET /api/v1/internal/addresses/{id}?buyer_id=` is not built yet; this
stand-in answers as that endpoint is specified (200 the buyer's address, 404
otherwise, service token required). When delivery serves it, this test runs
against the real delivery app instead.
"""

import uuid

import pytest
from flask import Flask, abort, jsonify, request

from chomik.auth import TokenVerifier
from clients._http import UnauthorizedError
from clients.delivery import DeliveryClient
from tests.clients.wsgi import mounted
from tests.conftest import TEST_SERVICE_SECRET

BASE = "http://delivery.test"


def stand_in(addresses):
    app = Flask("delivery-stand-in")
    verifier = TokenVerifier(
        issuer="", audience="", public_key_file="", jwks_url="",
        service_secret=TEST_SERVICE_SECRET,
    )  # fmt: skip

    @app.get("/api/v1/internal/addresses/<uuid:address_id>")
    def address(address_id):
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            verifier.verify_service(token)
        except Exception:  # noqa: BLE001 - any bad token is a 401 here
            return jsonify(type="unauthorized", status=401), 401
        buyer_id = uuid.UUID(request.args["buyer_id"])
        if (buyer_id, address_id) not in addresses:
            abort(404)
        return jsonify(id=str(address_id), buyer_id=str(buyer_id))

    return app


def test_an_address_belongs_only_to_its_buyer():
    buyer, other, address = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    app = stand_in({(buyer, address)})
    client = DeliveryClient(
        BASE, service_secret=TEST_SERVICE_SECRET, caller="orders",
        session=mounted(app, BASE),
    )  # fmt: skip
    assert client.address_belongs_to(buyer, address) is True
    assert client.address_belongs_to(other, address) is False
    assert client.address_belongs_to(buyer, uuid.uuid4()) is False
    client.close()


def test_a_wrong_service_secret_is_an_error_not_a_no():
    client = DeliveryClient(
        BASE, service_secret="not-the-secret-0123456789abcdef0123456789",
        caller="orders", session=mounted(stand_in(set()), BASE),
    )  # fmt: skip
    with pytest.raises(UnauthorizedError):
        client.address_belongs_to(uuid.uuid4(), uuid.uuid4())
