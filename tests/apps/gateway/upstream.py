"""A small service behind the gateway in tests: a real kit app in its own process.

It owns `/products` like storage does, and adds paths that stream, compress,
stall and echo, so the proxy can be watched doing each.
Run: python -m tests.apps.gateway.serve tests.apps.gateway.upstream:build PORT.
"""

from __future__ import annotations

import gzip
import hashlib
import time

from flask import Response, jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint

from chomik.auth import current_user, optional_user, require_role, require_service
from chomik.settings import Settings
from chomik.web import create_app

BLOCK = hashlib.sha256(b"chomik").digest() * 2048  # 64 KiB of known bytes
PLAIN = b"sneakers " * 20000

products = Blueprint("products", __name__, url_prefix="/products")
internal = Blueprint("internal", __name__, url_prefix="/internal")


def big_body(megabytes: int) -> bytes:
    """What /products/big sends, for comparing."""
    return BLOCK * (16 * megabytes)


@products.route("")
class Products(MethodView):
    def get(self) -> Response:
        """List products (anyone)"""
        user = optional_user()
        return jsonify(items=[], user=user.id if user else None)

    @require_role("seller", "admin")
    def post(self) -> tuple[Response, int]:
        """Create a product (sellers and admins)"""
        user = current_user()
        return jsonify(seller_id=user.id, **(request.get_json() or {})), 201


@products.route("/big")
class Big(MethodView):
    def get(self) -> Response:
        """A large body, streamed"""
        blocks = 16 * int(request.args.get("mb", "8"))

        def chunks():
            for _ in range(blocks):
                yield BLOCK

        return Response(chunks(), mimetype="application/octet-stream")


@products.route("/drip")
class Drip(MethodView):
    def get(self) -> Response:
        """One chunk now, one later"""
        pause = float(request.args.get("pause", "1"))

        def chunks():
            yield b"first;"
            time.sleep(pause)
            yield b"second"

        return Response(chunks(), mimetype="text/plain")


@products.route("/gzip")
class Gzipped(MethodView):
    def get(self) -> Response:
        """A gzip-encoded body"""
        body = gzip.compress(PLAIN)
        return Response(
            body, mimetype="text/plain", headers={"Content-Encoding": "gzip"}
        )


@products.route("/slow")
class Slow(MethodView):
    def get(self) -> Response:
        """Answers late"""
        time.sleep(float(request.args.get("seconds", "3")))
        return jsonify(late=True)


@products.route("/echo")
class Echo(MethodView):
    def get(self) -> Response:
        """What arrived"""
        return self.post()

    def post(self) -> Response:
        """What arrived, body included"""
        body = request.get_data()
        return jsonify(
            method=request.method,
            path=request.full_path,
            headers=dict(request.headers.items()),
            body_length=len(body),
            body_sha256=hashlib.sha256(body).hexdigest(),
        )


@internal.route("/reservations")
class Reservations(MethodView):
    @require_service
    def get(self) -> Response:
        """Internal only"""
        return jsonify(internal=True)


def build():
    """The upstream app, its settings from the environment."""
    return create_app("upstream", Settings.from_env(), [products, internal])
