"""Run a client against a real app in-process (no network)."""

import json


def string_content_length(app):
    """wsgiadapter puts an int in CONTENT_LENGTH; WSGI (and werkzeug) want a str."""

    def wrapped(environ, start_response):
        if "CONTENT_LENGTH" in environ:
            environ["CONTENT_LENGTH"] = str(environ["CONTENT_LENGTH"])
        return app(environ, start_response)

    return wrapped


def mounted(app, base_url):
    """A requests session whose calls to `base_url` go to `app` in-process."""
    import requests
    from wsgiadapter import WSGIAdapter

    session = requests.Session()
    session.mount(base_url, WSGIAdapter(string_content_length(app)))
    return session


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
