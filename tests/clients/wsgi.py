"""Run a client against a real app in-process (no network), or over real HTTP."""

import contextlib
import json
import threading
import urllib.parse

from werkzeug.serving import make_server
from werkzeug.test import Client

from clients._http import Response


class WsgiTransport:
    """A client transport that hands each request to a WSGI app in-process."""

    def __init__(self, app, base_url):
        self.app = app
        self.base_url = base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.base_url)
        self.host, self.prefix = f"{parts.scheme}://{parts.netloc}", parts.path
        self.closed = False

    def __call__(self, method, target, headers, body):
        answer = Client(self.app).open(
            f"{self.prefix}{target}", base_url=self.host, method=method,
            headers=dict(headers), data=body,
        )  # fmt: skip
        return Response(
            method, f"{self.base_url}{target}", answer.status_code, answer.headers,
            answer.get_data(),
        )  # fmt: skip

    def close(self):
        self.closed = True


def mounted(app, base_url):
    """A client transport whose calls go to `app` in-process, as if at `base_url`."""
    return WsgiTransport(app, base_url)


@contextlib.contextmanager
def serving(app, port=0):
    """Serve `app` over HTTP on 127.0.0.1 (`port`, or a free one) in a thread;
    yields its base URL."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def dropping(app, path):
    """The real app, with the field at `path` (keys, "*" for every list item) removed
    from its JSON answers: a remote side that breaks the contract."""

    def remove(node, keys):
        if not keys:
            return
        head, rest = keys[0], keys[1:]
        children = node if head == "*" else [node]
        for child in children:
            if rest:
                remove(child[head] if head != "*" else child, rest)
            elif head != "*":
                child.pop(head, None)

    def wrapped(environ, start_response):
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        body = b"".join(app(environ, capture))
        if captured["status"].startswith("2"):
            data = json.loads(body)
            remove(data, path)
            body = json.dumps(data).encode()
        headers = [(k, v) for k, v in captured["headers"] if k != "Content-Length"]
        start_response(
            captured["status"], [*headers, ("Content-Length", str(len(body)))]
        )
        return [body]

    return wrapped
