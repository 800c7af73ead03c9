"""Gunicorn settings of every web process (launcher, compose and OpenShift alike)."""

import logging
import os
import shutil
from pathlib import Path

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
# How long a stopping worker may finish its requests (`chomik run` stops sooner).
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "10"))
keepalive = 5
# gunicorn parses the request line and headers before the app sees them and
# answers 400 itself past these bounds (its defaults, stated here on purpose);
# bodies are bounded by the app (MAX_CONTENT_LENGTH, 1 MiB: 413).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# The C parser (the gunicorn_h1c package, a dependency), which enforces the same
# bounds; a process without it does not start rather than run slower unnoticed.
http_parser = "fast"
accesslog = None  # the app logs every request as a JSON line
control_socket_disable = (
    True  # several gunicorns share a host: no shared control socket
)


def on_starting(server):
    """Empty the Prometheus multiprocess directory: stale files would add old counts."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def when_ready(server):
    """With METRICS_PORT, serve every worker's /metrics there, apart from the app.

    The app then leaves /metrics off its own port (chomik.web), so a public
    route never shows it; Prometheus scrapes this port inside the deployment.
    """
    port = int(os.environ.get("METRICS_PORT") or 0)
    if port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

        host = os.environ.get("METRICS_HOST", "127.0.0.1")
        GunicornPrometheusMetrics.start_http_server_when_ready(port, host)


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the multiprocess metrics, if any."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)


def worker_int(worker):
    """A quick stop (SIGINT or SIGQUIT: Ctrl-C on `chomik run`) ends the worker now.

    Its in-flight requests are dropped anyway; tearing the interpreter down
    (a garbage collection over the whole heap) would take seconds more when
    every process of the system stops at once. SIGTERM stays a graceful stop.
    """
    try:
        logging.shutdown()
    finally:
        os._exit(0)
