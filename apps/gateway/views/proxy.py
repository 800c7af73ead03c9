"""The reverse proxy: every public /api/v1 path of a service, streamed both ways."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator

from flask import Blueprint, Response, g, request
from werkzeug.routing import PathConverter

from apps.gateway.context import gateway
from apps.gateway.errors import UnknownRouteError
from apps.gateway.proxy import Body, chunks, end_to_end, route
from chomik.auth import optional_user
from chomik.logs import REQUEST_ID_HEADER
from chomik.web import streams_body

bp = Blueprint("proxy", __name__)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Set by the gateway itself, whatever the client sent.
_REPLACED = {
    "host",
    "content-length",
    "x-forwarded-proto",
    "x-forwarded-host",
    REQUEST_ID_HEADER.lower(),
}


def public_path_converter(own_prefixes: list[str]) -> type[PathConverter]:
    """A path converter that never matches below the gateway's own prefixes.

    Its own routes (`/auth/login`) then answer another method with 405 and
    `Allow`, instead of the proxy taking the request and answering 404.
    """
    names = "|".join(re.escape(prefix.strip("/")) for prefix in own_prefixes)

    class PublicPath(PathConverter):
        regex = rf"(?!(?:{names})(?:/|$))[^/].*?"

    return PublicPath


# The gateway's server writes its own; the service's copies would be duplicates.
_SERVER_OWN = {"server", "date"}


@bp.route("/api/v1/<public_path:path>", methods=METHODS)
@streams_body
def forward(path: str) -> Response:
    """Pass a request on to the service that owns its path."""
    service = route(f"/{path}")
    if service is None:
        raise UnknownRouteError(f"No public API path /api/v1/{path}")
    # A bad, expired or revoked token stops here, before any service sees it;
    # an anonymous request goes on and the service decides.
    optional_user()
    upstream = gateway().forwarder.send(
        service,
        request.method,
        urllib.parse.quote(request.path),
        query=request.query_string.decode("latin-1"),
        headers=_request_headers(),
        body=_request_body(),
    )
    headers = [
        (name, value)
        for name, value in end_to_end(upstream.headers)
        if name.lower() not in _SERVER_OWN
    ]
    response = Response(
        upstream.body(), status=upstream.status, headers=headers,
        direct_passthrough=True,
    )  # fmt: skip
    if not any(name.lower() == "content-type" for name, _ in headers):
        del response.headers["Content-Type"]
    # HEAD, 204 and 304 answers never iterate the body: release the connection
    # when the response is closed, whatever happened to the body.
    response.call_on_close(upstream.close)
    return response


def _request_headers() -> list[tuple[str, str]]:
    headers = [
        (name, value)
        for name, value in end_to_end(request.headers.items())
        if name.lower() not in _REPLACED and name.lower() != "x-forwarded-for"
    ]
    # The socket's peer, also behind trusted proxies (whose own header is `prior`).
    original = request.environ.get("werkzeug.proxy_fix.orig", {})
    address = original.get("REMOTE_ADDR") or request.remote_addr or "unknown"
    prior = request.headers.get("X-Forwarded-For")
    headers += [
        ("X-Forwarded-For", f"{prior}, {address}" if prior else address),
        ("X-Forwarded-Proto", request.scheme),
        ("X-Forwarded-Host", request.host),
        (REQUEST_ID_HEADER, g.request_id),
    ]
    return headers


def _request_body() -> Body | Iterator[bytes] | None:
    if request.content_length:
        return Body(request.stream, request.content_length)
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        return chunks(request.stream)
    return None
