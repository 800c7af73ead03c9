"""Serve any app factory over HTTP in its own process, for tests.

Run: python -m tests.apps.gateway.serve module:factory PORT (settings from env).
"""

from __future__ import annotations

import sys

from werkzeug.serving import make_server

from chomik.apps import load


def main() -> None:
    target, port = sys.argv[1], int(sys.argv[2])
    app = load(target)()
    make_server("127.0.0.1", port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main()
