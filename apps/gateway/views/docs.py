"""Swagger UI for the whole public API, its assets served locally (no CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from apps.gateway.context import gateway
from apps.gateway.openapi import merge
from apps.gateway.proxy import route

bp = Blueprint("docs", __name__)
# Swagger UI runs its local bundle and fetches the API from this origin; it sets
# inline styles and uses data: images. Nothing else loads, nothing may frame it.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Chomik API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/chomik.js"></script>
</body>
</html>
"""

# validatorUrl null: the default would call a public validator on the internet.
INITIALIZER = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
};
"""


@bp.after_request
def _docs_policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = DOCS_POLICY
    return response


@bp.get("/docs")
def page() -> Response:
    """The Swagger UI page."""
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/chomik.js")
def initializer() -> Response:
    """Start Swagger UI on the merged document."""
    return Response(INITIALIZER, mimetype="text/javascript")


@bp.get("/docs/<path:filename>")
def asset(filename: str) -> Response:
    """A file of the swagger-ui-bundle package."""
    return send_from_directory(str(swagger_ui_path), filename, max_age=3600)


def merged_openapi() -> Response:
    """The gateway's document plus each reachable service's public paths."""
    own = current_app.extensions["chomik.api"].spec.to_dict()
    return jsonify(merge(own, gateway().documents.all(), route))
