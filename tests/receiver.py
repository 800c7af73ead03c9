"""A local HTTP receiver of callbacks: it records what it got and answers as told."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Runs on 127.0.0.1 (a free port) until closed; `answers` are popped per call."""

    answers: list[int] = field(default_factory=list)
    calls: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/callbacks"

    def _app(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            self.calls.append(
                Received(request.path, dict(request.headers), request.get_data())
            )
            status = self.answers.pop(0) if self.answers else 202
        return Response(status=status)(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)
