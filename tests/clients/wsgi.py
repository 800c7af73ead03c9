"""Run a client against a real app in-process (no network)."""


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
