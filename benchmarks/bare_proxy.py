"""The floor of the gateway's stack: Flask and the gateway's own forwarding.

One route forwards a GET to `UPSTREAM_URL` with the client's end-to-end headers
and streams the answer back, through `apps.gateway.proxy` as the gateway does, and
does nothing else: no token check, deny list, request id, metrics or problem
documents. `bench_gateway.py` serves it under the gateway's gunicorn settings, so
the gateway's CPU per request reads as this floor plus what the gateway adds. Not
a part of the system: nothing else imports it.
"""

from __future__ import annotations

import os

from flask import Flask, Response, request

from apps.gateway.proxy import Forwarder, end_to_end

app = Flask(__name__)
# The gateway's defaults (apps.gateway.settings).
forwarder = Forwarder(
    {"upstream": os.environ.get("UPSTREAM_URL", "http://127.0.0.1")},
    connect_timeout=2.0,
    read_timeout=30.0,
    idle_reuse=2.0,
)
# Written again by this server, or meaningful for one hop only.
_DROPPED = {"host", "server", "date"}


@app.get("/api/v1/<path:path>")
def forward(path: str) -> Response:
    upstream = forwarder.send(
        "upstream",
        "GET",
        request.path,
        query=request.query_string.decode("latin-1"),
        headers=[
            (name, value)
            for name, value in end_to_end(request.headers.items())
            if name.lower() not in _DROPPED
        ],
        body=None,
    )
    headers = [
        (name, value)
        for name, value in end_to_end(upstream.headers)
        if name.lower() not in _DROPPED
    ]
    return Response(
        upstream.body(), status=upstream.status, headers=headers,
        direct_passthrough=True,
    )  # fmt: skip


@app.get("/health/ready")
def ready() -> dict[str, str]:
    return {"status": "ready"}
