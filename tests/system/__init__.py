"""Tests of the running system (`chomik run`), marker `system`.

`CHOMIK_HOST` (127.0.0.2, …) runs them beside another system on the same ports.
"""

import os

HOST = os.environ.get("CHOMIK_HOST", "127.0.0.1")


def base_url(port: int) -> str:
    """The running system's process on `port`, at this run's host."""
    return f"http://{HOST}:{port}"


def port_free(port: int) -> bool:
    """Nothing listens on `port`: an app's at HOST, the embedded servers' at 127.0.0.1."""
    from chomik.apps import APPS
    from chomik.infra import port_is_free

    app_ports = {spec.port for spec in APPS}
    return port_is_free(port, HOST if port in app_ports else "127.0.0.1")
