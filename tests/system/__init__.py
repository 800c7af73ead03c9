"""Tests of the running system (`chomik run`), marker `system`.

`CHOMIK_HOST` (127.0.0.2, …) runs them beside another system on the same ports.
"""

import os

# Under pytest-xdist each worker runs its systems at a loopback address of its own
# (gw0 at 127.0.0.2, gw1 at 127.0.0.3, ...), and so do the launchers it starts.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if "CHOMIK_HOST" not in os.environ and _WORKER.startswith("gw"):
    os.environ["CHOMIK_HOST"] = f"127.0.0.{2 + int(_WORKER[2:])}"
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
