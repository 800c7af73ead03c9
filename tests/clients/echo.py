"""A WSGI app echoing what it got, and from which client port (for gunicorn).

`?delay=S` makes it wait S seconds before answering.
"""

import json
import time
import urllib.parse


def app(environ, start_response):
    query = urllib.parse.parse_qs(environ["QUERY_STRING"])
    time.sleep(float(query.get("delay", ["0"])[0]))
    length = int(environ.get("CONTENT_LENGTH") or 0)
    echo = {
        "port": environ["REMOTE_PORT"],
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "type": environ.get("CONTENT_TYPE", ""),
        "length": environ.get("CONTENT_LENGTH", ""),
        "request_id": environ.get("HTTP_X_REQUEST_ID", ""),
        "authorization": environ.get("HTTP_AUTHORIZATION", ""),
        "body": environ["wsgi.input"].read(length).decode() if length else "",
    }
    answer = json.dumps(echo).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
    )
    return [answer]
