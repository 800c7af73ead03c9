"""A worker's HTTP endpoint: `/health/live`, `/health/ready` and `/metrics`.

Workers have no web app, yet OpenShift and compose probe them as they probe web
processes. This is a small WSGI app on the standard library's server, in daemon
threads of the worker's process: it never holds up the worker's shutdown.

`/health/live` answers 200 while the process serves at all. `/health/ready` runs the
worker's named checks in order (each raises when its part is not ready) and answers
200, or 503 naming the first failing check; the reason goes to the log only.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], None]
StartResponse = Callable[..., Any]


def _answer(
    start_response: StartResponse, status: str, body: Mapping[str, Any]
) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


def ready_answer(checks: Mapping[str, ReadyCheck]) -> tuple[int, dict[str, Any]]:
    """Run the checks in order: (200, ...) when all pass, else (503, ...)."""
    passed: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            log.warning("not ready: %s failed", name, exc_info=True)
            return 503, {"status": "unavailable", "checks": passed, "failing": name}
        passed[name] = "ok"
    return 200, {"status": "ok", "checks": passed}


def probe_app(checks: Mapping[str, ReadyCheck]) -> Callable[..., Iterable[bytes]]:
    """The WSGI app of the probe endpoint."""
    # Uncompressed: a worker's metrics are a few KB, and gzip was about two fifths
    # of what a scrape (every 15 s) cost an idle worker (py-spy).
    metrics = make_wsgi_app(disable_compression=True)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", {})
        if path == "/health/live":
            return _answer(start_response, "200 OK", {"status": "ok"})
        if path == "/health/ready":
            code, body = ready_answer(checks)
            status = "200 OK" if code == 200 else "503 Service Unavailable"
            return _answer(start_response, status, body)
        return _answer(start_response, "404 Not Found", {"status": "not found"})

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow probe never holds up the process's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base's name
        pass  # probes come every few seconds; the worker's own log says what matters


class ProbeServer:
    """Serves `probe_app(checks)` on host:port until stopped."""

    def __init__(self, host: str, port: int, checks: Mapping[str, ReadyCheck]) -> None:
        self._server = make_server(
            host,
            port,
            probe_app(checks),
            server_class=_Server,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # It wakes only to notice a stop: once a second costs next to
            # nothing idle, and a stop waits at most that long.
            kwargs={"poll_interval": 1.0},
            name="probes",
            daemon=True,
        )

    @property
    def port(self) -> int:
        """The port served (the real one when 0 was asked for)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
