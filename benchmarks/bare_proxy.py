"""The floor of the gateway's stack: Flask and urllib3 under the same gunicorn.

One route forwards a GET to `UPSTREAM_URL` and streams the answer back, as the
gateway's proxy does, with nothing else: no token check, no metrics, no request
id, no problem documents. `bench_gateway.py` serves it beside the gateway, so the
gateway's CPU per request can be read as this floor plus what the gateway adds.
Not a part of the system: nothing else imports it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import urllib3
from flask import Flask, Response, request

from apps.gateway.proxy import CHUNK_SIZE, end_to_end

app = Flask(__name__)
_upstream = urllib3.util.parse_url(os.environ.get("UPSTREAM_URL", "http://127.0.0.1"))
_pool = urllib3.HTTPConnectionPool(
    _upstream.host or "127.0.0.1", _upstream.port, maxsize=32, retries=False
)


@app.get("/api/v1/<path:path>")
def forward(path: str) -> Response:
    query = request.query_string.decode("latin-1")
    upstream = _pool.urlopen(
        "GET",
        f"{request.path}?{query}" if query else request.path,
        headers={"Authorization": request.headers.get("Authorization", "")},
        preload_content=False,
        decode_content=False,
        redirect=False,
    )

    def body() -> Iterator[bytes]:
        try:
            yield from upstream.stream(CHUNK_SIZE, decode_content=False)
        finally:
            upstream.close()

    return Response(
        body(), status=upstream.status,
        headers=end_to_end(upstream.headers.items()), direct_passthrough=True,
    )  # fmt: skip


@app.get("/health/ready")
def ready() -> dict[str, str]:
    return {"status": "ready"}
